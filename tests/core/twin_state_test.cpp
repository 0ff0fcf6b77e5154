#include "core/twin_state.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/thing_description.hpp"

namespace twinbridge::core {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

using Violations = std::vector<std::pair<std::string, std::string>>;

const Timestamp kT0 = from_unix_micros(1'700'000'000'000'000);

// A boiler with one property per data schema term the state checks. Forms are added by `stored`.
constexpr std::string_view kBoiler = R"({
  "@context": "https://www.w3.org/2022/wot/td/v1.1",
  "id": "urn:dev:ops:boiler-1",
  "title": "Boiler",
  "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
  "security": "nosec_sc",
  "properties": {
    "temperature": {"type": "number", "minimum": -20, "maximum": 120, "unit": "om:degree_Celsius",
                    "readOnly": true, "observable": true, "twinbridge:ephemeral": true, "title": "Water"},
    "setpoint": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100, "multipleOf": 0.5},
    "burners": {"type": "integer", "minimum": 1, "maximum": 4},
    "mode": {"type": "string", "enum": ["eco", "comfort", "off"]},
    "label": {"type": "string", "minLength": 2, "maxLength": 8, "pattern": "^[a-z]+$"},
    "serial": {"type": "string", "format": "uuid"},
    "installed": {"type": "string", "format": "date-time"},
    "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    "pair": {"type": "array", "items": [{"type": "number"}, {"type": "string"}]},
    "config": {
      "type": "object",
      "properties": {
        "mode": {"type": "string"},
        "limits": {"type": "object", "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
                   "required": ["low", "high"]}
      },
      "required": ["mode"]
    },
    "enabled": {"type": "boolean"},
    "model": {"const": "B-42"},
    "nothing": {"type": "null"},
    "reading": {"oneOf": [{"type": "number"}, {"type": "string", "const": "n/a"}]},
    "code": {"type": "string", "writeOnly": true},
    "odd": {"type": "string", "format": "hostname", "pattern": "^\\p{L}+$", "maxLength": 4,
            "contentMediaType": "text/plain", "additionalProperties": false, "x:vendor": {"a": 1}},
    "anything": {"description": "no schema at all"}
  },
  "actions": {
    "move": {
      "input": {"type": "object", "properties": {"position": {"type": "array", "items": {"type": "number"},
                                                              "minItems": 3, "maxItems": 3}},
                "required": ["position"]},
      "output": {"type": "object", "properties": {"distance": {"type": "number", "minimum": 0}}}
    },
    "stop": {}
  },
  "events": {"overheated": {"data": {"type": "number"}}},
  "twinbridge:pose": {"frame": "plant-room", "position": [1, 2, 3], "orientation": [0, 0, 0, 1]},
  "twinbridge:poseEphemeral": true
})";

// `td` with a form on every affordance, validated, as the twin registry stores it.
json::object stored(std::string_view td) {
  auto doc = json::parse(td).as_object();
  for (const auto* kind : {"properties", "actions", "events"}) {
    if (auto* map = doc.if_contains(kind)) {
      for (auto& [name, affordance] : map->as_object()) {
        affordance.as_object()["forms"] = json::array{json::object{{"href", std::string("/") + name.data()}}};
      }
    }
  }
  const auto parsed = parse_thing_description(doc);
  EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error().detail);
  return parsed ? to_json(*parsed) : doc;
}

const StateSchema& boiler() {
  static const StateSchema schema = StateSchema::from_td(stored(kBoiler));
  return schema;
}

ChangeFacts facts(std::string channel = "http") {
  return ChangeFacts{
      .ingested = kT0 + 1s, .channel = std::move(channel), .source_seq = {}, .source_time = {}};
}

TwinState fresh() {
  return boiler().initial_state("urn:dev:ops:boiler-1", kT0, td_pose(stored(kBoiler)));
}

Result<TwinState> apply(const TwinState& current, std::string_view patch,
                        ChangeSource source = ChangeSource::twin_system) {
  return boiler().apply(current, json::parse(patch), source, facts());
}

std::string describe(const Violations& v) {
  std::string out;
  for (const auto& [pointer, detail] : v) out += "\n  " + pointer + ": " + detail;
  return out;
}

