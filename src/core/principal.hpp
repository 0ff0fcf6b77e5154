#pragma once
// Principals: who is calling. FGMV-29 has three outer systems (metaverse, digital twin, 3rd-party) and
// twinbridge adds the operators who run it. Each principal has a kind and roles; roles grant permissions
// (core/access.hpp). A principal authenticates with an API key (stored as a hash) or a JWT whose `sub` is the
// principal's id.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

enum class PrincipalKind { operator_account, metaverse_system, twin_system, third_party_system };

std::string_view to_string(
    PrincipalKind kind);  // "operator", "metaverse-system", "twin-system", "third-party-system"
std::optional<PrincipalKind> parse_principal_kind(std::string_view text);

struct Principal {
  PrincipalId id;
  PrincipalKind kind = PrincipalKind::metaverse_system;
  std::string name;
  std::vector<std::string> roles;
  boost::json::object properties;
  bool disabled = false;
  Timestamp created{};
  Timestamp modified{};
  std::int64_t version = 0;  // starts at 1, +1 on every change; the ETag
};

inline constexpr std::size_t kMaxNameBytes = 256;
inline constexpr std::size_t kMaxPropertiesBytes = 16 * 1024;

boost::json::object to_json(const Principal& p);

// Reads a principal from a request document. On create, `current` is null: id is optional (generated when
// absent), kind is required, roles default to the kind's defaults. On update (after a merge patch), `current`
// is the stored principal: id, kind and the timestamps are read-only and must not change. Unknown members are
// rejected.
Result<Principal> principal_from_json(const boost::json::value& doc, const Principal* current);

}  // namespace twinbridge::core
