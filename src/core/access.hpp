#pragma once
// Authorization: roles grant permissions. The catalogue of roles is fixed in code (documented in the README
// and the OpenAPI document) so that a typo in a role is a validation error, not a silent loss of rights.
// Object-level rules (a system may change only its own registration) are checked by the part that owns the
// object.

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/principal.hpp"

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

}  // namespace twinbridge::core