// Every violation of `patch` applied to `current`, sorted by pointer; empty when it applies.
Violations violations(const TwinState& current, std::string_view patch,
                      ChangeSource source = ChangeSource::twin_system) {
  const auto next = apply(current, patch, source);
  if (next) return {};
  EXPECT_EQ(next.error().code, Errc::validation_failed);
  Violations out;
  for (const auto& f : next.error().fields) out.emplace_back(f.pointer, f.detail);
  std::sort(out.begin(), out.end());
  return out;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

void expect_violation(const TwinState& current, std::string_view patch, std::string_view pointer,
                      std::string_view detail_part, ChangeSource source = ChangeSource::twin_system) {
  const auto v = violations(current, patch, source);
  ASSERT_EQ(v.size(), 1u) << "for " << patch << describe(v);
  EXPECT_EQ(v[0].first, pointer) << "for " << patch;
  EXPECT_TRUE(contains(v[0].second, detail_part)) << "for " << patch << ": " << v[0].second;
}

TEST(TwinStateTest, ReadsTheFlagsOfEachPropertyFromTheTd) {
  const auto& s = boiler();
  ASSERT_EQ(s.properties().size(), 17u);
  EXPECT_EQ(s.properties().front().name, "temperature");
  const auto* t = s.property("temperature");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->read_only);
  EXPECT_FALSE(t->write_only);
  EXPECT_TRUE(t->observable);
  EXPECT_TRUE(t->ephemeral);
  EXPECT_TRUE(t->ignored_terms.empty());
  const auto* code = s.property("code");
  ASSERT_NE(code, nullptr);
  EXPECT_TRUE(code->write_only);
  EXPECT_FALSE(code->read_only);
  EXPECT_FALSE(code->observable);
  EXPECT_FALSE(code->ephemeral);
  EXPECT_EQ(s.property("colour"), nullptr);
  ASSERT_NE(s.action("move"), nullptr);
  EXPECT_TRUE(s.action("move")->input.has_value());
  EXPECT_TRUE(s.action("move")->output.has_value());
  ASSERT_NE(s.action("stop"), nullptr);
  EXPECT_FALSE(s.action("stop")->input.has_value());
  EXPECT_EQ(s.action("overheated"), nullptr);
  EXPECT_TRUE(s.pose_ephemeral());
}

TEST(TwinStateTest, DropsTermsTheValidatorCannotApplyAndListsThem) {
  const auto* odd = boiler().property("odd");
  ASSERT_NE(odd, nullptr);
  EXPECT_EQ(odd->ignored_terms,
            (std::vector<std::string>{"/properties/odd/format", "/properties/odd/pattern"}));
  // The terms that remain still apply: maxLength.
  EXPECT_TRUE(violations(fresh(), R"({"properties": {"odd": "abcd"}})").empty());
  expect_violation(fresh(), R"({"properties": {"odd": "abcde"}})", "/properties/odd", "at most 4");
  // A property without a data schema accepts any value.
  EXPECT_TRUE(violations(fresh(), R"({"properties": {"anything": {"x": [1, null]}}})").empty());
}

TEST(TwinStateTest, InitialStateHasNoValuesAndTheTdPose) {
  const auto s = fresh();
  EXPECT_EQ(s.id, "urn:dev:ops:boiler-1");
  EXPECT_TRUE(s.properties.empty());
  EXPECT_TRUE(s.actions.empty());
  EXPECT_TRUE(s.updated.empty());
  EXPECT_EQ(s.version, 1);
  EXPECT_EQ(s.ingested, kT0);
  EXPECT_EQ(s.channel, "registration");
  EXPECT_FALSE(s.source_seq.has_value());
  EXPECT_FALSE(s.source_time.has_value());
  ASSERT_TRUE(s.pose.has_value());
  EXPECT_EQ(s.pose->frame, "plant-room");
  EXPECT_DOUBLE_EQ(s.pose->position[2], 3);
  EXPECT_DOUBLE_EQ(s.pose->orientation[3], 1);

  const auto bare = StateSchema::from_td(stored(R"({
    "@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "Bare",
    "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc"})"));
  EXPECT_TRUE(bare.properties().empty());
  EXPECT_FALSE(bare.pose_ephemeral());
  EXPECT_FALSE(td_pose(stored(R"({
    "@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "Bare",
    "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc"})"))
                   .has_value());
}

