#include "core/policy.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/thing_description.hpp"

namespace twinbridge::core {
namespace {

namespace json = boost::json;

using Violations = std::vector<std::pair<std::string, std::string>>;

// A lamp: a readOnly observable property, a plain property, a writeOnly one, an action and an event.
json::object lamp() {
  auto doc = json::parse(R"({
    "@context": "https://www.w3.org/2022/wot/td/v1.1",
    "id": "urn:dev:ops:lamp-1",
    "title": "Lamp",
    "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
    "security": "nosec_sc",
    "properties": {
      "status": {"type": "string", "readOnly": true, "observable": true, "forms": [{"href": "/status"}]},
      "brightness": {"type": "integer", "minimum": 0, "maximum": 100, "forms": [{"href": "/brightness"}]},
      "pin": {"type": "string", "writeOnly": true, "forms": [{"href": "/pin"}]}
    },
    "actions": {"toggle": {"forms": [{"href": "/toggle"}]}},
    "events": {"overheating": {"data": {"type": "number"}, "forms": [{"href": "/overheating"}]}},
    "twinbridge:pose": {"position": [1, 2, 0]}
  })");
  const auto td = parse_thing_description(doc);
  EXPECT_TRUE(td.has_value()) << (td ? "" : td.error().detail);
  return td ? to_json(*td) : doc.as_object();
}

std::string describe(const Violations& v) {
  std::string out;
  for (const auto& [pointer, detail] : v) out += "\n  " + pointer + ": " + detail;
  return out;
}

Violations sorted(const Error& e) {
  Violations out;
  for (const auto& f : e.fields) out.emplace_back(f.pointer, f.detail);
  std::sort(out.begin(), out.end());
  return out;
}

Policy policy(std::string_view text) {
  auto p = parse_policy(json::parse(text));
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().detail + describe(sorted(p.error())));
  return p ? std::move(*p) : Policy{};
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

SubjectFacts who(std::string principal, std::vector<std::string> roles = {},
                 std::vector<std::string> systems = {}) {
  return SubjectFacts{.principal = PrincipalId(std::move(principal)),
                      .roles = std::move(roles),
                      .systems = std::move(systems)};
}

TEST(PolicyTest, ReadsAndWritesAPolicy) {
  const auto text = R"({"rules": [
    {"id": "readers", "description": "everyone with twin-reader reads everything",
     "subject": {"role": "twin-reader"}, "effect": "allow",
     "operations": ["readproperty", "observeproperty", "subscribeevent"], "affordances": "*"},
    {"subject": {"principal": "metaverse-7"}, "effect": "deny", "operations": ["writeproperty"],
     "affordances": ["brightness", "pin"]},
    {"id": "plant", "subject": {"system": "plant-twins"}, "effect": "allow", "operations": ["invokeaction"],
     "affordances": ["toggle"]},
    {"subject": {"any": true}, "effect": "allow", "operations": ["readproperty"], "affordances": ["status"]}
  ]})";
  const auto p = policy(text);
  ASSERT_EQ(p.rules.size(), 4u);
  EXPECT_EQ(p.rules[0].id, "readers");
  EXPECT_EQ(p.rules[0].subject.kind, Subject::Kind::role);
  EXPECT_TRUE(p.rules[0].every_affordance);
  EXPECT_EQ(p.rules[1].effect, Effect::deny);
  EXPECT_EQ(p.rules[1].subject.name, "metaverse-7");
  EXPECT_EQ(p.rules[1].affordances, (std::vector<std::string>{"brightness", "pin"}));
  EXPECT_EQ(p.rules[2].subject.kind, Subject::Kind::system);
  EXPECT_EQ(p.rules[2].operations, (std::vector<Operation>{Operation::invokeaction}));
  EXPECT_EQ(p.rules[3].subject.kind, Subject::Kind::any);
  EXPECT_EQ(json::value(to_json(p)), json::parse(text));
  EXPECT_TRUE(parse_policy(json::parse(R"({"rules": []})")).has_value());
}

