#include "core/access.hpp"

#include <fmt/format.h>

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
       "publish the twins the caller holds: their Thing Descriptions (DTSR, WoT directory) and their "
       "physical "
       "changes (DTS, physical to metaverse)",
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

PrincipalKind registrant_kind(SystemKind kind) {
  return kind == SystemKind::twin ? PrincipalKind::twin_system : PrincipalKind::third_party_system;
}

Result<void> may_own_system(const Principal& principal, SystemKind kind) {
  if (principal.kind == registrant_kind(kind) || has_permission(principal, P::registry_admin)) return {};
  return fail(
      Errc::forbidden,
      fmt::format("{} registrations belong to principals of kind {} (or operators with registry:admin); "
                  "principal '{}' is of kind {}",
                  to_string(kind), to_string(registrant_kind(kind)), principal.id.str(),
                  to_string(principal.kind)));
}

Result<void> may_register_system(const Principal& caller, SystemKind kind) {
  if (!has_permission(caller, P::registry_write)) {
    return fail(Errc::forbidden,
                fmt::format("principal '{}' lacks the permission registry:write", caller.id.str()));
  }
  return may_own_system(caller, kind);
}

Result<void> may_change_system(const Principal& caller, const SystemRecord& record) {
  if (has_permission(caller, P::registry_admin)) return {};
  if (caller.id == record.owner && has_permission(caller, P::registry_write)) return {};
  return fail(Errc::forbidden,
              fmt::format("{} '{}' belongs to principal '{}'; only it (with registry:write) or an operator "
                          "(registry:admin) may change it",
                          to_string(record.kind), record.id, record.owner.str()));
}

Result<void> may_publish_twins(const Principal& caller, const PrincipalId& holder, std::string_view what) {
  if (!has_permission(caller, P::twins_publish)) {
    return fail(Errc::forbidden,
                fmt::format("principal '{}' lacks the permission twins:publish", caller.id.str()));
  }
  if (has_permission(caller, P::registry_admin)) return {};
  if (caller.kind != PrincipalKind::twin_system) {
    return fail(Errc::forbidden,
                fmt::format("twins are published by principals of kind twin-system (or operators with "
                            "registry:admin); principal '{}' is of kind {}",
                            caller.id.str(), to_string(caller.kind)));
  }
  if (caller.id != holder) {
    return fail(Errc::forbidden,
                fmt::format("{} is held by principal '{}'; only it or an operator (registry:admin) may "
                            "publish its twins",
                            what, holder.str()));
  }
  return {};
}

}  // namespace twinbridge::core