TEST(TwinStateTest, TwinsWhoseTdsDeclareTheSameAffordancesShareOneSchemaKey) {
  auto td = stored(kBoiler);
  const auto key = StateSchema::shape_key(td);
  // Another twin of the same kind: its id, title, pose and form hrefs differ, what the schema is built from
  // does not.
  auto other = td;
  other["id"] = "urn:dev:ops:boiler-2";
  other["title"] = "Boiler 2";
  other.erase("pose");
  for (auto& [name, affordance] : other["properties"].as_object()) {
    affordance.as_object()["forms"] = json::array{json::object{{"href", "/boiler-2/" + std::string(name)}}};
  }
  EXPECT_EQ(StateSchema::shape_key(other), key);
  // A property more, or a TD that makes its pose ephemeral, is another schema.
  auto more = td;
  more["properties"].as_object()["extra"] = json::object{{"type", "number"}};
  EXPECT_NE(StateSchema::shape_key(more), key);
  auto stored_pose = td;
  stored_pose["twinbridge:poseEphemeral"] = false;  // the boiler's pose is ephemeral
  EXPECT_NE(StateSchema::shape_key(stored_pose), key);
}

struct TermCase {
  std::string_view patch;
  std::string_view pointer;  // empty: the change is valid
  std::string_view detail_part = "";
};

TEST(TwinStateTest, ChecksEveryDataSchemaTerm) {
  const TermCase cases[] = {
      // type, minimum, maximum
      {R"({"temperature": 21.5})", ""},
      {R"({"temperature": "warm"})", "/properties/temperature", "number"},
      {R"({"temperature": 120})", ""},
      {R"({"temperature": 120.5})", "/properties/temperature", "at most 120"},
      {R"({"temperature": -21})", "/properties/temperature", "at least -20"},
      // exclusiveMinimum, exclusiveMaximum, multipleOf
      {R"({"setpoint": 55.5})", ""},
      {R"({"setpoint": 0})", "/properties/setpoint", "greater than 0"},
      {R"({"setpoint": 100})", "/properties/setpoint", "less than 100"},
      {R"({"setpoint": 55.25})", "/properties/setpoint", "multiple of 0.5"},
      // integer
      {R"({"burners": 2})", ""},
      {R"({"burners": 2.5})", "/properties/burners", "integer"},
      {R"({"burners": 5})", "/properties/burners", "at most 4"},
      // enum
      {R"({"mode": "eco"})", ""},
      {R"({"mode": "turbo"})", "/properties/mode", "eco"},
      // minLength, maxLength, pattern
      {R"({"label": "abc"})", ""},
      {R"({"label": "a"})", "/properties/label", "at least 2"},
      {R"({"label": "abcdefghi"})", "/properties/label", "at most 8"},
      {R"({"label": "ABC"})", "/properties/label", "pattern"},
      // format
      {R"({"serial": "0190a8b4-7c1e-7d35-8b8a-0c4d8b7a1f20"})", ""},
      {R"({"serial": "not-a-uuid"})", "/properties/serial", "UUID"},
      {R"({"installed": "2024-05-01T12:00:00Z"})", ""},
      {R"({"installed": "yesterday"})", "/properties/installed", "date-time"},
      // items, minItems, maxItems
      {R"({"tags": ["a", "b"]})", ""},
      {R"({"tags": []})", "/properties/tags", "at least 1"},
      {R"({"tags": ["a", "b", "c", "d"]})", "/properties/tags", "at most 3"},
      {R"({"tags": ["a", 2]})", "/properties/tags/1", "string"},
      // items as an array of schemas (a tuple)
      {R"({"pair": [1, "one"]})", ""},
      {R"({"pair": [1, 2]})", "/properties/pair/1", "string"},
      // boolean, const, null
      {R"({"enabled": false})", ""},
      {R"({"enabled": "yes"})", "/properties/enabled", "boolean"},
      {R"({"model": "B-42"})", ""},
      {R"({"model": "B-43"})", "/properties/model", "B-42"},
      {R"({"nothing": 0})", "/properties/nothing", "null"},
      // oneOf
      {R"({"reading": 3})", ""},
      {R"({"reading": "n/a"})", ""},
      {R"({"reading": "high"})", "/properties/reading", "exactly one"},
      // properties, required
      {R"({"config": {"mode": "a", "limits": {"low": 1, "high": 2}}})", ""},
      {R"({"config": {"mode": 7}})", "/properties/config/mode", "string"},
  };
  for (const auto& c : cases) {
    const auto patch = std::string(R"({"properties": )") + std::string(c.patch) + "}";
    if (c.pointer.empty()) {
      const auto v = violations(fresh(), patch);
      EXPECT_TRUE(v.empty()) << "for " << patch << describe(v);
    } else {
      expect_violation(fresh(), patch, c.pointer, c.detail_part);
    }
  }
}

