#pragma once
// Who does something, whatever the way in: the principal, the credential it proved, the request it belongs
// to and the channel it came by. Every command of the domain (dtif, registry, sif) takes an Actor, so that
// audit entries and authorization decisions are the same for HTTP, WebSocket, MQTT and WoT observe; the
// adapters build it (http: from the authenticated request).

#include <optional>
#include <string>
#include <string_view>

#include "core/audit.hpp"
#include "core/principal.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

enum class Channel { http, websocket, mqtt, acquisition, wot, internal };

std::string_view to_string(Channel channel);

struct Actor {
  Principal principal;
  std::string credential;            // "admin-token", "api-key:<key id>", "jwt:<kid>", "mqtt:<broker>"
  std::optional<Timestamp> expires;  // when the credential expires (API key expiry, JWT exp), if ever
  std::string request_id{};          // the request (or message) the command belongs to, for logs and audit
  Channel channel = Channel::http;
};

// An audit entry for a change `actor` made at `at`.
AuditEntry audit_entry(const Actor& actor, Timestamp at, std::string action, std::string target_type,
                       std::string target_id, boost::json::object detail = {});

}  // namespace twinbridge::core
