#include "core/system.hpp"

namespace twinbridge::core {

std::string_view to_string(SystemKind kind) {
  return kind == SystemKind::third_party ? "third-party-system" : "twin-system";
}

std::string_view to_string(SystemStatus status) {
  switch (status) {
    case SystemStatus::unknown:
      return "unknown";
    case SystemStatus::up:
      return "up";
    case SystemStatus::degraded:
      return "degraded";
    case SystemStatus::down:
      return "down";
  }
  return "unknown";
}

std::optional<SystemStatus> parse_system_status(std::string_view text) {
  for (auto s : {SystemStatus::unknown, SystemStatus::up, SystemStatus::degraded, SystemStatus::down}) {
    if (to_string(s) == text) return s;
  }
  return std::nullopt;
}

boost::json::object to_json(const SystemRecord& r) {
  boost::json::object out = r.body;
  out["id"] = r.id;
  out["kind"] = to_string(r.kind);
  out["owner"] = r.owner.str();
  out["status"] = boost::json::object{
      {"state", to_string(r.status)}, {"reason", r.status_reason}, {"since", format_rfc3339(r.status_since)}};
  out["created"] = format_rfc3339(r.created);
  out["modified"] = format_rfc3339(r.modified);
  out["version"] = r.version;
  return out;
}

}  // namespace twinbridge::core
