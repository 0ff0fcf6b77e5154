#pragma once
// A registered digital twin: a W3C WoT Thing Description 1.1 (validated by parse_thing_description, with
// twinbridge's pose extension) plus what the directory keeps about it: which twin system owns it (empty when
// it was registered directly in the WoT directory), who registered it, and the registration information of
// W3C WoT Discovery (created, modified, ttl, expires).

#include <boost/json/object.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "core/ids.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

struct TwinRecord {
  std::string id;         // the TD's id (an absolute URI)
  std::string system_id;  // the owning twin system, or empty
  PrincipalId owner;      // the principal that registered it
  std::string title;
  boost::json::object document;  // the validated TD, pose extension included
  Timestamp created{};
  Timestamp modified{};
  std::int64_t version = 0;
  std::optional<std::int64_t> ttl_seconds;  // W3C WoT Discovery registration ttl
  std::optional<Timestamp> expires;         // created/modified + ttl; an expired twin is gone
};

// The TD as served: the document plus "registration" {created, modified, ttl?, expires?} (W3C WoT Discovery)
// and "twinbridge:system", "twinbridge:version".
boost::json::object to_json(const TwinRecord& twin);

}  // namespace twinbridge::core
