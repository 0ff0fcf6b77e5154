#include "core/twin.hpp"

namespace twinbridge::core {

boost::json::object to_json(const TwinRecord& t) {
  boost::json::object out = t.document;
  boost::json::object registration{{"created", format_rfc3339(t.created)},
                                   {"modified", format_rfc3339(t.modified)}};
  if (t.ttl_seconds) registration["ttl"] = *t.ttl_seconds;
  if (t.expires) registration["expires"] = format_rfc3339(*t.expires);
  out["registration"] = std::move(registration);
  if (!t.system_id.empty()) out["twinbridge:system"] = t.system_id;
  out["twinbridge:version"] = t.version;
  return out;
}

}  // namespace twinbridge::core
