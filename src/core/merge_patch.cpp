#include "core/merge_patch.hpp"

#include <boost/json/object.hpp>

namespace twinbridge::core {

boost::json::value merge_patch(boost::json::value target, const boost::json::value& patch) {
  const auto* patch_object = patch.if_object();
  if (patch_object == nullptr) return patch;
  if (!target.is_object()) target = boost::json::object();
  auto& out = target.get_object();
  for (const auto& member : *patch_object) {
    if (member.value().is_null()) {
      out.erase(member.key());
    } else if (auto* existing = out.if_contains(member.key())) {
      *existing = merge_patch(std::move(*existing), member.value());
    } else {
      out[member.key()] = merge_patch(boost::json::value(), member.value());
    }
  }
  return target;
}

}  // namespace twinbridge::core
