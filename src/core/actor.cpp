#include "core/actor.hpp"

namespace twinbridge::core {

std::string_view to_string(Channel channel) {
  switch (channel) {
    case Channel::http:
      return "http";
    case Channel::websocket:
      return "websocket";
    case Channel::mqtt:
      return "mqtt";
    case Channel::acquisition:
      return "acquisition";
    case Channel::wot:
      return "wot";
    case Channel::internal:
      return "internal";
  }
  return "internal";
}

AuditEntry audit_entry(const Actor& actor, Timestamp at, std::string action, std::string target_type,
                       std::string target_id, boost::json::object detail) {
  AuditEntry a;
  a.at = at;
  a.actor = actor.principal.id.str();
  a.actor_kind = std::string(core::to_string(actor.principal.kind));
  a.action = std::move(action);
  a.target_type = std::move(target_type);
  a.target_id = std::move(target_id);
  a.request_id = actor.request_id;
  a.detail = std::move(detail);
  a.detail["credential"] = actor.credential;
  if (actor.channel != Channel::http) a.detail["channel"] = to_string(actor.channel);
  return a;
}

}  // namespace twinbridge::core
