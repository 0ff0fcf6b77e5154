#include "core/principal.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <limits>

#include "core/access.hpp"
#include "core/json_reader.hpp"

namespace twinbridge::core {

std::string_view to_string(PrincipalKind kind) {
  switch (kind) {
    case PrincipalKind::operator_account:
      return "operator";
    case PrincipalKind::metaverse_system:
      return "metaverse-system";
    case PrincipalKind::twin_system:
      return "twin-system";
    case PrincipalKind::third_party_system:
      return "third-party-system";
  }
  return "operator";
}

std::optional<PrincipalKind> parse_principal_kind(std::string_view text) {
  for (auto k : {PrincipalKind::operator_account, PrincipalKind::metaverse_system, PrincipalKind::twin_system,
                 PrincipalKind::third_party_system}) {
    if (to_string(k) == text) return k;
  }
  return std::nullopt;
}

boost::json::object to_json(const Principal& p) {
  boost::json::array roles;
  for (const auto& r : p.roles) roles.emplace_back(r);
  return {{"id", p.id.str()},
          {"kind", to_string(p.kind)},
          {"name", p.name},
          {"roles", std::move(roles)},
          {"properties", p.properties},
          {"disabled", p.disabled},
          {"created", format_rfc3339(p.created)},
          {"modified", format_rfc3339(p.modified)},
          {"version", p.version}};
}

Result<Principal> principal_from_json(const boost::json::value& doc, const Principal* current) {
  std::vector<FieldError> errors;
  ObjectReader r(doc, "", errors);
  Principal p;
  if (current != nullptr) p = *current;

  if (auto id = r.string("id", false, std::numeric_limits<std::size_t>::max())) {  // validate_id bounds it
    if (current != nullptr && *id != current->id.str()) {
      r.add_error("/id", "is read-only");
    } else if (auto ok = validate_id(*id, "/id"); !ok) {
      errors.insert(errors.end(), ok.error().fields.begin(), ok.error().fields.end());
    } else {
      p.id = PrincipalId(*id);
    }
  } else if (current == nullptr) {
    p.id = PrincipalId(new_uuid_v7());
  }

  if (auto kind = r.string("kind", current == nullptr, 64)) {
    auto parsed = parse_principal_kind(*kind);
    if (!parsed) {
      r.add_error("/kind",
                  fmt::format("'{}' is not a principal kind; expected one of operator, metaverse-system, "
                              "twin-system, third-party-system",
                              *kind));
    } else if (current != nullptr && *parsed != current->kind) {
      r.add_error("/kind", "is read-only; create a new principal instead");
    } else {
      p.kind = *parsed;
    }
  }

  if (auto name = r.string("name", current == nullptr, kMaxNameBytes)) {
    if (name->empty()) {
      r.add_error("/name", "must not be empty");
    } else {
      p.name = std::move(*name);
    }
  }

  if (auto roles = r.string_array("roles", false, 32, 64)) {
    for (std::size_t i = 0; i < roles->size(); ++i) {
      if (!is_known_role((*roles)[i])) {
        r.add_error(fmt::format("/roles/{}", i), fmt::format("'{}' is not a known role", (*roles)[i]));
      }
    }
    std::sort(roles->begin(), roles->end());
    roles->erase(std::unique(roles->begin(), roles->end()), roles->end());
    p.roles = std::move(*roles);
  } else if (current == nullptr) {
    p.roles = default_roles(p.kind);
  }

  if (auto props = r.object("properties", false)) {
    if (boost::json::serialize(*props).size() > kMaxPropertiesBytes) {
      r.add_error("/properties", fmt::format("is larger than {} bytes", kMaxPropertiesBytes));
    } else {
      p.properties = std::move(*props);
    }
  }
  if (auto disabled = r.boolean("disabled")) p.disabled = *disabled;

  // Server-maintained members may be sent back unchanged (a client PUTs what it GOT); changing them is
  // refused.
  for (std::string_view ro : {"created", "modified", "version"}) {
    const auto* v = r.value(ro, false);
    if (v == nullptr) continue;
    const bool same = current != nullptr && *v == to_json(*current).at(ro);
    if (!same) r.add_error(r.member_pointer(ro), "is read-only");
  }
  r.reject_unknown();
  if (auto ok = validation_result(std::move(errors)); !ok) return std::unexpected(ok.error());
  return p;
}

}  // namespace twinbridge::core
