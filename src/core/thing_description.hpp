#pragma once
// W3C Web of Things Thing Descriptions (TD 1.1, also accepting TD 1.0 documents) as twinbridge registers
// digital twins: a validator that reports every violation of the TD information model with its JSON pointer,
// and twinbridge's one extension, the twin's pose in the virtual world.
//
// What is checked: the members TD 1.1 defines must be present when mandatory and have the right types and
// values (@context, title, security naming securityDefinitions, security schemes, interaction affordances
// with non-empty forms, form hrefs and operation types per affordance kind, data schemas, links, dates,
// version). Members TD 1.1 does not define are allowed (TDs are extensible through JSON-LD), except inside
// the twinbridge extension, which is read strictly. No I/O: nothing is dereferenced or fetched.
//
// Bounds: data schemas may nest at most kMaxSchemaDepth deep; at most kMaxViolations violations are listed.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace twinbridge::core {

// The top-level member that carries the pose, e.g.
// "twinbridge:pose": {"frame": "hall-2", "position": [1.5, 0, 2], "orientation": [0, 0, 0.7071068,
// 0.7071068]}. Every member of the pose is optional and defaults to the value in Pose.
inline constexpr std::string_view kPoseMember = "twinbridge:pose";
inline constexpr std::string_view kTdContextV11 = "https://www.w3.org/2022/wot/td/v1.1";
inline constexpr std::string_view kTdContextV10 = "https://www.w3.org/2019/wot/td/v1";
inline constexpr int kMaxSchemaDepth = 32;
inline constexpr std::size_t kMaxViolations = 100;

// Where a twin is in the virtual world.
struct Pose {
  std::string frame = "world";        // reference frame name
  double position[3]{0, 0, 0};        // metres
  double orientation[4]{0, 0, 0, 1};  // unit quaternion x, y, z, w
};

struct ThingDescription {
  std::string id;  // the TD's "id" (a URI); empty for an anonymous TD
  std::string title;
  boost::json::object document;  // the TD as given, without the twinbridge extension member
  std::optional<Pose> pose;
  std::vector<std::string> property_names, action_names, event_names;  // in document order
};

// Validates a TD 1.1 document and takes it apart. Errors: Errc::validation_failed listing every violation
// (at most kMaxViolations) with the RFC 6901 pointer of the member, e.g.
// "/properties/brightness/forms/0/href": "is required"; `pointer_base` prefixes every pointer (for a TD
// embedded in a larger request body). The pose's orientation must be a unit quaternion within 1e-6; it is
// then scaled to norm 1.
Result<ThingDescription> parse_thing_description(const boost::json::value& doc,
                                                 std::string_view pointer_base = "");

// The document with the pose extension written back (as the last member), for responses.
boost::json::object to_json(const ThingDescription& td);

}  // namespace twinbridge::core
