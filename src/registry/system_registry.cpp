#include "registry/system_registry.hpp"

#include "core/health.hpp"

#include <fmt/format.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <stdexcept>

#include "core/access.hpp"
#include "core/json_reader.hpp"

namespace twinbridge::registry {

using core::Errc;

namespace {

core::JsonSchema compile_or_throw(std::string_view text) {
  auto schema = core::JsonSchema::compile(boost::json::parse(text));
  if (!schema) throw std::logic_error("a published schema does not compile: " + schema.error().detail);
  return std::move(*schema);
}

constexpr std::size_t kScanBatch = 500;
constexpr std::string_view kCredentialsMember = "credentials";

}  // namespace

SystemRegistry::SystemRegistry(store::Store& store, core::SystemKind kind, std::string_view schema,
                               connect::OutboundGuard outbound)
    : store_(store),
      kind_(kind),
      schema_text_(schema),
      schema_(compile_or_throw(schema)),
      outbound_(std::move(outbound)) {}

core::Result<core::SystemRecord> SystemRegistry::from_document(const boost::json::value& document,
                                                               const core::SystemRecord* current,
                                                               const core::PrincipalId& owner) const {
  std::vector<core::FieldError> errors;
  schema_.validate(document, errors);
  const auto* object = document.if_object();
  core::SystemRecord record;
  if (current != nullptr) {
    record = *current;
  } else {
    record.kind = kind_;
    record.owner = owner;
  }
  if (object != nullptr) {
    // Server-maintained members: echoing the stored value is fine, changing it is not.
    const auto stored = current != nullptr ? core::to_json(*current) : boost::json::object();
    for (auto member : core::kSystemServerMembers) {
      const auto* v = object->if_contains(member);
      if (v == nullptr || member == "kind") continue;  // the schema checks kind's value
      const auto* was = stored.if_contains(member);
      if (was == nullptr || *was != *v) {
        errors.push_back({core::pointer_append("", member), "is maintained by twinbridge and cannot be set"});
      }
    }
    if (const auto* id = object->if_contains("id"); id != nullptr && id->is_string()) {
      const std::string text(id->get_string());
      if (current != nullptr && text != current->id) {
        errors.push_back({"/id", "is read-only"});
      } else if (auto ok = core::validate_id(text, "/id"); !ok) {
        errors.insert(errors.end(), ok.error().fields.begin(), ok.error().fields.end());
      } else {
        record.id = text;
      }
    } else if (current == nullptr) {
      record.id = core::new_uuid_v7();
    }
    // Every endpoint is a URL twinbridge calls (health probes now, the gateway and token requests later).
    if (const auto* endpoints = object->if_contains("endpoints");
        endpoints != nullptr && endpoints->is_object()) {
      for (const auto& [name, url] : endpoints->get_object()) {
        if (!url.is_string()) continue;
        const auto pointer = core::pointer_append("/endpoints", name);
        const bool reported = std::any_of(errors.begin(), errors.end(),
                                          [&](const core::FieldError& e) { return e.pointer == pointer; });
        if (reported) continue;
        if (auto ok = outbound_.check_url(url.get_string()); !ok)
          errors.push_back({pointer, ok.error().detail});
      }
    }
  }
  if (auto ok = core::validation_result(std::move(errors)); !ok) return std::unexpected(ok.error());

  record.body = *object;
  for (auto member : core::kSystemServerMembers) record.body.erase(member);
  record.body.erase("id");
  record.body.erase(kCredentialsMember);  // stored apart, never served
  record.type = std::string(object->at("type").get_string());
  record.name = std::string(object->at("name").get_string());
  if (current == nullptr) record.status_reason = core::initial_status_reason(record.body);
  return record;
}

std::optional<store::SystemCredentials> SystemRegistry::credentials(const boost::json::value& document) {
  const auto* object = document.if_object();
  const auto* member = object != nullptr ? object->if_contains(kCredentialsMember) : nullptr;
  if (member == nullptr) return std::nullopt;
  store::SystemCredentials out;
  if (const auto* by_scheme = member->if_object()) out.by_scheme = *by_scheme;
  return out;
}

boost::json::value SystemRegistry::without_secrets(boost::json::value document) {
  auto* object = document.if_object();
  auto* member = object != nullptr ? object->if_contains(kCredentialsMember) : nullptr;
  if (member != nullptr && member->is_object()) {
    boost::json::array names;
    for (const auto& [name, secret] : member->get_object()) names.emplace_back(name);
    *member = std::move(names);
  }
  return document;
}

core::Result<void> SystemRegistry::may_register(const core::Principal& caller) const {
  return core::may_register_system(caller, kind_);
}

core::Result<void> SystemRegistry::may_change(const core::Principal& caller,
                                              const core::SystemRecord& record) const {
  return core::may_change_system(caller, record);
}

core::Result<store::Page<core::SystemRecord>> SystemRegistry::discover(const DiscoveryQuery& query) const {
  store::SystemQuery q{kind_,       query.type,      query.status,
                       query.owner, query.after,     std::max(query.limit, kScanBatch),
                       query.sort,  query.descending};
  const bool filtered = query.filter.has_value() || query.exclude_down;
  if (!filtered) q.limit = query.limit;
  store::Page<core::SystemRecord> out;
  for (;;) {
    auto page = store_.systems(q);
    if (!page) return std::unexpected(page.error());
    for (std::size_t i = 0; i < page->items.size(); ++i) {
      auto& record = page->items[i];
      if (query.exclude_down && record.status == core::SystemStatus::down) continue;
      // The filter sees the record inside a one-element array, as if applied to the whole collection: a
      // record matches when `$[?@.type == 'payment']` (or any query) selects at least one node.
      if (query.budget != nullptr && !query.budget->visit())
        return std::unexpected(query.budget->error("filter"));
      if (query.filter) {
        const boost::json::value wrapped = boost::json::array{core::to_json(record)};
        const bool matched = query.budget != nullptr ? query.filter->matches(wrapped, *query.budget)
                                                     : query.filter->matches(wrapped);
        if (query.budget != nullptr && !query.budget->ok())
          return std::unexpected(query.budget->error("filter"));
        if (!matched) continue;
      }
      if (out.items.size() == query.limit) {
        out.next_after = store::system_cursor(out.items.back(), query.sort);
        return out;
      }
      out.items.push_back(std::move(record));
    }
    if (!page->next_after) return out;
    q.after = *page->next_after;
  }
}

}  // namespace twinbridge::registry
