#include "dtif/twin_registry.hpp"

#include <fmt/format.h>

#include <set>

#include "connect/td_http.hpp"
#include "core/access.hpp"
#include "core/json_reader.hpp"
#include "core/thing_description.hpp"

namespace twinbridge::dtif {

using core::Errc;

namespace {

// Reads the lifetime a TD's "registration" member asks for: {"ttl": seconds} or {"expires": date-time}.
core::Result<std::optional<std::int64_t>> requested_ttl(const boost::json::value& registration,
                                                        std::string_view pointer, core::Timestamp now) {
  const auto base = std::string(pointer) + "/registration";
  const auto* r = registration.if_object();
  if (r == nullptr) return core::fail_at(Errc::validation_failed, base, "must be an object");
  if (const auto* ttl = r->if_contains("ttl")) {
    if (!ttl->is_int64() || ttl->get_int64() < 1 || ttl->get_int64() > kMaxTtlSeconds) {
      return core::fail_at(Errc::validation_failed, base + "/ttl",
                           fmt::format("must be an integer number of seconds from 1 to {}", kMaxTtlSeconds));
    }
    return std::optional<std::int64_t>(ttl->get_int64());
  }
  if (const auto* expires = r->if_contains("expires")) {
    const auto at = expires->is_string() ? core::parse_rfc3339(expires->get_string()) : std::nullopt;
    if (!at || *at <= now) {
      return core::fail_at(Errc::validation_failed, base + "/expires",
                           "must be an RFC 3339 date-time in the future");
    }
    const auto seconds = std::chrono::ceil<std::chrono::seconds>(*at - now).count();
    return std::optional<std::int64_t>(std::min<std::int64_t>(seconds, kMaxTtlSeconds));
  }
  return std::optional<std::int64_t>();
}

}  // namespace

core::Result<core::TwinRecord> TwinRegistry::from_document(const boost::json::value& input,
                                                           std::string_view pointer,
                                                           const core::TwinRecord* current,
                                                           const std::string& system_id,
                                                           const core::PrincipalId& owner) const {
  // What twinbridge adds when serving a twin may come back from a client; it is not part of the TD.
  boost::json::value doc = input;
  std::optional<std::int64_t> ttl;
  const auto now = clock_.now();
  if (auto* object = doc.if_object()) {
    if (const auto* registration = object->if_contains("registration")) {
      auto asked = requested_ttl(*registration, pointer, now);
      if (!asked) return std::unexpected(asked.error());
      ttl = *asked;
      object->erase("registration");
    }
    object->erase("twinbridge:system");
    object->erase("twinbridge:version");
  }
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
  if (current == nullptr) {
    // A new twin's id follows the id rule (a stored one may predate a rule: it stays as it is).
    if (auto ok = core::validate_id(t.id, id_pointer, core::IdKind::iri); !ok)
      return std::unexpected(ok.error());
  }
  td->id = t.id;
  // A change without a "registration" keeps the lifetime asked for before; each change restarts it.
  t.ttl_seconds = ttl ? ttl : (current != nullptr ? current->ttl_seconds : std::nullopt);
  t.expires.reset();
  if (t.ttl_seconds) t.expires = now + std::chrono::seconds(*t.ttl_seconds);
  t.title = td->title;
  t.document = core::to_json(*td);
  t.document["id"] = t.id;
  if (auto refused = connect::refused_form_urls(t.document, outbound_, pointer); !refused.empty()) {
    return std::unexpected(core::validation_result(std::move(refused)).error());
  }
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

core::Result<void> TwinRegistry::may_publish(const core::Principal& caller,
                                             const core::SystemRecord& system) const {
  return core::may_publish_twins(caller, system.owner, fmt::format("twin system '{}'", system.id));
}

core::Result<void> TwinRegistry::may_publish(const core::Principal& caller,
                                             const core::TwinRecord& twin) const {
  if (twin.system_id.empty()) {
    return core::may_publish_twins(caller, twin.owner, fmt::format("directory twin '{}'", twin.id));
  }
  // The twin system decides: its owner holds its twins (whoever added them).
  auto system = store_.system(core::SystemKind::twin, twin.system_id);
  if (!system) return std::unexpected(system.error());
  return may_publish(caller, *system);
}

core::Result<void> TwinRegistry::may_publish_directory_twin(const core::Principal& caller) const {
  return core::may_publish_twins(caller, caller.id, "a new directory twin");
}

core::Result<core::TwinRecord> TwinRegistry::find(const std::string& id) const {
  auto twin = store_.twin(id);
  if (twin && twin->expires && *twin->expires <= clock_.now()) {
    return core::fail(Errc::not_found,
                      fmt::format("twin '{}' does not exist (its registration expired)", id));
  }
  return twin;
}

store::Page<std::shared_ptr<const core::TwinView>> TwinRegistry::discover(
    const TwinDiscoveryQuery& query) const {
  TwinIndexQuery q;
  q.system_id = query.system_id;
  q.alive_at = clock_.now();
  q.after = query.after;
  q.offset = query.offset;
  q.limit = query.limit;
  q.filter = query.filter ? &*query.filter : nullptr;
  q.budget = query.budget;
  q.sort = query.sort;
  q.descending = query.descending;
  return index_.find(q);
}

}  // namespace twinbridge::dtif