TEST(TwinStateTest, NamesTheMissingMemberOfANestedObject) {
  const auto v = violations(fresh(), R"({"properties": {"config": {"limits": {"low": 1}}}})");
  EXPECT_EQ(v, (Violations{{"/properties/config/limits/high", "is required"},
                           {"/properties/config/mode", "is required"}}))
      << describe(v);
}

TEST(TwinStateTest, MergesObjectValuesAndChecksTheResult) {
  auto s = apply(fresh(), R"({"properties": {"config": {"mode": "a", "limits": {"low": 1, "high": 2}}}})");
  ASSERT_TRUE(s.has_value()) << s.error().detail;
  auto next = apply(*s, R"({"properties": {"config": {"mode": "b"}}})");
  ASSERT_TRUE(next.has_value()) << next.error().detail;
  EXPECT_EQ(next->properties.at("config"), json::parse(R"({"mode": "b", "limits": {"low": 1, "high": 2}})"));
  // A null inside a value removes that member, and the result must still satisfy the schema.
  expect_violation(*s, R"({"properties": {"config": {"limits": {"high": null}}}})",
                   "/properties/config/limits/high", "is required");
  next = apply(*s, R"({"properties": {"anything": {"a": 1, "b": null}}})");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->properties.at("anything"), json::parse(R"({"a": 1})"));
}

TEST(TwinStateTest, RefusesUnknownPropertiesAndMembers) {
  expect_violation(fresh(), R"({"properties": {"colour": "red"}})", "/properties/colour", "\"colour\"");
  expect_violation(fresh(), R"({"properties": {"a/b": 1}})", "/properties/a~1b", "no property");
  expect_violation(fresh(), R"({"properties": [1]})", "/properties", "object");
  expect_violation(fresh(), R"({"state": {}})", "/state", "not a member of the twin state");
  for (const auto* member :
       {"id", "version", "sourceTime", "sourceSeq", "ingestedAt", "channel", "updated"}) {
    const auto patch = std::string(R"({")") + member + R"(": 1})";
    expect_violation(fresh(), patch, std::string("/") + member, "set by twinbridge");
  }
  const auto not_object = boiler().apply(fresh(), json::parse("[1]"), ChangeSource::twin_system, facts());
  ASSERT_FALSE(not_object.has_value());
  EXPECT_EQ(not_object.error().code, Errc::validation_failed);
  EXPECT_EQ(not_object.error().fields.at(0).pointer, "");
}

TEST(TwinStateTest, ListsEveryViolationOfAChange) {
  const auto v = violations(fresh(), R"({"properties": {"temperature": 500, "mode": "turbo", "colour": 1},
                                          "pose": {"frame": ""}, "version": 9})");
  std::vector<std::string> pointers;
  for (const auto& [pointer, detail] : v) pointers.push_back(pointer);
  EXPECT_EQ(pointers, (std::vector<std::string>{"/pose/frame", "/properties/colour", "/properties/mode",
                                                "/properties/temperature", "/version"}))
      << describe(v);
  const auto next = apply(fresh(), R"({"properties": {"temperature": 500}, "version": 9})");
  ASSERT_FALSE(next.has_value());
  EXPECT_EQ(next.error().detail, "the change has 2 violations");
}

TEST(TwinStateTest, ReadOnlyAndWriteOnlyDependOnWhoWrites) {
  const auto system = ChangeSource::twin_system;
  const auto consumer = ChangeSource::consumer;
  // The twin system reports readOnly values; a consumer cannot write them.
  EXPECT_TRUE(violations(fresh(), R"({"properties": {"temperature": 60}})", system).empty());
  expect_violation(fresh(), R"({"properties": {"temperature": 60}})", "/properties/temperature", "readOnly",
                   consumer);
  // A writeOnly property has no value to report; a consumer's write is checked but not kept.
  expect_violation(fresh(), R"({"properties": {"code": "1234"}})", "/properties/code", "writeOnly", system);
  expect_violation(fresh(), R"({"properties": {"code": 1234}})", "/properties/code", "string", consumer);
  const auto written = apply(fresh(), R"({"properties": {"code": "1234", "setpoint": 60}})", consumer);
  ASSERT_TRUE(written.has_value()) << written.error().detail;
  EXPECT_FALSE(written->properties.contains("code"));
  EXPECT_FALSE(written->updated.contains("code"));
  EXPECT_EQ(written->properties.at("setpoint"), 60);
  // Neither readOnly nor writeOnly: both may write.
  EXPECT_TRUE(violations(fresh(), R"({"properties": {"setpoint": 60}})", system).empty());
  // The pose and the actions are the twin system's to report.
  expect_violation(fresh(), R"({"pose": {"frame": "x"}})", "/pose", "twin's system", consumer);
  expect_violation(fresh(), R"({"actions": {"stop": {"status": "pending"}}})", "/actions", "invokeaction",
                   consumer);
}

