#include "core/audit.hpp"

namespace twinbridge::core {

boost::json::object to_json(const AuditEntry& e) {
  return {{"seq", e.seq},
          {"at", format_rfc3339(e.at)},
          {"actor", e.actor},
          {"actor_kind", e.actor_kind},
          {"action", e.action},
          {"target_type", e.target_type},
          {"target_id", e.target_id},
          {"request_id", e.request_id},
          {"detail", e.detail}};
}

}  // namespace twinbridge::core
