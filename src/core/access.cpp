#include "core/access.hpp"

#include <algorithm>

namespace twinbridge::core {

namespace {

using P = Permission;

const std::vector<RoleInfo>& roles() {
  static const std::vector<RoleInfo> kRoles = {
      {"admin",
       "every permission: operators of twinbridge",
       {P::principals_read, P::principals_write, P::audit_read, P::registry_read, P::registry_write,
        P::registry_admin, P::twins_read, P::twins_control, P::twins_publish, P::services_use}},
      {"auditor", "read principals and the audit log", {P::principals_read, P::audit_read}},
      {"registry-reader", "discover systems and twins (TPSD, DTSD)", {P::registry_read}},
      {"registry-writer",
       "register and maintain the caller's own systems and twins (TPSR, DTSR)",
       {P::registry_read, P::registry_write}},
      {"twin-reader", "read twin information and state (DTIA)", {P::twins_read}},
      {"twin-controller",
       "request changes of twins (DTS, metaverse to physical)",
       {P::twins_read, P::twins_control}},
      {"twin-publisher",
       "publish physical changes of the caller's own twins (DTS, physical to metaverse)",
       {P::twins_publish}},
      {"service-user", "use registered 3rd-party services (TPSAA, SDC)", {P::services_use}},
  };
  return kRoles;
}

}  // namespace

std::span<const RoleInfo> role_catalogue() {
  return roles();
}

bool is_known_role(std::string_view role) {
  return std::any_of(roles().begin(), roles().end(), [&](const RoleInfo& r) { return r.name == role; });
}

std::vector<std::string> default_roles(PrincipalKind kind) {
  switch (kind) {
    case PrincipalKind::operator_account:
      return {"admin"};
    case PrincipalKind::metaverse_system:
      return {"registry-reader", "twin-reader", "twin-controller", "service-user"};
    case PrincipalKind::twin_system:
      return {"registry-writer", "twin-publisher"};
    case PrincipalKind::third_party_system:
      return {"registry-writer", "twin-reader"};
  }
  return {};
}

bool has_permission(const Principal& principal, Permission permission) {
  if (principal.disabled) return false;
  for (const auto& role : principal.roles) {
    for (const auto& info : roles()) {
      if (info.name == role &&
          std::find(info.permissions.begin(), info.permissions.end(), permission) != info.permissions.end()) {
        return true;
      }
    }
  }
  return false;
}

std::string_view to_string(Permission permission) {
  switch (permission) {
    case P::principals_read:
      return "principals:read";
    case P::principals_write:
      return "principals:write";
    case P::audit_read:
      return "audit:read";
    case P::registry_read:
      return "registry:read";
    case P::registry_write:
      return "registry:write";
    case P::registry_admin:
      return "registry:admin";
    case P::twins_read:
      return "twins:read";
    case P::twins_control:
      return "twins:control";
    case P::twins_publish:
      return "twins:publish";
    case P::services_use:
      return "services:use";
  }
  return "unknown";
}

}  // namespace twinbridge::core