// check_properties() is apply()'s check of "properties" alone: the same merged values, the same errors.
TEST(TwinStateTest, ChecksPropertiesAloneAsApplyDoes) {
  auto base = apply(fresh(), R"({"properties": {"config": {"mode": "a", "limits": {"low": 1, "high": 2}}}})");
  ASSERT_TRUE(base.has_value()) << base.error().detail;
  const auto current = [&](std::string_view name) { return base->properties.if_contains(name); };
  for (const std::string_view patch : {
           R"({"temperature": 21.5, "config": {"mode": "b"}})",  // applies, merged into the current value
           R"({"temperature": "warm", "mode": "turbo"})",        // two violations
           R"({"config": {"limits": {"high": null}}})",          // a member removed that is required
           R"({"colour": 1, "code": "1234"})",                   // no such property; writeOnly
       }) {
    SCOPED_TRACE(patch);
    const auto properties = json::parse(patch).as_object();
    const auto checked = boiler().check_properties(properties, current, ChangeSource::twin_system);
    const auto applied =
        boiler().apply(*base, json::object{{"properties", properties}}, ChangeSource::twin_system, facts());
    ASSERT_EQ(checked.has_value(), applied.has_value());
    if (applied) {
      ASSERT_EQ(checked->size(), properties.size());
      for (const auto& [name, value] : *checked) EXPECT_EQ(value, applied->properties.at(name)) << name;
    } else {
      EXPECT_EQ(checked.error().detail, applied.error().detail);
      ASSERT_EQ(checked.error().fields.size(), applied.error().fields.size());
      for (std::size_t i = 0; i < checked.error().fields.size(); ++i) {
        EXPECT_EQ(checked.error().fields[i].pointer, applied.error().fields[i].pointer);
        EXPECT_EQ(checked.error().fields[i].detail, applied.error().fields[i].detail);
      }
    }
  }
}

// check_pose() is apply()'s check of "pose" alone: the same merged pose, the same errors.
TEST(TwinStateTest, ChecksThePoseAloneAsApplyDoes) {
  const auto base = fresh();
  for (const std::string_view patch : {
           R"({"position": [1, 2, 3]})",                         // merged into the TD's pose
           R"({"frame": "site", "orientation": [0, 0, 0, 1]})",  // another frame
           R"({"frame": ""})",                                   // not a frame
           R"({"position": [1, "x"]})",                          // not a position
       }) {
    SCOPED_TRACE(patch);
    const auto pose = json::parse(patch).as_object();
    const auto checked = StateSchema::check_pose(base.pose, pose);
    const auto applied =
        boiler().apply(base, json::object{{"pose", pose}}, ChangeSource::twin_system, facts());
    ASSERT_EQ(checked.has_value(), applied.has_value());
    if (applied) {
      EXPECT_EQ(to_json(*checked), to_json(*applied->pose));
    } else {
      EXPECT_EQ(checked.error().detail, applied.error().detail);
      ASSERT_EQ(checked.error().fields.size(), applied.error().fields.size());
      EXPECT_EQ(checked.error().fields.at(0).pointer, applied.error().fields.at(0).pointer);
    }
  }
}

TEST(TwinStateTest, NullRemovesAValueForTheTwinSystemOnly) {
  auto s = apply(fresh(), R"({"properties": {"setpoint": 60, "mode": "eco"}})");
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->updated.contains("setpoint"));
  const auto removed = apply(*s, R"({"properties": {"setpoint": null}})");
  ASSERT_TRUE(removed.has_value()) << removed.error().detail;
  EXPECT_FALSE(removed->properties.contains("setpoint"));
  EXPECT_FALSE(removed->updated.contains("setpoint"));
  EXPECT_EQ(removed->properties.at("mode"), "eco");
  // Removing a value that is not there is no error.
  EXPECT_TRUE(violations(fresh(), R"({"properties": {"setpoint": null}})").empty());
  expect_violation(*s, R"({"properties": {"setpoint": null}})", "/properties/setpoint", "cannot be removed",
                   ChangeSource::consumer);
  // Unknown properties are refused even when removed.
  expect_violation(*s, R"({"properties": {"colour": null}})", "/properties/colour", "no property");
}