struct ErrorCase {
  std::string_view rule;     // one rule, as JSON
  std::string_view pointer;  // of the one violation
  std::string_view detail_part;
};

TEST(PolicyTest, ReportsEveryBadMemberOfARuleWithItsPointer) {
  const ErrorCase cases[] = {
      {R"({"effect": "allow", "operations": ["readproperty"], "affordances": "*"})", "/rules/0/subject",
       "missing"},
      {R"({"subject": {"role": "twin-reader"}, "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/effect", "missing"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "permit", "operations": ["readproperty"],
           "affordances": "*"})",
       "/rules/0/effect", R"("allow" or "deny")"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": [], "affordances": "*"})",
       "/rules/0/operations", "at least one operation"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": "readproperty",
           "affordances": "*"})",
       "/rules/0/operations", "array"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproprety"],
           "affordances": "*"})",
       "/rules/0/operations/0", "not an operation"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readallproperties"],
           "affordances": "*"})",
       "/rules/0/operations/0", "grant \"readproperty\""},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproperty", "readproperty"],
           "affordances": "*"})",
       "/rules/0/operations/1", "repeats"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproperty"],
           "affordances": []})",
       "/rules/0/affordances", "at least one affordance"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproperty"],
           "affordances": ["status", "*"]})",
       "/rules/0/affordances/1", "stands alone"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproperty"],
           "affordances": ["status", "status"]})",
       "/rules/0/affordances/1", "repeats"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproperty"],
           "affordances": "all"})",
       "/rules/0/affordances", "array"},
      {R"({"subject": {"role": "twin-reader"}, "effect": "allow", "operations": ["readproperty"],
           "affordances": [""]})",
       "/rules/0/affordances/0", "1 to 256 bytes"},
      {R"({"subject": {"role": "wizard"}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject/role", "not a role"},
      {R"({"subject": {"group": "x"}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject/group", "not a kind of subject"},
      {R"({"subject": {"role": "twin-reader", "principal": "p"}, "effect": "allow",
           "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject", "exactly one member"},
      {R"({"subject": {}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject", "exactly one member"},
      {R"({"subject": {"any": false}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject/any", "must be true"},
      {R"({"subject": {"principal": "a b"}, "effect": "allow", "operations": ["readproperty"],
           "affordances": "*"})",
       "/rules/0/subject/principal", ""},
      {R"({"subject": {"system": 7}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject/system", "string"},
      {R"({"subject": "everyone", "effect": "allow", "operations": ["readproperty"], "affordances": "*"})",
       "/rules/0/subject", "object"},
      {R"({"id": "has space", "subject": {"any": true}, "effect": "allow", "operations": ["readproperty"],
           "affordances": "*"})",
       "/rules/0/id", ""},
      {R"({"subject": {"any": true}, "effect": "allow", "operations": ["readproperty"], "affordances": "*",
           "priority": 1})",
       "/rules/0/priority", "unknown member"},
      {R"("allow everything")", "/rules/0", "object"},
  };
  for (const auto& c : cases) {
    const auto text = std::string(R"({"rules": [)") + std::string(c.rule) + "]}";
    const auto p = parse_policy(json::parse(text));
    ASSERT_FALSE(p.has_value()) << text;
    EXPECT_EQ(p.error().code, Errc::validation_failed);
    const auto v = sorted(p.error());
    ASSERT_EQ(v.size(), 1u) << text << describe(v);
    EXPECT_EQ(v[0].first, c.pointer) << text;
    EXPECT_TRUE(contains(v[0].second, c.detail_part)) << text << ": " << v[0].second;
  }
}

