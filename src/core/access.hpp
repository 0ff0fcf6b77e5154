#pragma once
// Authorization: roles grant permissions. The catalogue of roles is fixed in code (documented in the README
// and the OpenAPI document) so that a typo in a role is a validation error, not a silent loss of rights.
// The rules of who may register which kind of system and publish which twins are here too (the part that
// owns the object applies them: registry::SystemRegistry, dtif::TwinRegistry), so that every route applies
// the same rule:
//   - a 3rd-party system is registered by a principal of kind third-party-system, a twin system by one of
//   kind
//     twin-system (each with registry:write), or by an operator with registry:admin;
//   - a registration is changed by its owner (registry:write) or by registry:admin;
//   - twins are published (created, replaced, patched, removed) with twins:publish by the principal that
//     holds them: the owner of their twin system, or for directory twins (registered through /things without
//     a twin system) the twin-system principal that published them; registry:admin may publish any twin.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/principal.hpp"
#include "core/system.hpp"

namespace twinbridge::core {

enum class Permission {
  principals_read,   // list and read principals and their API key metadata
  principals_write,  // create, change, disable and delete principals; issue and revoke their keys
  audit_read,        // read the audit log
  registry_read,     // discover 3rd-party systems, twin systems and twins
  registry_write,    // register and change the caller's own systems and twins
  registry_admin,    // change or remove any registration
  twins_read,        // read twin state
  twins_control,     // request changes of twins (actions, property writes)
  twins_publish,     // publish physical changes of the caller's own twins
  services_use,      // use 3rd-party services through the gateway
};

struct RoleInfo {
  std::string_view name;
  std::string_view description;
  std::vector<Permission> permissions;
};

std::span<const RoleInfo> role_catalogue();
bool is_known_role(std::string_view role);
std::vector<std::string> default_roles(PrincipalKind kind);
bool has_permission(const Principal& principal, Permission permission);
std::string_view to_string(Permission permission);

// The kind of principal that registers systems of `kind`: third-party-system for 3rd-party systems,
// twin-system for twin systems.
PrincipalKind registrant_kind(SystemKind kind);

// Whether `principal` may own registrations of `kind` (be their registrant, or receive them in a transfer):
// it is of registrant_kind(kind), or it has registry:admin. Errors: forbidden, naming the rule.
Result<void> may_own_system(const Principal& principal, SystemKind kind);

// Registering a system of `kind`: registry:write and may_own_system. Errors: forbidden.
Result<void> may_register_system(const Principal& caller, SystemKind kind);

// Changing or deregistering `record`: its owner with registry:write, or registry:admin. Errors: forbidden.
Result<void> may_change_system(const Principal& caller, const SystemRecord& record);

// Publishing twins held by `holder` (the owner of their twin system; for a directory twin, the principal that
// published it; for a new directory twin, the caller itself): twins:publish, and registry:admin or the caller
// is `holder` and of kind twin-system. `what` names the twins in the error ("twin system 'x'", "twin 'y'").
// Errors: forbidden.
Result<void> may_publish_twins(const Principal& caller, const PrincipalId& holder, std::string_view what);

}  // namespace twinbridge::core
