#pragma once
// Registered systems (FGMV-29 8.2.1 TPSR, 8.3.1 DTSR): 3rd-party systems and digital twin systems that
// registered themselves with twinbridge. A record keeps the registration document as submitted (validated by
// the kind's published JSON Schema) and the members twinbridge maintains: owner, status, timestamps, version.

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/ids.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

enum class SystemKind { third_party, twin };
std::string_view to_string(SystemKind kind);  // "third-party-system", "twin-system"

enum class SystemStatus { unknown, up, degraded, down };
std::string_view to_string(SystemStatus status);
std::optional<SystemStatus> parse_system_status(std::string_view text);

struct SystemRecord {
  SystemKind kind = SystemKind::third_party;
  std::string id;
  std::string type;
  std::string name;
  PrincipalId owner;         // the principal that registered it; it (or registry:admin) may change it
  boost::json::object body;  // the registration document, without the server-maintained members
  SystemStatus status = SystemStatus::unknown;
  std::string status_reason = "not checked yet";
  Timestamp status_since{};
  Timestamp created{};
  Timestamp modified{};
  std::int64_t version = 0;
};

// Members twinbridge maintains; a client may send them back unchanged (after a GET) but not change them.
inline constexpr std::string_view kSystemServerMembers[] = {"kind",    "owner",    "status",
                                                            "created", "modified", "version"};

// The registration document plus the server-maintained members.
boost::json::object to_json(const SystemRecord& record);

}  // namespace twinbridge::core