TEST(PolicyTest, ReportsRepeatedIdsAndBadDocuments) {
  auto p = parse_policy(json::parse(R"({"rules": [
    {"id": "a", "subject": {"any": true}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"},
    {"id": "b", "subject": {"any": true}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"},
    {"id": "a", "subject": {"any": true}, "effect": "deny", "operations": ["readproperty"], "affordances": "*"}
  ]})"),
                        "/policy");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(sorted(p.error()), (Violations{{"/policy/rules/2/id", "repeats the id of rule 0"}}));
  EXPECT_EQ(p.error().detail, "/policy/rules/2/id: repeats the id of rule 0");

  p = parse_policy(json::parse(R"({"rules": {}, "owner": "x"})"));
  ASSERT_FALSE(p.has_value());
  const auto v = sorted(p.error());
  ASSERT_EQ(v.size(), 2u) << describe(v);
  EXPECT_EQ(v[0].first, "/owner");
  EXPECT_EQ(v[1].first, "/rules");
  EXPECT_EQ(p.error().detail, "the policy has 2 violations");

  p = parse_policy(json::parse("{}"));
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().fields.at(0).pointer, "/rules");

  // Every bad member of every rule at once.
  p = parse_policy(json::parse(R"({"rules": [
    {"subject": {"role": "nobody"}, "effect": "allow", "operations": ["fly"], "affordances": []},
    {"subject": {"any": true}, "effect": "maybe", "operations": ["readproperty"], "affordances": "*"}
  ]})"));
  ASSERT_FALSE(p.has_value());
  std::vector<std::string> pointers;
  for (const auto& [pointer, detail] : sorted(p.error())) pointers.push_back(pointer);
  EXPECT_EQ(pointers, (std::vector<std::string>{"/rules/0/affordances", "/rules/0/operations/0",
                                                "/rules/0/subject/role", "/rules/1/effect"}));

  json::array many;
  for (int i = 0; i <= static_cast<int>(kMaxPolicyRules); ++i) {
    many.push_back(json::parse(
        R"({"subject": {"any": true}, "effect": "allow", "operations": ["readproperty"], "affordances": "*"})"));
  }
  p = parse_policy(json::object{{"rules", many}});
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().fields.at(0).pointer, "/rules");
}

TEST(PolicyTest, DenyWinsOverAnyAllow) {
  const auto p = policy(R"({"rules": [
    {"id": "everyone-reads", "subject": {"any": true}, "effect": "allow", "operations": ["readproperty"],
     "affordances": "*"},
    {"id": "no-brightness", "subject": {"principal": "m-1"}, "effect": "deny", "operations": ["readproperty"],
     "affordances": ["brightness"]}
  ]})");
  auto d = decide(p, who("m-1"), Operation::readproperty, "brightness");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.rule, 1u);
  EXPECT_EQ(d.rule_id, "no-brightness");
  EXPECT_EQ(d.reason, R"(rule 1 ("no-brightness") denies readproperty on "brightness")");

  d = decide(p, who("m-1"), Operation::readproperty, "status");
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule, 0u);
  EXPECT_EQ(d.reason, R"(rule 0 ("everyone-reads") allows readproperty on "status")");

  d = decide(p, who("m-2"), Operation::readproperty, "brightness");
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule_id, "everyone-reads");

  d = decide(p, who("m-2"), Operation::writeproperty, "brightness");
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.rule.has_value());
  EXPECT_TRUE(d.rule_id.empty());
  EXPECT_EQ(d.reason, "no rule matched (default deny)");

  // The first matching allow is named; rules without an id are named by index.
  const auto two = policy(R"({"rules": [
    {"subject": {"any": true}, "effect": "allow", "operations": ["invokeaction"], "affordances": ["toggle"]},
    {"subject": {"any": true}, "effect": "allow", "operations": ["invokeaction"], "affordances": "*"}
  ]})");
  d = decide(two, who("m-1"), Operation::invokeaction, "toggle");
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule, 0u);
  EXPECT_EQ(d.reason, R"(rule 0 allows invokeaction on "toggle")");
  EXPECT_FALSE(decide(Policy{}, who("m-1"), Operation::readproperty, "status").allowed);
}

