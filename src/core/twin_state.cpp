#include "core/twin_state.hpp"

#include <fmt/format.h>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <utility>

#include "core/ids.hpp"
#include "core/json_reader.hpp"
#include "core/merge_patch.hpp"

namespace twinbridge::core {

namespace json = boost::json;

namespace {

constexpr std::array<std::string_view, 7> kSchemaTypes{"object",  "array",   "string", "number",
                                                       "integer", "boolean", "null"};
// The "format" values JsonSchema checks; others are dropped.
constexpr std::array<std::string_view, 5> kFormats{"date-time", "uri", "uri-reference", "email", "uuid"};
// Terms kept as they are, when JsonSchema accepts them.
constexpr std::array<std::string_view, 13> kLeafTerms{
    "const",     "enum",      "minimum",  "maximum",  "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "minItems", "maxItems", "pattern",          "required"};
constexpr std::array<std::string_view, 4> kActionStatuses{"pending", "running", "completed", "failed"};
constexpr std::array<std::string_view, 4> kActionEntryMembers{"status", "input", "output", "error"};
// State members twinbridge sets; a change may not name them.
constexpr std::array<std::string_view, 7> kServerMembers{"id",         "version", "sourceTime", "sourceSeq",
                                                         "ingestedAt", "channel", "updated"};
constexpr std::size_t kMaxFrameBytes = 256;
constexpr double kUnitTolerance = 1e-6;
constexpr std::size_t kMaxTimeBytes = 64;

bool contains(std::span<const std::string_view> names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string join(std::span<const std::string_view> names) {
  std::string out;
  for (const auto name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::string_view view(const json::string& s) {
  return {s.data(), s.size()};
}

std::string wrong_type(std::string_view expected, const json::value& v) {
  return fmt::format("must be {}, not {}", expected, json_type_name(v));
}

// Collects violations up to kMaxViolations and counts the rest.
class Violations {
 public:
  void add(std::string pointer, std::string detail) {
    if (errors_.size() < kMaxViolations) {
      errors_.push_back({std::move(pointer), std::move(detail)});
    } else {
      ++dropped_;
    }
  }
  std::vector<FieldError>& errors() { return errors_; }
  std::size_t room() const { return kMaxViolations - errors_.size(); }
  bool empty() const { return errors_.empty() && dropped_ == 0; }

  // Errc::validation_failed naming `what` ("the state document", "the change").
  std::unexpected<Error> failure(std::string_view what) {
    const auto total = errors_.size() + dropped_;
    std::string detail;
    if (total == 1) {
      detail = fmt::format("{}: {}", errors_.front().pointer.empty() ? what : errors_.front().pointer,
                           errors_.front().detail);
    } else if (total > errors_.size()) {
      detail = fmt::format("{} has {} violations; the first {} are listed", what, total, errors_.size());
    } else {
      detail = fmt::format("{} has {} violations", what, total);
    }
    Error e(Errc::validation_failed, std::move(detail));
    e.fields = std::move(errors_);
    return std::unexpected(std::move(e));
  }

 private:
  std::vector<FieldError> errors_;
  std::size_t dropped_ = 0;
};

// Reads a pose as the TD's pose extension writes it, by the same rules as parse_thing_description.
std::optional<Pose> read_pose(const json::value& v, const std::string& pointer, Violations& out) {
  if (!v.is_object()) {
    out.add(pointer, wrong_type("an object (a pose: frame, position, orientation)", v));
    return std::nullopt;
  }
  Pose pose;
  bool ok = true;
  const auto numbers = [&](const json::value& value, const std::string& at, std::span<double> dest,
                           std::string_view what) {
    if (!value.is_array()) {
      out.add(at, wrong_type(fmt::format("an array of {} numbers ({})", dest.size(), what), value));
      return false;
    }
    const auto& items = value.get_array();
    if (items.size() != dest.size()) {
      out.add(at, fmt::format("must have {} items ({}), not {}", dest.size(), what, items.size()));
      return false;
    }
    bool good = true;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_number() || !std::isfinite(items[i].to_number<double>())) {
        out.add(pointer_append(at, std::to_string(i)), wrong_type("a finite number", items[i]));
        good = false;
      } else {
        dest[i] = items[i].to_number<double>();
      }
    }
    return good;
  };
  for (const auto& [key, value] : v.get_object()) {
    const auto at = pointer_append(pointer, key);
    if (key == "frame") {
      if (!value.is_string()) {
        out.add(at, wrong_type("a string", value));
        ok = false;
      } else if (value.get_string().empty() || value.get_string().size() > kMaxFrameBytes) {
        out.add(at, fmt::format("must be 1 to {} bytes long", kMaxFrameBytes));
        ok = false;
      } else {
        pose.frame = view(value.get_string());
      }
    } else if (key == "position") {
      ok = numbers(value, at, pose.position, "x, y, z in metres") && ok;
    } else if (key == "orientation") {
      if (!numbers(value, at, pose.orientation, "a quaternion x, y, z, w")) {
        ok = false;
        continue;
      }
      const auto& q = pose.orientation;
      const double norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
      if (!(std::abs(norm - 1.0) <= kUnitTolerance)) {
        out.add(at, fmt::format("must be a unit quaternion (norm 1 within {}); its norm is {}",
                                kUnitTolerance, norm));
        ok = false;
        continue;
      }
      if (std::abs(norm - 1.0) > 4 * std::numeric_limits<double>::epsilon()) {
        for (double& c : pose.orientation) c /= norm;
      }
    } else {
      out.add(at, "is not a member of a pose (frame, position, orientation)");
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return pose;
}

json::object pose_to_json(const Pose& p) {
  return json::object{
      {"frame", p.frame},
      {"position", json::array{p.position[0], p.position[1], p.position[2]}},
      {"orientation", json::array{p.orientation[0], p.orientation[1], p.orientation[2], p.orientation[3]}},
  };
}

std::optional<Timestamp> read_time(ObjectReader& r, std::string_view key, bool required, Violations& out) {
  const auto text = r.string(key, required, kMaxTimeBytes);
  if (!text) return std::nullopt;
  auto t = parse_rfc3339(*text);
  if (!t) out.add(r.member_pointer(key), "must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z");
  return t;
}

// The shape of one entry of "actions": {"status", "input"?, "output"?, "error"?}.
bool check_action_entry(const json::value& v, const std::string& pointer, Violations& out) {
  const auto* entry = v.if_object();
  if (entry == nullptr) {
    out.add(pointer, wrong_type(R"(an object (the action's status: {"status": ...}))", v));
    return false;
  }
  bool ok = true;
  const auto* status = entry->if_contains("status");
  if (status == nullptr) {
    out.add(pointer_append(pointer, "status"), fmt::format("is required (one of {})", join(kActionStatuses)));
    ok = false;
  } else if (!status->is_string() || !contains(kActionStatuses, view(status->get_string()))) {
    out.add(pointer_append(pointer, "status"),
            status->is_string() ? fmt::format("must be one of {}, not \"{}\"", join(kActionStatuses),
                                              view(status->get_string()))
                                : wrong_type("a string", *status));
    ok = false;
  }
  for (const auto& member : *entry) {
    if (!contains(kActionEntryMembers, member.key())) {
      out.add(pointer_append(pointer, member.key()),
              fmt::format("is not a member of an action's status ({})", join(kActionEntryMembers)));
      ok = false;
    }
  }
  return ok;
}

// Translates W3C WoT data schemas into JSON Schema 2020-12 as StateSchema documents it.
class Translator {
 public:
  explicit Translator(std::vector<std::string>& ignored) : ignored_(ignored) {}

  // Compiles the translation of the data schema at `pointer` in the TD; on the unexpected failure of the
  // whole, an accept-all schema, with the schema's pointer listed as ignored.
  JsonSchema compile(const json::value& data_schema, const std::string& pointer) {
    auto compiled = JsonSchema::compile(translate(data_schema, pointer, 1));
    if (compiled) return std::move(*compiled);
    ignored_.push_back(pointer);
    return *JsonSchema::compile(json::object{});
  }

 private:
  json::object translate(const json::value& schema, const std::string& pointer, int depth) {
    json::object out;
    const auto* o = schema.if_object();
    if (o == nullptr || depth > kMaxSchemaDepth) return out;
    for (const auto& [key, value] : *o) {
      const auto at = pointer_append(pointer, key);
      if (key == "type") {
        if (value.is_string() && contains(kSchemaTypes, view(value.get_string()))) out[key] = value;
      } else if (key == "format") {
        if (value.is_string() && contains(kFormats, view(value.get_string()))) {
          out[key] = value;
        } else {
          ignored_.push_back(at);
        }
      } else if (contains(kLeafTerms, key)) {
        if (accepted(key, value)) {
          out[key] = value;
        } else {
          ignored_.push_back(at);
        }
      } else if (key == "items") {
        if (value.is_object()) {
          out["items"] = translate(value, at, depth + 1);
        } else if (const auto* items = value.if_array(); items != nullptr && !items->empty()) {
          json::array tuple;
          for (std::size_t i = 0; i < items->size(); ++i) {
            tuple.push_back(translate((*items)[i], pointer_append(at, std::to_string(i)), depth + 1));
          }
          out["prefixItems"] = std::move(tuple);
        }
      } else if (key == "properties") {
        if (const auto* members = value.if_object()) {
          json::object translated;
          for (const auto& [name, member] : *members) {
            translated[name] = translate(member, pointer_append(at, name), depth + 1);
          }
          out[key] = std::move(translated);
        }
      } else if (key == "oneOf") {
        if (const auto* alternatives = value.if_array(); alternatives != nullptr && !alternatives->empty()) {
          json::array translated;
          for (std::size_t i = 0; i < alternatives->size(); ++i) {
            translated.push_back(
                translate((*alternatives)[i], pointer_append(at, std::to_string(i)), depth + 1));
          }
          out[key] = std::move(translated);
        }
      }
    }
    return out;
  }

  // Whether JsonSchema compiles the term on its own (a pattern it can run, a count that is a non-negative
  // integer, ...).
  static bool accepted(std::string_view key, const json::value& value) {
    return JsonSchema::compile(json::object{{key, value}}).has_value();
  }

  std::vector<std::string>& ignored_;
};

bool flag(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

}  // namespace

std::string_view to_string(ChangeOrder order) {
  switch (order) {
    case ChangeOrder::newer:
      return "newer";
    case ChangeOrder::duplicate:
      return "duplicate";
    case ChangeOrder::older:
      return "older";
  }
  return "newer";
}

ChangeOrder change_order(const TwinState& current, std::optional<std::int64_t> source_seq,
                         std::optional<Timestamp> source_time) {
  if (source_seq && current.source_seq) {
    if (*source_seq < *current.source_seq) return ChangeOrder::older;
    if (*source_seq == *current.source_seq) return ChangeOrder::duplicate;
    return ChangeOrder::newer;
  }
  if (source_time && current.source_time && *source_time < *current.source_time) return ChangeOrder::older;
  return ChangeOrder::newer;
}

json::object to_json(const TwinState& s) {
  json::object out;
  out["id"] = s.id;
  out["properties"] = s.properties;
  if (s.pose) out["pose"] = pose_to_json(*s.pose);
  out["actions"] = s.actions;
  out["version"] = s.version;
  if (s.source_time) out["sourceTime"] = format_rfc3339(*s.source_time);
  if (s.source_seq) out["sourceSeq"] = *s.source_seq;
  out["ingestedAt"] = format_rfc3339(s.ingested);
  out["channel"] = s.channel;
  json::object updated;
  for (const auto& [name, t] : s.updated) updated[name] = format_rfc3339(t);
  out["updated"] = std::move(updated);
  return out;
}

Result<TwinState> state_from_json(const json::value& doc, std::string_view pointer_base) {
  Violations out;
  ObjectReader r(doc, std::string(pointer_base), out.errors());
  TwinState s;
  if (auto id = r.string("id", true, kMaxIdBytes)) {
    if (id->empty()) out.add(r.member_pointer("id"), "must not be empty");
    s.id = std::move(*id);
  }
  if (const auto* properties = r.value("properties", true)) {
    if (properties->is_object()) {
      s.properties = properties->get_object();
    } else {
      out.add(r.member_pointer("properties"), wrong_type("an object", *properties));
    }
  }
  if (const auto* pose = r.value("pose", false)) s.pose = read_pose(*pose, r.member_pointer("pose"), out);
  if (const auto* actions = r.value("actions", true)) {
    const auto at = r.member_pointer("actions");
    if (const auto* entries = actions->if_object()) {
      for (const auto& [name, entry] : *entries) check_action_entry(entry, pointer_append(at, name), out);
      s.actions = *entries;
    } else {
      out.add(at, wrong_type("an object", *actions));
    }
  }
  if (auto version = r.integer("version", true, 0, std::numeric_limits<std::int64_t>::max()))
    s.version = *version;
  s.source_time = read_time(r, "sourceTime", false, out);
  s.source_seq = r.integer("sourceSeq", false, std::numeric_limits<std::int64_t>::min(),
                           std::numeric_limits<std::int64_t>::max());
  if (auto ingested = read_time(r, "ingestedAt", true, out)) s.ingested = *ingested;
  if (auto channel = r.string("channel", true, kMaxChannelBytes)) {
    if (channel->empty()) out.add(r.member_pointer("channel"), "must not be empty");
    s.channel = std::move(*channel);
  }
  if (const auto* updated = r.value("updated", true)) {
    const auto at = r.member_pointer("updated");
    if (const auto* times = updated->if_object()) {
      for (const auto& [name, value] : *times) {
        const auto t = value.is_string() ? parse_rfc3339(view(value.get_string())) : std::nullopt;
        if (t) {
          s.updated.emplace(std::string(name), *t);
        } else {
          out.add(pointer_append(at, name), value.is_string()
                                                ? "must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z"
                                                : wrong_type("a string (an RFC 3339 date-time)", value));
        }
      }
    } else {
      out.add(at, wrong_type("an object", *updated));
    }
  }
  r.reject_unknown();
  if (!out.empty()) return out.failure("the state document");
  return s;
}

StateSchema StateSchema::from_td(const json::object& td) {
  StateSchema schema;
  if (const auto* properties = td.if_contains("properties");
      properties != nullptr && properties->is_object()) {
    for (const auto& [name, affordance] : properties->get_object()) {
      const auto* o = affordance.if_object();
      if (o == nullptr) continue;
      std::vector<std::string> ignored;
      auto compiled = Translator(ignored).compile(affordance, pointer_append("/properties", name));
      schema.property_index_.emplace(std::string(name), schema.properties_.size());
      schema.properties_.push_back(StateProperty{
          .name = std::string(name),
          .schema = std::move(compiled),
          .read_only = flag(*o, "readOnly"),
          .write_only = flag(*o, "writeOnly"),
          .observable = flag(*o, "observable"),
          .ephemeral = flag(*o, kEphemeralTerm),
          .ignored_terms = std::move(ignored),
      });
    }
  }
  if (const auto* actions = td.if_contains("actions"); actions != nullptr && actions->is_object()) {
    for (const auto& [name, affordance] : actions->get_object()) {
      const auto* o = affordance.if_object();
      if (o == nullptr) continue;
      StateAction action;
      action.name = name;
      const auto at = pointer_append("/actions", name);
      Translator translator(action.ignored_terms);
      if (const auto* input = o->if_contains("input"))
        action.input = translator.compile(*input, pointer_append(at, "input"));
      if (const auto* output = o->if_contains("output"))
        action.output = translator.compile(*output, pointer_append(at, "output"));
      schema.action_index_.emplace(action.name, schema.actions_.size());
      schema.actions_.push_back(std::move(action));
    }
  }
  schema.pose_ephemeral_ = flag(td, kPoseEphemeralTerm);
  return schema;
}

std::string StateSchema::shape_key(const json::object& td) {
  // Forms are left out: from_td() does not read them, and they usually name the twin (its href).
  json::object shape;
  for (const auto* member : {"properties", "actions"}) {
    const auto* v = td.if_contains(member);
    if (v == nullptr) continue;
    if (!v->is_object()) {
      shape[member] = *v;
      continue;
    }
    json::object affordances;
    for (const auto& [name, affordance] : v->get_object()) {
      auto copy = affordance;
      if (copy.is_object()) copy.as_object().erase("forms");
      affordances[name] = std::move(copy);
    }
    shape[member] = std::move(affordances);
  }
  shape["poseEphemeral"] = flag(td, kPoseEphemeralTerm);
  return json::serialize(shape);
}

std::optional<Pose> td_pose(const json::object& td) {
  const auto* pose = td.if_contains(kPoseMember);
  if (pose == nullptr) return std::nullopt;
  Violations ignored;
  return read_pose(*pose, std::string(kPoseMember), ignored);
}

const StateProperty* StateSchema::property(std::string_view name) const {
  const auto it = property_index_.find(name);
  return it == property_index_.end() ? nullptr : &properties_[it->second];
}

const StateAction* StateSchema::action(std::string_view name) const {
  const auto it = action_index_.find(name);
  return it == action_index_.end() ? nullptr : &actions_[it->second];
}

TwinState StateSchema::initial_state(std::string twin_id, Timestamp now, std::optional<Pose> pose) const {
  TwinState s;
  s.id = std::move(twin_id);
  s.pose = std::move(pose);
  s.version = 1;
  s.ingested = now;
  s.channel = kRegistrationChannel;
  return s;
}

namespace {

// Applies the members of one change to `next`, recording every violation.
// A change of one property's value (not a removal: `patch` is not null) by `source`, merged into `current`
// (null: no value yet) and checked against the property's data schema; the merged value, or nothing with the
// violations in `out`.
std::optional<json::value> checked_property_value(const StateProperty& info, const json::value* current,
                                                  const json::value& patch, ChangeSource source,
                                                  const std::string& at, Violations& out) {
  if (source == ChangeSource::twin_system && info.write_only) {
    out.add(at, "is writeOnly: it has no readable value to report");
    return std::nullopt;
  }
  if (source == ChangeSource::consumer && info.read_only) {
    out.add(at, "is readOnly: it cannot be written");
    return std::nullopt;
  }
  auto value = merge_patch(current != nullptr ? *current : json::value(), patch);
  // With no room left the change has already failed: the schema then only answers.
  if (!info.schema.validate(value, out.errors(), at, out.room())) return std::nullopt;
  return value;
}

// A pose change merged into `current` (none: an empty pose) and read as a pose; nothing with the violations
// in `out`.
std::optional<Pose> checked_pose(const std::optional<Pose>& current, const json::value& patch,
                                 const std::string& at, Violations& out) {
  const json::value base = current ? json::value(pose_to_json(*current)) : json::value(json::object{});
  return read_pose(merge_patch(base, patch), at, out);
}

std::string not_a_property(std::string_view name) {
  return fmt::format("is not a property of the twin (its Thing Description has no property \"{}\")", name);
}

class ChangeApplier {
 public:
  ChangeApplier(const StateSchema& schema, ChangeSource source, Timestamp ingested, TwinState& next,
                Violations& out)
      : schema_(schema), source_(source), ingested_(ingested), next_(next), out_(out) {}

  void properties(const json::value& patch) {
    const std::string at = "/properties";
    const auto* members = patch.if_object();
    if (members == nullptr) {
      out_.add(at, wrong_type("an object (property name to value)", patch));
      return;
    }
    for (const auto& [name, value] : *members) property(name, value, pointer_append(at, name));
  }

  void pose(const json::value& patch) {
    const std::string at = "/pose";
    if (source_ == ChangeSource::consumer) {
      out_.add(at, "is reported by the twin's system; a consumer cannot write it");
      return;
    }
    if (patch.is_null()) {
      next_.pose.reset();
      return;
    }
    if (!patch.is_object()) {
      out_.add(at, wrong_type("an object (a pose: frame, position, orientation) or null", patch));
      return;
    }
    if (auto pose = checked_pose(next_.pose, patch, at, out_)) next_.pose = std::move(*pose);
  }

  void actions(const json::value& patch) {
    const std::string at = "/actions";
    if (source_ == ChangeSource::consumer) {
      out_.add(at, "is reported by the twin's system; a consumer invokes an action with invokeaction");
      return;
    }
    const auto* members = patch.if_object();
    if (members == nullptr) {
      out_.add(at, wrong_type("an object (action name to status)", patch));
      return;
    }
    for (const auto& [name, value] : *members) action(name, value, pointer_append(at, name));
  }

 private:
  void property(std::string_view name, const json::value& patch, const std::string& at) {
    const auto* info = schema_.property(name);
    if (info == nullptr) {
      out_.add(at, not_a_property(name));
      return;
    }
    if (patch.is_null()) {
      if (source_ == ChangeSource::consumer) {
        out_.add(at, "cannot be removed by a write; a write sets a value");
        return;
      }
      next_.properties.erase(name);
      const auto it = next_.updated.find(name);
      if (it != next_.updated.end()) next_.updated.erase(it);
      return;
    }
    auto value = checked_property_value(*info, next_.properties.if_contains(name), patch, source_, at, out_);
    if (!value) return;
    if (info->write_only) return;  // a consumer's write of a value that cannot be read back: checked only
    next_.properties[name] = std::move(*value);
    next_.updated.insert_or_assign(std::string(name), ingested_);
  }

  void action(std::string_view name, const json::value& patch, const std::string& at) {
    const auto* info = schema_.action(name);
    if (info == nullptr) {
      out_.add(
          at, fmt::format("is not an action of the twin (its Thing Description has no action \"{}\")", name));
      return;
    }
    if (patch.is_null()) {
      next_.actions.erase(name);
      return;
    }
    if (!patch.is_object()) {
      out_.add(at, wrong_type(R"(an object (the action's status: {"status": ...}) or null)", patch));
      return;
    }
    const auto* current = next_.actions.if_contains(name);
    auto entry = merge_patch(current != nullptr ? *current : json::value(json::object{}), patch);
    bool ok = check_action_entry(entry, at, out_);
    const auto& o = entry.get_object();
    const std::pair<const char*, const std::optional<JsonSchema>*> checked[] = {{"input", &info->input},
                                                                                {"output", &info->output}};
    for (const auto& [key, schema] : checked) {
      const auto* value = o.if_contains(key);
      if (value == nullptr || !*schema) continue;
      ok = (*schema)->validate(*value, out_.errors(), pointer_append(at, key), out_.room()) && ok;
    }
    if (ok) next_.actions[name] = std::move(entry);
  }

  const StateSchema& schema_;
  ChangeSource source_;
  Timestamp ingested_;
  TwinState& next_;
  Violations& out_;
};

}  // namespace

Result<TwinState> StateSchema::apply(const TwinState& current, const json::value& patch, ChangeSource source,
                                     const ChangeFacts& facts) const {
  const auto* members = patch.if_object();
  if (members == nullptr) {
    return fail_at(Errc::validation_failed, "",
                   fmt::format("a state change must be a JSON object (a merge patch of properties, pose and "
                               "actions), not {}",
                               json_type_name(patch)));
  }
  TwinState next = current;
  Violations out;
  ChangeApplier applier(*this, source, facts.ingested, next, out);
  for (const auto& [key, value] : *members) {
    if (key == "properties") {
      applier.properties(value);
    } else if (key == "pose") {
      applier.pose(value);
    } else if (key == "actions") {
      applier.actions(value);
    } else if (contains(kServerMembers, key)) {
      out.add(pointer_append("", key), "is set by twinbridge; a change cannot write it");
    } else {
      out.add(pointer_append("", key),
              "is not a member of the twin state; a change may hold properties, pose "
              "and actions");
    }
  }
  if (!out.empty()) return out.failure("the change");
  next.version = current.version + 1;
  next.ingested = facts.ingested;
  next.channel = facts.channel;
  if (facts.source_seq) next.source_seq = facts.source_seq;
  if (facts.source_time) next.source_time = facts.source_time;
  return next;
}

Result<std::vector<std::pair<std::string_view, json::value>>> StateSchema::check_properties(
    const json::object& patch, const std::function<const json::value*(std::string_view)>& current,
    ChangeSource source) const {
  std::vector<std::pair<std::string_view, json::value>> merged;
  merged.reserve(patch.size());
  Violations out;
  for (const auto& [key, value] : patch) {
    const std::string_view name(key.data(), key.size());
    const auto at = pointer_append("/properties", name);
    const auto* info = property(name);
    if (info == nullptr) {
      out.add(at, not_a_property(name));
      continue;
    }
    if (value.is_null()) {
      out.add(at, "is a removal: check_properties() takes values only");
      continue;
    }
    if (auto v = checked_property_value(*info, current(name), value, source, at, out)) {
      merged.emplace_back(name, std::move(*v));
    }
  }
  if (!out.empty()) return out.failure("the change");
  return merged;
}

Result<Pose> StateSchema::check_pose(const std::optional<Pose>& current, const json::object& patch) {
  Violations out;
  auto pose = checked_pose(current, json::value(patch), "/pose", out);
  if (!pose) return out.failure("the change");
  return std::move(*pose);
}

boost::json::object to_json(const Pose& pose) {
  return pose_to_json(pose);
}

}  // namespace twinbridge::core