TEST(TwinStateTest, AppliesTheFactsOfAChangeAndKeepsEverythingElse) {
  auto first = boiler().apply(
      fresh(), json::parse(R"({"properties": {"setpoint": 60, "mode": "eco"}})"), ChangeSource::twin_system,
      ChangeFacts{.ingested = kT0 + 5s, .channel = "mqtt", .source_seq = 17, .source_time = kT0 + 4s});
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->version, 2);
  EXPECT_EQ(first->ingested, kT0 + 5s);
  EXPECT_EQ(first->channel, "mqtt");
  EXPECT_EQ(first->source_seq, 17);
  EXPECT_EQ(first->source_time, kT0 + 4s);
  EXPECT_EQ(first->updated.at("setpoint"), kT0 + 5s);
  EXPECT_EQ(first->updated.at("mode"), kT0 + 5s);

  // A consumer's write: new version and channel, the source facts of the twin system stay.
  auto second = boiler().apply(
      *first, json::parse(R"({"properties": {"mode": "off"}})"), ChangeSource::consumer,
      ChangeFacts{.ingested = kT0 + 9s, .channel = "wot", .source_seq = {}, .source_time = {}});
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->version, 3);
  EXPECT_EQ(second->channel, "wot");
  EXPECT_EQ(second->ingested, kT0 + 9s);
  EXPECT_EQ(second->source_seq, 17);
  EXPECT_EQ(second->source_time, kT0 + 4s);
  EXPECT_EQ(second->properties.at("mode"), "off");
  EXPECT_EQ(second->updated.at("mode"), kT0 + 9s);
  EXPECT_EQ(second->properties.at("setpoint"), 60);
  EXPECT_EQ(second->updated.at("setpoint"), kT0 + 5s);
  ASSERT_TRUE(second->pose.has_value());
  EXPECT_EQ(second->pose->frame, "plant-room");

  // An empty change advances version and facts only.
  auto third = apply(*second, "{}");
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->version, 4);
  EXPECT_EQ(third->properties, second->properties);
  EXPECT_EQ(third->updated, second->updated);

  // A refused change leaves nothing half-applied: the caller keeps `current`.
  EXPECT_FALSE(apply(*second, R"({"properties": {"mode": "eco", "setpoint": -1}})").has_value());
}

TEST(TwinStateTest, ChecksAndMergesThePose) {
  auto moved = apply(fresh(), R"({"pose": {"position": [4, 5, 6]}})");
  ASSERT_TRUE(moved.has_value()) << moved.error().detail;
  ASSERT_TRUE(moved->pose.has_value());
  EXPECT_EQ(moved->pose->frame, "plant-room");
  EXPECT_DOUBLE_EQ(moved->pose->position[0], 4);
  EXPECT_DOUBLE_EQ(moved->pose->orientation[3], 1);

  // Normalised within the tolerance, as in the TD.
  auto turned = apply(*moved, R"({"pose": {"orientation": [0, 0, 0, 1.0000004]}})");
  ASSERT_TRUE(turned.has_value()) << turned.error().detail;
  EXPECT_DOUBLE_EQ(turned->pose->orientation[3], 1);

  expect_violation(fresh(), R"({"pose": {"orientation": [0, 0, 1, 1]}})", "/pose/orientation",
                   "unit quaternion");
  expect_violation(fresh(), R"({"pose": {"position": [1, 2]}})", "/pose/position", "3 items");
  expect_violation(fresh(), R"({"pose": {"position": [1, "2", 3]}})", "/pose/position/1", "finite number");
  expect_violation(fresh(), R"({"pose": {"frame": 3}})", "/pose/frame", "string");
  expect_violation(fresh(), R"({"pose": {"scale": 2}})", "/pose/scale", "not a member of a pose");
  expect_violation(fresh(), R"({"pose": [0, 0, 0]})", "/pose", "object");

  // A null member takes the default again; a null pose removes it; a pose can be reported anew.
  auto reset = apply(*moved, R"({"pose": {"frame": null}})");
  ASSERT_TRUE(reset.has_value());
  EXPECT_EQ(reset->pose->frame, "world");
  auto gone = apply(*moved, R"({"pose": null})");
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->pose.has_value());
  auto back = apply(*gone, R"({"pose": {"position": [7, 8, 9]}})");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->pose->frame, "world");
  EXPECT_DOUBLE_EQ(back->pose->position[2], 9);
}

