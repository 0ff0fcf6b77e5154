#include "dtif/twin_registry.hpp"

#include <fmt/format.h>

#include <set>

#include "core/json_reader.hpp"
#include "core/thing_description.hpp"

namespace twinbridge::dtif {

using core::Errc;

namespace {

constexpr std::size_t kScanBatch = 500;

}  // namespace

core::Result<core::TwinRecord> TwinRegistry::from_document(const boost::json::value& doc,
                                                           std::string_view pointer,
                                                           const core::TwinRecord* current,
                                                           const std::string& system_id,
                                                           const core::PrincipalId& owner) const {
  auto td = core::parse_thing_description(doc, pointer);
  if (!td) return std::unexpected(td.error());
  const auto id_pointer = std::string(pointer) + "/id";
  core::TwinRecord t;
  if (current != nullptr) {
    t = *current;
    if (!td->id.empty() && td->id != current->id) {
      return core::fail_at(Errc::validation_failed, id_pointer, "is read-only: the TD id cannot change");
    }
  } else {
    t.id = td->id.empty() ? "urn:uuid:" + core::new_uuid_v7() : td->id;
    t.system_id = system_id;
    t.owner = owner;
  }
  if (t.id.size() > core::kMaxIdBytes) {
    return core::fail_at(
        Errc::validation_failed, id_pointer,
        fmt::format("is {} bytes long; twin ids are at most {}", t.id.size(), core::kMaxIdBytes));
  }
  td->id = t.id;
  t.title = td->title;
  t.document = core::to_json(*td);
  t.document["id"] = t.id;
  return t;
}

core::Result<std::vector<core::TwinRecord>> TwinRegistry::from_list(const boost::json::value& twins,
                                                                    const std::string& system_id,
                                                                    const core::PrincipalId& owner) const {
  std::vector<core::TwinRecord> out;
  std::vector<core::FieldError> errors;
  std::set<std::string> ids;
  const auto* list = twins.if_array();
  if (list == nullptr)
    return core::fail_at(Errc::validation_failed, "/twins", "must be an array of Thing Descriptions");
  for (std::size_t i = 0; i < list->size(); ++i) {
    const auto pointer = fmt::format("/twins/{}", i);
    auto twin = from_document((*list)[i], pointer, nullptr, system_id, owner);
    if (!twin) {
      errors.insert(errors.end(), twin.error().fields.begin(), twin.error().fields.end());
      continue;
    }
    if (!ids.insert(twin->id).second) {
      errors.push_back({pointer + "/id", fmt::format("'{}' appears twice in this list", twin->id)});
      continue;
    }
    out.push_back(std::move(*twin));
  }
  if (auto ok = core::validation_result(std::move(errors)); !ok) return std::unexpected(ok.error());
  return out;
}

core::Result<store::Page<core::TwinRecord>> TwinRegistry::discover(const TwinDiscoveryQuery& query) const {
  store::TwinQuery q{query.system_id, query.after,
                     query.filter ? std::max(query.limit, kScanBatch) : query.limit};
  store::Page<core::TwinRecord> out;
  for (;;) {
    auto page = store_.twins(q);
    if (!page) return std::unexpected(page.error());
    for (auto& twin : page->items) {
      if (query.filter && !query.filter->matches(boost::json::array{core::to_json(twin)})) continue;
      if (out.items.size() == query.limit) {
        out.next_after = out.items.back().id;
        return out;
      }
      out.items.push_back(std::move(twin));
    }
    if (!page->next_after) return out;
    q.after = *page->next_after;
  }
}

}  // namespace twinbridge::dtif