TEST(PolicyTest, MatchesRoleSystemAndAnySubjects) {
  const auto p = policy(R"({"rules": [
    {"subject": {"role": "twin-controller"}, "effect": "allow", "operations": ["writeproperty"],
     "affordances": ["brightness"]},
    {"subject": {"system": "plant-twins"}, "effect": "allow", "operations": ["invokeaction"],
     "affordances": ["toggle"]},
    {"subject": {"system": "quarantined"}, "effect": "deny", "operations": ["writeproperty", "invokeaction"],
     "affordances": "*"},
    {"subject": {"any": true}, "effect": "allow", "operations": ["subscribeevent"], "affordances": "*"}
  ]})");
  EXPECT_TRUE(decide(p, who("a", {"twin-reader", "twin-controller"}), Operation::writeproperty, "brightness")
                  .allowed);
  EXPECT_FALSE(decide(p, who("a", {"twin-reader"}), Operation::writeproperty, "brightness").allowed);
  EXPECT_FALSE(decide(p, who("a", {"twin-controller"}), Operation::writeproperty, "pin").allowed);
  EXPECT_TRUE(decide(p, who("b", {}, {"other", "plant-twins"}), Operation::invokeaction, "toggle").allowed);
  EXPECT_FALSE(decide(p, who("b", {}, {"other"}), Operation::invokeaction, "toggle").allowed);
  // A principal of a denied system loses what its role grants.
  const auto d =
      decide(p, who("c", {"twin-controller"}, {"quarantined"}), Operation::writeproperty, "brightness");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.rule, 2u);
  EXPECT_TRUE(decide(p, who("anyone"), Operation::subscribeevent, "overheating").allowed);
  // "any" stands for authenticated principals: an empty principal matches nothing.
  EXPECT_FALSE(decide(p, SubjectFacts{}, Operation::subscribeevent, "overheating").allowed);
}

TEST(PolicyTest, CharacteristicsBoundWhatAPolicyAllows) {
  const auto td = lamp();
  const auto ok = [&](Operation op, std::string_view name) { return check_characteristics(td, op, name); };
  EXPECT_TRUE(ok(Operation::readproperty, "status").has_value());
  EXPECT_TRUE(ok(Operation::observeproperty, "status").has_value());
  EXPECT_TRUE(ok(Operation::readproperty, "brightness").has_value());
  EXPECT_TRUE(ok(Operation::writeproperty, "brightness").has_value());
  EXPECT_TRUE(ok(Operation::writeproperty, "pin").has_value());
  EXPECT_TRUE(ok(Operation::invokeaction, "toggle").has_value());
  EXPECT_TRUE(ok(Operation::subscribeevent, "overheating").has_value());

  const auto refused = [&](Operation op, std::string_view name, Errc code, std::string_view detail) {
    const auto r = ok(op, name);
    ASSERT_FALSE(r.has_value()) << to_string(op) << " " << name;
    EXPECT_EQ(r.error().code, code) << to_string(op) << " " << name;
    EXPECT_EQ(r.error().detail, detail);
  };
  refused(Operation::writeproperty, "status", Errc::forbidden,
          R"(property "status" is readOnly: it cannot be written)");
  refused(Operation::readproperty, "pin", Errc::forbidden,
          R"(property "pin" is writeOnly: it cannot be read)");
  refused(Operation::observeproperty, "pin", Errc::forbidden,
          R"(property "pin" is writeOnly: it cannot be observed)");
  refused(
      Operation::observeproperty, "brightness", Errc::forbidden,
      R"(property "brightness" is not observable (its Thing Description does not mark it "observable": true))");
  refused(Operation::readproperty, "colour", Errc::validation_failed, R"(the twin has no property "colour")");
  refused(Operation::invokeaction, "dim", Errc::validation_failed, R"(the twin has no action "dim")");
  refused(Operation::subscribeevent, "status", Errc::validation_failed,
          R"("status" is a property of the twin, not an event: subscribeevent does not apply to it)");
  refused(Operation::readproperty, "toggle", Errc::validation_failed,
          R"("toggle" is an action of the twin, not a property: readproperty does not apply to it)");
  refused(Operation::invokeaction, "overheating", Errc::validation_failed,
          R"("overheating" is an event of the twin, not an action: invokeaction does not apply to it)");
}