TEST(TwinStateTest, ChecksTheStatusOfActions) {
  auto started =
      apply(fresh(), R"({"actions": {"move": {"status": "running", "input": {"position": [1, 2, 3]}}}})");
  ASSERT_TRUE(started.has_value()) << started.error().detail;
  // A merge keeps the input.
  auto done =
      apply(*started, R"({"actions": {"move": {"status": "completed", "output": {"distance": 3.7}}}})");
  ASSERT_TRUE(done.has_value()) << done.error().detail;
  EXPECT_EQ(done->actions.at("move"),
            json::parse(
                R"({"status": "completed", "input": {"position": [1, 2, 3]}, "output": {"distance": 3.7}})"));
  auto cleared = apply(*done, R"({"actions": {"move": null}})");
  ASSERT_TRUE(cleared.has_value());
  EXPECT_TRUE(cleared->actions.empty());

  expect_violation(fresh(), R"({"actions": {"stop": {}}})", "/actions/stop/status", "is required");
  expect_violation(fresh(), R"({"actions": {"stop": {"status": "done"}}})", "/actions/stop/status",
                   "pending, running, completed, failed");
  expect_violation(fresh(), R"({"actions": {"stop": {"status": "failed", "reason": "x"}}})",
                   "/actions/stop/reason", "not a member");
  expect_violation(fresh(), R"({"actions": {"stop": "running"}})", "/actions/stop", "object");
  expect_violation(fresh(), R"({"actions": {"fly": {"status": "pending"}}})", "/actions/fly", "no action");
  expect_violation(fresh(), R"({"actions": {"move": {"status": "pending", "input": {"position": [1]}}}})",
                   "/actions/move/input/position", "at least 3");
  expect_violation(fresh(), R"({"actions": {"move": {"status": "completed", "output": {"distance": -1}}}})",
                   "/actions/move/output/distance", "at least 0");
  // Without schemas any input goes, and an error may say anything.
  EXPECT_TRUE(
      violations(fresh(), R"({"actions": {"stop": {"status": "failed", "input": 1, "error": {"code": 5}}}})")
          .empty());
}

TEST(TwinStateTest, TranslatesTupleItemsOfARealTd) {
  std::ifstream in(std::string(TB_TEST_DATA_DIR) + "/data/robot_arm.td.json");
  std::stringstream text;
  text << in.rdbuf();
  const auto td = parse_thing_description(json::parse(text.str()));
  ASSERT_TRUE(td.has_value());
  const auto schema = StateSchema::from_td(to_json(*td));
  const auto state = schema.initial_state(td->id, kT0, td_pose(to_json(*td)));
  EXPECT_EQ(state.pose->frame, "cell-A3");
  EXPECT_FALSE(schema.pose_ephemeral());
  const auto report = [&](std::string_view patch) {
    return schema.apply(state, json::parse(patch), ChangeSource::twin_system, facts("acquisition"));
  };
  EXPECT_TRUE(report(R"({"properties": {"joints": [0.5, -1.5, 7]}})").has_value());
  const auto bad = report(R"({"properties": {"joints": [0.5, 2]}})");
  ASSERT_FALSE(bad.has_value());
  ASSERT_EQ(bad.error().fields.size(), 1u);
  EXPECT_EQ(bad.error().fields[0].pointer, "/properties/joints/1");
  EXPECT_EQ(bad.error().fields[0].detail, "must be at most 1.5708");
}

struct OrderCase {
  std::optional<std::int64_t> current_seq;
  std::optional<Timestamp> current_time;
  std::optional<std::int64_t> seq;
  std::optional<Timestamp> time;
  ChangeOrder expected;
};

TEST(TwinStateTest, OrdersChangesBySequenceThenSourceTime) {
  const OrderCase cases[] = {
      {5, {}, 6, {}, ChangeOrder::newer},
      {5, {}, 5, {}, ChangeOrder::duplicate},
      {5, {}, 4, {}, ChangeOrder::older},
      // The sequence decides even when the times disagree.
      {5, kT0, 6, kT0 - 1s, ChangeOrder::newer},
      {5, kT0, 4, kT0 + 1s, ChangeOrder::older},
      // Without sequences on both sides, the source time decides; an equal time is newer.
      {{}, kT0, {}, kT0 + 1s, ChangeOrder::newer},
      {{}, kT0, {}, kT0, ChangeOrder::newer},
      {{}, kT0, {}, kT0 - 1s, ChangeOrder::older},
      {5, kT0, {}, kT0 - 1s, ChangeOrder::older},
      {{}, kT0, 3, kT0 - 1s, ChangeOrder::older},
      // Nothing to compare: newer.
      {{}, {}, 1, kT0, ChangeOrder::newer},
      {5, kT0, {}, {}, ChangeOrder::newer},
      {{}, {}, {}, {}, ChangeOrder::newer},
  };
  for (std::size_t i = 0; i < std::size(cases); ++i) {
    const auto& c = cases[i];
    TwinState current;
    current.source_seq = c.current_seq;
    current.source_time = c.current_time;
    EXPECT_EQ(to_string(change_order(current, c.seq, c.time)), to_string(c.expected)) << "case " << i;
  }
}

