#pragma once
// The state of a twin beside its Thing Description (FGMV-29 8.3.3, DTIA): the values of its properties, its
// pose in the virtual world, the status of its running actions, and the facts of the last change (version,
// the DT system's time and sequence number, when and through which channel twinbridge took it in).
// StateSchema, built once from the twin's TD, checks every change against the TD and applies it.
//
// The state document (to_json, state_from_json):
//   {"id", "properties": {name: value}, "pose": {"frame", "position": [x, y, z],
//    "orientation": [x, y, z, w]}, "actions": {name: {"status", "input"?, "output"?, "error"?}},
//    "version", "sourceTime", "sourceSeq", "ingestedAt", "channel", "updated": {name: time}}
// Times are RFC 3339 (core/time.hpp). pose, sourceTime and sourceSeq are left out when the state has none.
// The pose is written exactly as the TD's pose extension (thing_description.hpp, kPoseMember) writes it and
// follows its rules (frame 1 to 256 bytes, finite numbers, a unit quaternion within 1e-6, then scaled to
// norm 1; an absent member takes Pose's default), so that a pose moves between TD and state unchanged.
//
// TD terms twinbridge reads for the state (members TD 1.1 allows as extensions):
//   - "twinbridge:ephemeral": true on a property affordance: the property's value is transient (a live
//     reading whose history is worthless); stores may keep it in memory only and need not journal it.
//   - "twinbridge:poseEphemeral": true at the top level of the TD: the same for the pose. It is a sibling of
//     "twinbridge:pose" rather than a member of it because parse_thing_description reads the pose extension
//     strictly (frame, position, orientation) and writes it back from Pose alone.
// The flags are reported (StateProperty::ephemeral, StateSchema::pose_ephemeral()); apply() treats
// ephemeral values like any other.
//
// Thread-safety: TwinState is a value. A StateSchema is immutable after from_td(); copies share the compiled
// validators, and any number of threads may call its const members at once.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/json_schema.hpp"
#include "core/thing_description.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

inline constexpr std::string_view kEphemeralTerm = "twinbridge:ephemeral";
inline constexpr std::string_view kPoseEphemeralTerm = "twinbridge:poseEphemeral";
// The channel of the state a twin starts with (StateSchema::initial_state).
inline constexpr std::string_view kRegistrationChannel = "registration";
inline constexpr std::size_t kMaxChannelBytes = 64;

struct TwinState {
  std::string id;                  // the twin's id (its TD's id)
  boost::json::object properties;  // name -> value; only values reported or written, never invented
  std::optional<Pose> pose;
  // name -> {"status": "pending" | "running" | "completed" | "failed", "input"?, "output"?, "error"?}
  boost::json::object actions;
  std::int64_t version = 0;                // +1 on every applied change
  std::optional<Timestamp> source_time;    // the DT system's time of its last report
  std::optional<std::int64_t> source_seq;  // the DT system's sequence number of its last report
  Timestamp ingested{};                    // when twinbridge took in the last change (its own clock)
  std::string channel;                     // "http", "mqtt", "acquisition", "wot", "registration", ...
  // name -> when twinbridge took in the property's current value (its own clock, so that staleness is
  // judged against one clock whatever the DT system's clock says); apply() keeps its names those of
  // `properties`.
  std::map<std::string, Timestamp, std::less<>> updated;
};

// The state document (see the top of this file).
boost::json::object to_json(const TwinState& state);
// A pose as the state document writes it.
boost::json::object to_json(const Pose& pose);

// Reads a state document back (from storage). Strict: unknown members, wrong types and malformed times are
// errors. It checks the document's shape only, not its values against the TD. Errors:
// Errc::validation_failed with every bad member's pointer, prefixed by `pointer_base`.
Result<TwinState> state_from_json(const boost::json::value& doc, std::string_view pointer_base = "");

// Who writes a change.
enum class ChangeSource {
  // The twin system that owns the twin (the physical side) reports what is. It may report readOnly
  // properties, the pose and the status of actions, and remove a property value (null: no longer known). It
  // may not report writeOnly properties: they have no readable value.
  twin_system,
  // A consumer's write request (W3C WoT writeproperty). It may write properties that are not readOnly, and
  // only properties: the pose and the actions are reported by the twin system (actions are invoked through
  // invokeaction, which the twin plane records with source twin_system when it forwards the invocation). It
  // may not remove a value (a write sets one). A writeOnly property is checked but its value is not kept:
  // the state holds readable values only.
  consumer,
};

// The facts of a change besides its content.
struct ChangeFacts {
  Timestamp ingested{};                    // twinbridge's clock when the change arrived
  std::string channel;                     // how it arrived
  std::optional<std::int64_t> source_seq;  // the DT system's sequence number, when it sends one
  std::optional<Timestamp> source_time;    // the DT system's time, when it sends one
};

// Where a change stands against the current state (change_order).
enum class ChangeOrder { newer, duplicate, older };
std::string_view to_string(ChangeOrder order);

// Orders a change by the DT system's facts: when the change and the current state both carry a sequence
// number, a lower one is older and an equal one a duplicate; otherwise, when both carry a source time, an
// earlier one is older (an equal time is newer: two different changes may share a time, so the later
// arrival wins); otherwise the change is newer. An older change must not overwrite the state; a duplicate
// need not be applied again. A DT system that restarts its sequence numbers must say so out of band (e.g.
// by re-registering): the rule cannot tell a restart from a replay.
ChangeOrder change_order(const TwinState& current, std::optional<std::int64_t> source_seq,
                         std::optional<Timestamp> source_time);