TEST(PolicyTest, ChecksTheAffordancesAPolicyNamesAgainstTheTd) {
  const auto td = lamp();
  EXPECT_TRUE(check_policy_affordances(policy(R"({"rules": [
    {"subject": {"any": true}, "effect": "allow", "operations": ["readproperty", "invokeaction"],
     "affordances": ["status", "toggle"]},
    {"subject": {"any": true}, "effect": "deny", "operations": ["subscribeevent"], "affordances": "*"}
  ]})"),
                                       td)
                  .has_value());
  const auto r = check_policy_affordances(policy(R"({"rules": [
    {"subject": {"any": true}, "effect": "allow", "operations": ["readproperty"], "affordances": ["status"]},
    {"subject": {"any": true}, "effect": "allow", "operations": ["readproperty", "invokeaction"],
     "affordances": ["status", "colour", "overheating"]}
  ]})"),
                                          td, "/policy");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(
      sorted(r.error()),
      (Violations{{"/policy/rules/1/affordances/1",
                   R"(the twin has no property or action "colour" (for the rule's operations))"},
                  {"/policy/rules/1/affordances/2",
                   R"(the twin has no property or action "overheating" (for the rule's operations))"}}));
}

TEST(PolicyTest, SeedsAPolicyFromAPermissionAnswer) {
  const auto answer = policy_from_permission_answer(json::parse(R"({"permissions": [
    {"subject": {"principal": "metaverse-7"}, "operations": ["readproperty", "observeproperty"],
     "affordances": "*"},
    {"id": "operators", "description": "plant operators switch the lamp",
     "subject": {"role": "twin-controller"}, "operations": ["invokeaction"], "affordances": ["toggle"]}
  ]})"));
  ASSERT_TRUE(answer.has_value()) << answer.error().detail << describe(sorted(answer.error()));
  ASSERT_EQ(answer->rules.size(), 2u);
  EXPECT_EQ(answer->rules[0].effect, Effect::allow);
  EXPECT_EQ(answer->rules[1].effect, Effect::allow);
  EXPECT_EQ(answer->rules[1].id, "operators");
  EXPECT_TRUE(decide(*answer, who("metaverse-7"), Operation::observeproperty, "status").allowed);
  EXPECT_FALSE(decide(*answer, who("metaverse-8"), Operation::readproperty, "status").allowed);
  // The seeded policy is an ordinary policy document.
  const auto reread = parse_policy(to_json(*answer));
  ASSERT_TRUE(reread.has_value());
  EXPECT_EQ(json::value(to_json(*reread)), json::value(to_json(*answer)));

  const auto bad = policy_from_permission_answer(json::parse(R"({"permissions": [
    {"subject": {"any": true}, "effect": "deny", "operations": ["writeproperty"], "affordances": "*"},
    {"subject": {"any": true}, "operations": ["jump"], "affordances": "*"}
  ], "rules": []})"),
                                                 "/answer");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Errc::validation_failed);
  const auto v = sorted(bad.error());
  ASSERT_EQ(v.size(), 3u) << describe(v);
  EXPECT_EQ(v[0].first, "/answer/permissions/0/effect");
  EXPECT_TRUE(contains(v[0].second, "always allows"));
  EXPECT_EQ(v[1].first, "/answer/permissions/1/operations/0");
  EXPECT_EQ(v[2].first, "/answer/rules");
  EXPECT_EQ(bad.error().detail, "the permission answer has 3 violations");
}

TEST(PolicyTest, NamesOperationsAsWotDoes) {
  for (const auto op : {Operation::readproperty, Operation::writeproperty, Operation::observeproperty,
                        Operation::invokeaction, Operation::subscribeevent}) {
    EXPECT_EQ(parse_operation(to_string(op)), op);
  }
  EXPECT_EQ(to_string(Operation::observeproperty), "observeproperty");
  EXPECT_FALSE(parse_operation("ReadProperty").has_value());
  EXPECT_FALSE(parse_operation("readallproperties").has_value());
}

}  // namespace
}  // namespace twinbridge::core
