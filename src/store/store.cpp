#include "store/store.hpp"

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

namespace twinbridge::store {

std::optional<SystemSort> parse_system_sort(std::string_view member) {
  static constexpr std::pair<std::string_view, SystemSort> kSorts[] = {
      {"id", SystemSort::id},         {"name", SystemSort::name},       {"type", SystemSort::type},
      {"status", SystemSort::status}, {"created", SystemSort::created}, {"modified", SystemSort::modified}};
  for (const auto& [name, sort] : kSorts) {
    if (name == member) return sort;
  }
  return std::nullopt;
}

std::string system_cursor(const core::SystemRecord& r, SystemSort sort) {
  boost::json::value key;
  switch (sort) {
    case SystemSort::id:
      return r.id;
    case SystemSort::name:
      key = r.name;
      break;
    case SystemSort::type:
      key = r.type;
      break;
    case SystemSort::status:
      key = core::to_string(r.status);
      break;
    case SystemSort::created:
      key = core::to_unix_micros(r.created);
      break;
    case SystemSort::modified:
      key = core::to_unix_micros(r.modified);
      break;
  }
  return boost::json::serialize(boost::json::array{key, boost::json::value(r.id)});
}

}  // namespace twinbridge::store
