#include "store/store.hpp"

#include "core/json_reader.hpp"
#include "core/utf8.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

namespace twinbridge::store {

boost::json::value parse_stored_json(std::string_view text, std::string_view what,
                                     boost::json::storage_ptr sp, std::string_view of) {
  boost::system::error_code ec;
  auto v = core::read_json(text, ec, 32, nullptr, sp);
  if (!ec) return v;
  if (core::is_valid_utf8(text)) return {};
  // Boost.JSON refuses ill-formed UTF-8; the repair replaces bytes inside strings only (ASCII is kept).
  v = core::read_json(core::to_valid_utf8(text), ec, 32, nullptr, sp);
  if (ec) return {};
  spdlog::error("store: {}{} is not valid UTF-8; served with U+FFFD in place of the bad bytes", what,
                of.empty() ? std::string() : fmt::format(" of '{}'", of));
  return v;
}

namespace {
constexpr std::pair<ChangeType, std::string_view> kChangeTypes[] = {
    {ChangeType::thing_created, "thing_created"},
    {ChangeType::thing_updated, "thing_updated"},
    {ChangeType::thing_deleted, "thing_deleted"},
    {ChangeType::thing_transferred, "thing_transferred"},
    {ChangeType::system_created, "system_created"},
    {ChangeType::system_updated, "system_updated"},
    {ChangeType::system_deleted, "system_deleted"},
    {ChangeType::status_changed, "status_changed"},
    {ChangeType::principal_created, "principal_created"},
    {ChangeType::principal_updated, "principal_updated"},
    {ChangeType::principal_deleted, "principal_deleted"},
    {ChangeType::key_added, "key_added"},
    {ChangeType::key_revoked, "key_revoked"},
    {ChangeType::state_changed, "state_changed"},
    {ChangeType::policy_changed, "policy_changed"},
    {ChangeType::selection_changed, "selection_changed"},
    {ChangeType::selection_deleted, "selection_deleted"},
};
}  // namespace

std::string_view to_string(ChangeType type) {
  for (const auto& [t, name] : kChangeTypes) {
    if (t == type) return name;
  }
  return "unknown";
}

std::optional<ChangeType> parse_change_type(std::string_view text) {
  for (const auto& [t, name] : kChangeTypes) {
    if (name == text) return t;
  }
  return std::nullopt;
}

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

std::string describe(const OwnedRegistrations& owned) {
  std::string names;
  std::size_t listed = 0;
  const auto add = [&](std::string name) {
    if (!names.empty()) names += ", ";
    names += name;
    ++listed;
  };
  for (const auto& [kind, id] : owned.systems) add(fmt::format("{} '{}'", core::to_string(kind), id));
  for (const auto& id : owned.twins) add(fmt::format("directory twin '{}'", id));
  const auto total = owned.system_count + owned.twin_count;
  if (static_cast<std::int64_t>(listed) < total) {
    names += fmt::format(" and {} more", total - static_cast<std::int64_t>(listed));
  }
  return fmt::format("{} ({} system{}, {} directory twin{})", names, owned.system_count,
                     owned.system_count == 1 ? "" : "s", owned.twin_count, owned.twin_count == 1 ? "" : "s");
}

}  // namespace twinbridge::store