TEST(TwinStateTest, WritesAndReadsTheStateDocument) {
  auto s = boiler().apply(
      fresh(), json::parse(R"({"properties": {"setpoint": 60, "config": {"mode": "a"}},
                      "actions": {"stop": {"status": "pending"}}})"),
      ChangeSource::twin_system,
      ChangeFacts{.ingested = kT0 + 5s, .channel = "mqtt", .source_seq = -3, .source_time = kT0 + 4s});
  ASSERT_TRUE(s.has_value());
  const auto doc = to_json(*s);
  EXPECT_EQ(doc, json::parse(R"({
    "id": "urn:dev:ops:boiler-1",
    "properties": {"setpoint": 60, "config": {"mode": "a"}},
    "pose": {"frame": "plant-room", "position": [1.0, 2.0, 3.0], "orientation": [0.0, 0.0, 0.0, 1.0]},
    "actions": {"stop": {"status": "pending"}},
    "version": 2,
    "sourceTime": "2023-11-14T22:13:24.000000Z",
    "sourceSeq": -3,
    "ingestedAt": "2023-11-14T22:13:25.000000Z",
    "channel": "mqtt",
    "updated": {"config": "2023-11-14T22:13:25.000000Z", "setpoint": "2023-11-14T22:13:25.000000Z"}
  })"))
      << json::serialize(doc);
  const auto back = state_from_json(doc);
  ASSERT_TRUE(back.has_value()) << back.error().detail;
  EXPECT_EQ(to_json(*back), doc);

  // Without pose and source facts those members are left out.
  TwinState bare;
  bare.id = "urn:x";
  bare.channel = "http";
  const auto bare_doc = to_json(bare);
  EXPECT_FALSE(bare_doc.contains("pose"));
  EXPECT_FALSE(bare_doc.contains("sourceTime"));
  EXPECT_FALSE(bare_doc.contains("sourceSeq"));
  ASSERT_TRUE(state_from_json(bare_doc).has_value());
}

TEST(TwinStateTest, ReadsTheStateDocumentStrictly) {
  const auto errors = [](std::string_view text, std::string_view base = "") {
    const auto s = state_from_json(json::parse(text), base);
    Violations out;
    if (s) return out;
    EXPECT_EQ(s.error().code, Errc::validation_failed);
    for (const auto& f : s.error().fields) out.emplace_back(f.pointer, f.detail);
    std::sort(out.begin(), out.end());
    return out;
  };
  const auto v = errors(R"({
    "id": "", "properties": [], "pose": {"frame": "f", "orientation": [0, 0, 0, 2]},
    "actions": {"a": {"status": "sleeping"}}, "version": -1, "sourceTime": "noon", "sourceSeq": "1",
    "ingestedAt": "2023-11-14T22:13:25.000000Z", "channel": "", "updated": {"x": 3}, "extra": true
  })",
                        "/state");
  std::vector<std::string> pointers;
  for (const auto& [pointer, detail] : v) pointers.push_back(pointer);
  EXPECT_EQ(pointers, (std::vector<std::string>{"/state/actions/a/status", "/state/channel", "/state/extra",
                                                "/state/id", "/state/pose/orientation", "/state/properties",
                                                "/state/sourceSeq", "/state/sourceTime", "/state/updated/x",
                                                "/state/version"}))
      << describe(v);
  const auto missing = errors("{}");
  std::vector<std::string> required;
  for (const auto& [pointer, detail] : missing) required.push_back(pointer);
  EXPECT_EQ(required, (std::vector<std::string>{"/actions", "/channel", "/id", "/ingestedAt", "/properties",
                                                "/updated", "/version"}));
  EXPECT_EQ(errors("[]"), (Violations{{"", "must be an object, not array"}}));
}

}  // namespace
}  // namespace twinbridge::core
