#pragma once
// The audit log: one entry per change, written in the same transaction as the change itself, so that a change
// without its entry (or an entry without its change) cannot exist.

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>

#include "core/time.hpp"

namespace twinbridge::core {

struct AuditEntry {
  std::int64_t seq = 0;  // assigned by the store, strictly increasing
  Timestamp at{};
  std::string actor;        // principal id, or "admin-token" for TWINBRIDGE_ADMIN_TOKEN
  std::string actor_kind;   // principal kind
  std::string action;       // e.g. "principal.create", "api-key.revoke"
  std::string target_type;  // e.g. "principal"
  std::string target_id;
  std::string request_id;
  boost::json::object detail;  // what changed (never a secret)
};

boost::json::object to_json(const AuditEntry& entry);

}  // namespace twinbridge::core
