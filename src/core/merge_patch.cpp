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

boost::json::value merge_diff(const boost::json::value& from, const boost::json::value& to) {
  const auto* a = from.if_object();
  const auto* b = to.if_object();
  if (a == nullptr || b == nullptr) return to;
  boost::json::object patch;
  for (const auto& member : *a) {
    if (!b->contains(member.key())) patch[member.key()] = nullptr;
  }
  for (const auto& member : *b) {
    const auto* old = a->if_contains(member.key());
    if (old == nullptr) {
      patch[member.key()] = member.value();
    } else if (*old != member.value()) {
      const bool both_objects = old->is_object() && member.value().is_object();
      patch[member.key()] = both_objects ? merge_diff(*old, member.value()) : member.value();
    }
  }
  return patch;
}

}  // namespace twinbridge::core