// A property affordance of the TD as the state uses it.
struct StateProperty {
  std::string name;
  JsonSchema schema;  // its data schema, translated to JSON Schema
  bool read_only = false;
  bool write_only = false;
  bool observable = false;
  bool ephemeral = false;  // kEphemeralTerm
  // Pointers (in the TD) of data schema terms the validator cannot apply and that were therefore dropped:
  // "format" values it does not know, patterns it cannot run. Empty for most TDs; for a registration's
  // warnings and logs.
  std::vector<std::string> ignored_terms;
};

// An action affordance of the TD: the schemas of its input and output, when the TD gives them.
struct StateAction {
  std::string name;
  std::optional<JsonSchema> input;
  std::optional<JsonSchema> output;
  std::vector<std::string> ignored_terms;
};

// The pose extension of a TD (member "pose"), when it holds a valid pose: a new twin's initial pose.
std::optional<Pose> td_pose(const boost::json::object& td);

// What a twin's state may hold, from its TD. W3C WoT TD 1.1 data schemas are translated into JSON Schema
// 2020-12 and compiled with JsonSchema: kept are type, const, enum, minimum, maximum, exclusiveMinimum,
// exclusiveMaximum, multipleOf, minLength, maxLength, pattern, format (the formats JsonSchema knows),
// items (an array of schemas becomes prefixItems), minItems, maxItems, properties, required and oneOf.
// Dropped are the WoT-only terms (forms, observable, uriVariables, title(s), description(s), unit, @type,
// default, contentEncoding, contentMediaType; readOnly and writeOnly are kept as flags of the property) and
// every term TD 1.1 does not define (e.g. additionalProperties): a valid TD never fails. Terms the
// validator refuses are dropped and listed in ignored_terms.
class StateSchema {
 public:
  // `td` is a TD as stored (core::TwinRecord::document), already validated by parse_thing_description; what
  // cannot be used is ignored rather than reported.
  static StateSchema from_td(const boost::json::object& td);
  // What from_td() reads of `td`, as text: two TDs with the same key have the same schema, which twins may
  // then share (a fleet of identical devices compiles its schema once).
  static std::string shape_key(const boost::json::object& td);

  const std::vector<StateProperty>& properties() const { return properties_; }  // in TD order
  const StateProperty* property(std::string_view name) const;
  const std::vector<StateAction>& actions() const { return actions_; }
  const StateAction* action(std::string_view name) const;
  bool pose_ephemeral() const { return pose_ephemeral_; }  // kPoseEphemeralTerm

  // The state of a newly registered twin: version 1, no property values (they are never invented), no
  // actions, `pose` (the TD's: td_pose()), channel kRegistrationChannel, ingested `now`.
  TwinState initial_state(std::string twin_id, Timestamp now, std::optional<Pose> pose = std::nullopt) const;

  // Checks `patch`, an RFC 7396 merge patch of the state document restricted to "properties", "pose" and
  // "actions", against the TD and what `source` may write, and applies it to `current`. Merge-patch
  // semantics hold inside values too: an object value is merged into the current one, and a null removes a
  // member. After merging, each changed property value must satisfy its data schema (so removing a required
  // member of an object value is refused at that member's pointer), the pose must be a valid pose, and
  // each changed action entry must have a known status and an input/output that satisfy the action's
  // schemas. A null property removes the value (twin system only: the TD cannot mark a property value as
  // required, so absence is always allowed); "pose": null removes the pose. Everything the patch does not
  // name is kept unchanged. The result has version + 1, ingested and channel from `facts`, the source
  // sequence and time from `facts` when given (else the current ones, so that a consumer's write does not
  // disturb the ordering of the twin system's reports), and `updated` set to facts.ingested for each
  // property value set. An empty patch {} is applied: a report that changes nothing still advances the
  // source facts. Ordering is the caller's (change_order).
  // Errors: Errc::validation_failed with one FieldError per violation (at most kMaxViolations), e.g.
  // "/properties/temperature": "must be at most 40", "/properties/config/mode": "is required",
  // "/properties/colour": "is not a property of the twin", "/version": "is set by twinbridge".
  Result<TwinState> apply(const TwinState& current, const boost::json::value& patch, ChangeSource source,
                          const ChangeFacts& facts) const;

  // The check apply() makes of the members of "properties" alone, without a state to apply them to: each
  // value (none null) merged into `current(name)` (null: no value yet) and checked by the same rules, with
  // the same errors. The merged values by name, in the patch's order (names view `patch`). For changes kept
  // apart from the state (the live values of ephemeral properties).
  // The same for a change of the pose alone (from the twin system, not a removal): merged into `current` and
  // read as apply() reads it; the pose, or apply()'s errors.
  static Result<Pose> check_pose(const std::optional<Pose>& current, const boost::json::object& patch);

  Result<std::vector<std::pair<std::string_view, boost::json::value>>> check_properties(
      const boost::json::object& patch,
      const std::function<const boost::json::value*(std::string_view)>& current, ChangeSource source) const;

 private:
  StateSchema() = default;

  std::vector<StateProperty> properties_;
  std::vector<StateAction> actions_;
  std::map<std::string, std::size_t, std::less<>> property_index_, action_index_;
  bool pose_ephemeral_ = false;
};

}  // namespace twinbridge::core
