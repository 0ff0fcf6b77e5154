// Integration tests of twin state (FGMV-29 8.3.3 DTIA, 8.3.4 DTS) and twin access control (8.3.5 DTAC)
// against the real server: a twin system reports changes of its twins (one twin, or a batch of many), which
// are checked against the TD, ordered by the system's sequence numbers and times, stored durably (or, for
// ephemeral properties, served live only) and served to readers as their twin's policy allows, marked stale
// when a value outlives its maximum age or the twin system is down. Waits poll with deadlines.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <csignal>
#include <memory>
#include <set>
#include <thread>

#include "core/time.hpp"
#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"
#include "support/upstream_server.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

const std::vector<std::pair<std::string, std::string>> kMergePatch = {
    {"Content-Type", "application/merge-patch+json"}};

json::object with_form(json::object affordance) {
  affordance["forms"] = json::array{json::object{{"href", "https://plant.example/p"}}};
  return affordance;
}

// A TD whose properties exercise the state's checks: a bounded number, a string enum, an object with a
// required member, a readOnly and a writeOnly property, an ephemeral property, one with a maximum age of one
// second and an ephemeral one with that maximum age; and a pose.
json::object machine(const std::string& id) {
  json::object properties{
      {"temperature", with_form({{"type", "number"}, {"minimum", -40}, {"maximum", 125}})},
      {"mode", with_form({{"type", "string"}, {"enum", json::array{"auto", "manual", "off"}}})},
      {"config", with_form({{"type", "object"},
                            {"properties", json::object{{"setpoint", json::object{{"type", "number"}}},
                                                        {"label", json::object{{"type", "string"}}}}},
                            {"required", json::array{"setpoint"}}})},
      {"serial", with_form({{"type", "string"}, {"readOnly", true}})},
      {"secret", with_form({{"type", "string"}, {"writeOnly", true}})},
      {"vibration", with_form({{"type", "number"}, {"twinbridge:ephemeral", true}})},
      {"reading", with_form({{"type", "number"}, {"twinbridge:maxAge", 1}})},
      {"flicker", with_form({{"type", "number"}, {"twinbridge:ephemeral", true}, {"twinbridge:maxAge", 1}})},
  };
  return {{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
          {"id", id},
          {"title", "Machine " + id},
          {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
          {"security", "nosec_sc"},
          {"properties", std::move(properties)},
          {"twinbridge:pose", {{"position", json::array{1, 2, 3}}}}};
}

std::string principal_on(std::uint16_t port, const std::string& id, const std::string& kind,
                         const std::string& roles = "") {
  auto r = call(port, "POST", "/v1/principals", kAdmin,
                R"({"id":")" + id + R"(","kind":")" + kind + R"(","name":")" + id + "\"" +
                    (roles.empty() ? "" : R"(,"roles":)" + roles) + "}");
  EXPECT_EQ(r.status, 201) << r.body;
  return std::string(r.json().at("api_key").at("token").as_string());
}

// Registers twin system `id` (owned by the caller) with `twins`; `health_url` makes the monitor probe it
// every 50 ms and call it down at the first failure.
void register_system(std::uint16_t port, const std::string& token, const std::string& id, json::array twins,
                     const std::string& health_url = "") {
  json::object endpoints{{"base_url", "https://plant.example"}};
  json::object doc{{"id", id}, {"type", "factory"}, {"name", "Plant " + id}, {"twins", std::move(twins)}};
  if (!health_url.empty()) {
    endpoints["health_url"] = health_url;
    doc["monitoring"] = {{"interval_s", 0.05}, {"timeout_s", 1}, {"failure_threshold", 1}};
  }
  doc["endpoints"] = std::move(endpoints);
  auto r = call(port, "POST", "/v1/twin-systems", token, json::serialize(doc));
  ASSERT_EQ(r.status, 201) << r.body;
}

HttpResponse patch_state(std::uint16_t port, const std::string& token, const std::string& twin,
                         const std::string& body) {
  return call(port, "PATCH", "/v1/twins/" + twin + "/state", token, body, kMergePatch);
}

json::object state_of(std::uint16_t port, const std::string& token, const std::string& twin) {
  auto r = call(port, "GET", "/v1/twins/" + twin + "/state", token);
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200) return {};
  return r.json().as_object();
}

std::set<std::string> pointers(const json::value& problem) {
  std::set<std::string> out;
  if (const auto* errors = problem.as_object().if_contains("errors")) {
    for (const auto& e : errors->as_array()) out.insert(std::string(e.at("pointer").as_string()));
  }
  return out;
}

double number(const json::value& v) {
  return v.to_number<double>();
}

std::vector<double> numbers(const json::value& v) {
  std::vector<double> out;
  for (const auto& n : v.as_array()) out.push_back(n.to_number<double>());
  return out;
}

// The instant an RFC 3339 member names (the server writes microseconds).
std::optional<core::Timestamp> instant(const json::value& v) {
  return v.is_string() ? core::parse_rfc3339(v.get_string()) : std::nullopt;
}

class StateTest : public SharedServerTest {
 protected:
  // The monitor may probe every 50 ms, so that a twin system goes down and comes back quickly.
  static void SetUpTestSuite() { start_server({"--monitor-min-interval-ms", "50"}); }

  // A twin system principal `owner` holding system `system` with one twin per id of `twins`; returns its key.
  static std::string plant(const std::string& owner, const std::string& system,
                           const std::vector<std::string>& twins, const std::string& health_url = "") {
    const auto token = principal(owner, "twin-system");
    json::array tds;
    for (const auto& id : twins) tds.push_back(machine(id));
    register_system(port(), token, system, std::move(tds), health_url);
    return token;
  }

  static std::optional<json::object> wait_for_state(const std::string& twin,
                                                    const std::function<bool(const json::object&)>& ready,
                                                    std::chrono::milliseconds timeout = 15s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json::object last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = state_of(port(), kAdmin, twin);
      if (ready(last)) return last;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "the state of " << twin
                  << " did not become as expected; last: " << json::serialize(last);
    return std::nullopt;
  }
};

TEST_F(StateTest, AReportIsAppliedVersionedAndServed) {
  const auto twin = "urn:dev:st:served";
  const auto token = plant("st-served-owner", "st-served", {twin});
  const auto reader = principal("st-served-reader", "metaverse-system");

  // Registered, nothing reported: no values are invented; the pose is the TD's.
  auto initial = state_of(port(), reader, twin);
  EXPECT_EQ(initial.at("version"), 1);
  EXPECT_TRUE(initial.at("properties").as_object().empty());
  EXPECT_EQ(initial.at("channel"), "registration");
  EXPECT_EQ(numbers(initial.at("pose").at("position")), (std::vector<double>{1, 2, 3}));

  auto r = patch_state(port(), token, twin,
                       R"({"properties":{"temperature":21.5,"mode":"auto","serial":"SN-1",)"
                       R"("config":{"setpoint":20,"label":"day"}},"pose":{"position":[4,5,6]}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("ETag"), "\"2\"");
  const auto applied = r.json().as_object();
  EXPECT_EQ(applied.at("version"), 2);
  EXPECT_EQ(applied.at("channel"), "http");
  EXPECT_EQ(number(applied.at("properties").at("temperature")), 21.5);
  EXPECT_EQ(applied.at("properties").at("mode"), "auto");
  EXPECT_EQ(applied.at("properties").at("serial"), "SN-1");  // readOnly: the twin system reports it
  for (const char* name : {"temperature", "mode", "serial", "config"})
    EXPECT_TRUE(applied.at("updated").as_object().contains(name)) << name;
  EXPECT_EQ(numbers(applied.at("pose").at("position")), (std::vector<double>{4, 5, 6}));

  // Readers see the same document.
  auto read = state_of(port(), reader, twin);
  EXPECT_EQ(read.at("version"), 2);
  EXPECT_EQ(read.at("properties"), applied.at("properties"));
  EXPECT_EQ(read.at("pose"), applied.at("pose"));

  // One property: its bare value, with the state's ETag.
  auto temperature =
      call(port(), "GET", std::string("/v1/twins/") + twin + "/properties/temperature", reader);
  ASSERT_EQ(temperature.status, 200) << temperature.body;
  EXPECT_EQ(number(temperature.json()), 21.5);
  EXPECT_EQ(temperature.header("ETag"), "\"2\"");
  EXPECT_FALSE(temperature.header("Twinbridge-Updated").empty());

  // A merge patch merges into an object value, and null removes a value.
  auto merged =
      patch_state(port(), token, twin, R"({"properties":{"config":{"label":"night"},"mode":null}})");
  ASSERT_EQ(merged.status, 200) << merged.body;
  EXPECT_EQ(merged.json().at("version"), 3);
  EXPECT_EQ(number(merged.json().at("properties").at("config").at("setpoint")), 20);
  EXPECT_EQ(merged.json().at("properties").at("config").at("label"), "night");
  EXPECT_FALSE(merged.json().at("properties").as_object().contains("mode"));
  EXPECT_EQ(call(port(), "GET", std::string("/v1/twins/") + twin + "/properties/mode", reader).status, 404);
  // A property the TD does not declare is not there for anyone (not forbidden); a writeOnly one has no
  // readable value.
  for (const auto& who : {reader, kAdmin}) {
    auto colour = call(port(), "GET", std::string("/v1/twins/") + twin + "/properties/colour", who);
    EXPECT_EQ(colour.status, 404) << colour.body;
  }
  EXPECT_EQ(call(port(), "GET", std::string("/v1/twins/") + twin + "/properties/secret", reader).status, 403);
  EXPECT_EQ(
      call(port(), "GET", std::string("/v1/twins/") + twin + "/properties/config", reader).header("ETag"),
      "\"3\"");

  // A state change is a merge patch: another media type is refused.
  EXPECT_EQ(call(port(), "PATCH", std::string("/v1/twins/") + twin + "/state", token,
                 R"({"properties":{"temperature":1}})")
                .status,
            415);
  EXPECT_EQ(patch_state(port(), token, "urn:dev:st:nothing", R"({"properties":{}})").status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/twins/urn:dev:st:nothing/state", reader).status, 404);
}

TEST_F(StateTest, BadReportsChangeNothingAndNameTheBadValue) {
  const auto twin = "urn:dev:st:strict";
  const auto token = plant("st-strict-owner", "st-strict", {twin});
  ASSERT_EQ(patch_state(port(), token, twin,
                        R"({"properties":{"temperature":20,"mode":"auto","config":{"setpoint":18}}})")
                .status,
            200);
  const auto before = state_of(port(), kAdmin, twin);
  ASSERT_EQ(before.at("version"), 2);

  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"properties":{"temperature":"warm"}})", "/properties/temperature"},
      {R"({"properties":{"temperature":126}})", "/properties/temperature"},
      {R"({"properties":{"temperature":-41}})", "/properties/temperature"},
      {R"({"properties":{"mode":"turbo"}})", "/properties/mode"},
      {R"({"properties":{"colour":"red"}})", "/properties/colour"},
      {R"({"properties":{"config":{"setpoint":null}}})", "/properties/config/setpoint"},
      {R"({"properties":{"config":{"setpoint":"high"}}})", "/properties/config/setpoint"},
      {R"({"properties":{"secret":"hunter2"}})", "/properties/secret"},
      {R"({"properties":{"temperature":30},"version":7})", "/version"},
      {R"({"properties":{"temperature":30,"mode":"turbo"}})", "/properties/mode"},
      {R"({"properties":{"temperature":30},"colour":"red"})", "/colour"},
      {R"({"properties":"hot"})", "/properties"},
      {R"({"sourceSeq":"seven","properties":{"temperature":30}})", "/sourceSeq"},
      {R"({"sourceTime":"yesterday","properties":{"temperature":30}})", "/sourceTime"},
  };
  for (const auto& [body, pointer] : cases) {
    auto r = patch_state(port(), token, twin, body);
    ASSERT_EQ(r.status, 422) << body << " -> " << r.body;
    EXPECT_TRUE(pointers(r.json()).contains(pointer)) << body << " -> " << r.body;
  }
  // A required member missing from a new object value.
  const auto fresh = "urn:dev:st:strict-fresh";
  ASSERT_EQ(
      call(port(), "POST", "/v1/twin-systems/st-strict/twins", token, json::serialize(machine(fresh))).status,
      201);
  auto missing = patch_state(port(), token, fresh, R"({"properties":{"config":{"label":"x"}}})");
  ASSERT_EQ(missing.status, 422) << missing.body;
  EXPECT_TRUE(pointers(missing.json()).contains("/properties/config/setpoint")) << missing.body;
  EXPECT_EQ(state_of(port(), kAdmin, fresh).at("version"), 1);

  // Nothing of any refused change was applied.
  const auto after = state_of(port(), kAdmin, twin);
  EXPECT_EQ(after.at("version"), before.at("version"));
  EXPECT_EQ(after.at("properties"), before.at("properties"));
  EXPECT_EQ(after.at("updated"), before.at("updated"));
  EXPECT_FALSE(after.contains("sourceSeq"));
}

TEST_F(StateTest, OlderReportsAreRefusedAndDuplicatesAppliedOnce) {
  const auto by_seq = "urn:dev:st:seq";
  const auto by_time = "urn:dev:st:time";
  const auto token = plant("st-order-owner", "st-order", {by_seq, by_time});

  auto five = patch_state(port(), token, by_seq, R"({"sourceSeq":5,"properties":{"temperature":10}})");
  ASSERT_EQ(five.status, 200) << five.body;
  EXPECT_EQ(five.json().at("sourceSeq"), 5);
  const auto v5 = five.json().at("version").as_int64();

  auto three = patch_state(port(), token, by_seq, R"({"sourceSeq":3,"properties":{"temperature":99}})");
  EXPECT_EQ(three.status, 409) << three.body;
  auto now = state_of(port(), kAdmin, by_seq);
  EXPECT_EQ(number(now.at("properties").at("temperature")), 10);
  EXPECT_EQ(now.at("version"), v5);
  EXPECT_EQ(now.at("sourceSeq"), 5);

  // The same report sent twice (a retry) is applied once.
  auto six = patch_state(port(), token, by_seq, R"({"sourceSeq":6,"properties":{"temperature":12}})");
  ASSERT_EQ(six.status, 200) << six.body;
  EXPECT_EQ(six.json().at("version"), v5 + 1);
  auto again = patch_state(port(), token, by_seq, R"({"sourceSeq":6,"properties":{"temperature":12}})");
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(again.json().at("version"), v5 + 1);
  EXPECT_EQ(state_of(port(), kAdmin, by_seq).at("version"), v5 + 1);

  // Without sequence numbers, the system's times order the reports.
  auto later = patch_state(port(), token, by_time,
                           R"({"sourceTime":"2024-05-01T12:00:10Z","properties":{"temperature":1}})");
  ASSERT_EQ(later.status, 200) << later.body;
  EXPECT_EQ(instant(later.json().at("sourceTime")), core::parse_rfc3339("2024-05-01T12:00:10Z"));
  auto earlier = patch_state(port(), token, by_time,
                             R"({"sourceTime":"2024-05-01T12:00:05Z","properties":{"temperature":2}})");
  EXPECT_EQ(earlier.status, 409) << earlier.body;
  EXPECT_EQ(number(state_of(port(), kAdmin, by_time).at("properties").at("temperature")), 1);
  auto same_time = patch_state(port(), token, by_time,
                               R"({"sourceTime":"2024-05-01T12:00:10Z","properties":{"temperature":3}})");
  EXPECT_EQ(same_time.status, 200) << same_time.body;  // two changes may share a time: the later one wins
  auto newer = patch_state(port(), token, by_time,
                           R"({"sourceTime":"2024-05-01T12:00:20Z","properties":{"temperature":4}})");
  ASSERT_EQ(newer.status, 200) << newer.body;
  const auto final_state = state_of(port(), kAdmin, by_time);
  EXPECT_EQ(number(final_state.at("properties").at("temperature")), 4);
  EXPECT_EQ(instant(final_state.at("sourceTime")), core::parse_rfc3339("2024-05-01T12:00:20Z"));
}

TEST_F(StateTest, ABatchAppliesEachChangeOnItsOwn) {
  const auto a1 = "urn:dev:st:batch-a1";
  const auto a2 = "urn:dev:st:batch-a2";
  const auto b1 = "urn:dev:st:batch-b1";
  const auto token = plant("st-batch-owner", "st-batch-a", {a1, a2});
  register_system(port(), token, "st-batch-b", json::array{machine(b1)});
  const auto url = "/v1/twin-systems/st-batch-a/state";

  const json::array changes{
      json::object{{"twin", a1}, {"patch", {{"properties", {{"temperature", 1}}}}}, {"sourceSeq", 1}},
      json::object{{"twin", a2}, {"patch", {{"properties", {{"mode", "turbo"}}}}}},
      json::object{{"twin", a2}, {"patch", {{"properties", {{"temperature", 2}}}}}},
      json::object{{"twin", b1}, {"patch", {{"properties", {{"temperature", 3}}}}}},
      json::object{{"twin", "urn:dev:st:nowhere"}, {"patch", json::object{}}},
      json::object{{"twin", a1}, {"patch", {{"properties", {{"colour", 1}}}}}},
      json::object{{"twin", a1}},
      json::object{{"twin", a1}, {"patch", {{"properties", {{"mode", "manual"}}}}}, {"sourceSeq", 2}},
  };
  auto r = call(port(), "POST", url, token, json::serialize(json::object{{"changes", changes}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto body = r.json();
  const auto& results = body.at("results").as_array();
  ASSERT_EQ(results.size(), changes.size());
  const std::vector<int> statuses{200, 422, 200, 404, 404, 422, 422, 200};
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(results[i].at("status"), statuses[i]) << i << ": " << json::serialize(results[i]);
  }
  EXPECT_EQ(body.at("accepted"), 3);
  EXPECT_EQ(body.at("failed"), 5);
  EXPECT_EQ(results[0].at("twin"), a1);
  EXPECT_EQ(pointers(results[1].at("problem")), (std::set<std::string>{"/changes/1/patch/properties/mode"}));
  EXPECT_EQ(pointers(results[5].at("problem")),
            (std::set<std::string>{"/changes/5/patch/properties/colour"}));
  EXPECT_EQ(pointers(results[6].at("problem")), (std::set<std::string>{"/changes/6/patch"}));

  // The good changes are applied, in order; the bad ones are not.
  auto s1 = state_of(port(), kAdmin, a1);
  EXPECT_EQ(number(s1.at("properties").at("temperature")), 1);
  EXPECT_EQ(s1.at("properties").at("mode"), "manual");
  EXPECT_EQ(s1.at("sourceSeq"), 2);
  EXPECT_EQ(s1.at("version"), 3);
  EXPECT_EQ(results[7].at("version"), 3);
  auto s2 = state_of(port(), kAdmin, a2);
  EXPECT_EQ(number(s2.at("properties").at("temperature")), 2);
  EXPECT_FALSE(s2.at("properties").as_object().contains("mode"));
  EXPECT_EQ(state_of(port(), kAdmin, b1).at("version"), 1);  // the other system's twin is untouched

  // With one valid change among malformed ones, its pointers still name its place in the batch.
  auto lone =
      call(port(), "POST", url, token,
           json::serialize(json::object{
               {"changes",
                json::array{json::object{{"patch", json::object{}}},
                            json::object{{"twin", a2}, {"patch", {{"properties", {{"mode", "x"}}}}}}}}}));
  ASSERT_EQ(lone.status, 200) << lone.body;
  EXPECT_EQ(lone.json().at("results").at(0).at("status"), 422);
  EXPECT_EQ(pointers(lone.json().at("results").at(0).at("problem")),
            (std::set<std::string>{"/changes/0/twin"}));
  EXPECT_EQ(pointers(lone.json().at("results").at(1).at("problem")),
            (std::set<std::string>{"/changes/1/patch/properties/mode"}));

  // Older changes in a batch are refused like single ones.
  auto older =
      call(port(), "POST", url, token,
           json::serialize(json::object{
               {"changes",
                json::array{json::object{
                    {"twin", a1}, {"patch", {{"properties", {{"temperature", 50}}}}}, {"sourceSeq", 1}}}}}));
  ASSERT_EQ(older.status, 200) << older.body;
  EXPECT_EQ(older.json().at("results").at(0).at("status"), 409);

  // Another principal's batch for these twins is refused item by item.
  const auto stranger = principal("st-batch-stranger", "twin-system");
  auto foreign = call(
      port(), "POST", url, stranger,
      json::serialize(json::object{
          {"changes",
           json::array{json::object{{"twin", a2}, {"patch", {{"properties", {{"temperature", 7}}}}}}}}}));
  ASSERT_EQ(foreign.status, 200) << foreign.body;
  EXPECT_EQ(foreign.json().at("results").at(0).at("status"), 403);
  EXPECT_EQ(number(state_of(port(), kAdmin, a2).at("properties").at("temperature")), 2);

  // More than 10,000 changes are refused as a whole.
  json::array many;
  for (int i = 0; i < 10'001; ++i)
    many.push_back(json::object{{"twin", a2}, {"patch", {{"properties", {{"temperature", 100}}}}}});
  auto too_many =
      call(port(), "POST", url, token, json::serialize(json::object{{"changes", std::move(many)}}));
  ASSERT_EQ(too_many.status, 422) << too_many.body.substr(0, 500);
  EXPECT_EQ(pointers(too_many.json()), (std::set<std::string>{"/changes"}));
  EXPECT_EQ(number(state_of(port(), kAdmin, a2).at("properties").at("temperature")), 2);
  EXPECT_EQ(call(port(), "POST", "/v1/twin-systems/st-batch-none/state", token,
                 json::serialize(json::object{{"changes", changes}}))
                .status,
            404);
}

TEST_F(StateTest, ABatchOfManyRunsAppliesEveryChangeInItsOrder) {
  // More changes than one run of TwinService (kLockRun): each run's writes are queued on their own, and a
  // twin's changes in several runs are still applied in the order of the batch.
  const auto r1 = "urn:dev:st:runs-1";
  const auto r2 = "urn:dev:st:runs-2";
  const auto token = plant("st-runs-owner", "st-runs", {r1, r2});
  const std::int64_t before[2] = {state_of(port(), kAdmin, r1).at("version").as_int64(),
                                  state_of(port(), kAdmin, r2).at("version").as_int64()};
  json::array changes;
  std::vector<int> statuses;
  int valid[2] = {0, 0};
  double last[2] = {0, 0};
  for (int i = 0; i < 200; ++i) {
    const int t = i % 3 == 0 ? 1 : 0;  // one change in three for r2
    const bool bad = i % 17 == 5;      // out of range: refused, the rest go on
    const double value = bad ? 1000 : i % 100;
    changes.push_back(
        json::object{{"twin", t == 0 ? r1 : r2}, {"patch", {{"properties", {{"temperature", value}}}}}});
    statuses.push_back(bad ? 422 : 200);
    if (!bad) {
      ++valid[t];
      last[t] = value;
    }
  }
  auto r = call(port(), "POST", "/v1/twin-systems/st-runs/state", token,
                json::serialize(json::object{{"changes", changes}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto body = r.json();
  const auto& results = body.at("results").as_array();
  ASSERT_EQ(results.size(), changes.size());
  std::int64_t previous[2] = {before[0], before[1]};
  for (std::size_t i = 0; i < results.size(); ++i) {
    ASSERT_EQ(results[i].at("status"), statuses[i]) << i << ": " << json::serialize(results[i]);
    if (statuses[i] != 200) continue;
    const int t = i % 3 == 0 ? 1 : 0;
    const auto version = results[i].at("version").as_int64();
    EXPECT_EQ(version, previous[t] + 1) << i;  // one version each, in the order of the batch
    previous[t] = version;
  }
  const auto s1 = state_of(port(), kAdmin, r1);
  const auto s2 = state_of(port(), kAdmin, r2);
  EXPECT_EQ(number(s1.at("properties").at("temperature")), last[0]);
  EXPECT_EQ(number(s2.at("properties").at("temperature")), last[1]);
  EXPECT_EQ(s1.at("version"), before[0] + valid[0]);
  EXPECT_EQ(s2.at("version"), before[1] + valid[1]);
}

TEST_F(StateTest, ABatchChangeWithAMemberItDoesNotKnowIsRefused) {
  const auto twin = "urn:dev:st:batch-typo";
  const auto token = plant("st-typo-owner", "st-typo", {twin});
  // "sourceSequence" for "sourceSeq": a typo must not pass as a change without a sequence number.
  const json::array changes{
      json::object{{"twin", twin}, {"patch", {{"properties", {{"temperature", 1}}}}}, {"sourceSequence", 9}},
      json::object{
          {"twin", twin}, {"patch", {{"properties", {{"temperature", 2}}}}}, {"sourceSeq", 3}, {"extra", 1}},
      json::object{
          {"twin", twin}, {"patch", {{"properties", {{"temperature", 3}}}}}, {"a", 1}, {"b", 2}, {"c", 3}},
  };
  auto r = call(port(), "POST", "/v1/twin-systems/st-typo/state", token,
                json::serialize(json::object{{"changes", changes}}));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto body = r.json();
  const auto& results = body.at("results").as_array();
  ASSERT_EQ(results.size(), 3u);
  for (const auto& item : results) ASSERT_EQ(item.at("status"), 422) << json::serialize(item);
  EXPECT_EQ(pointers(results[0].at("problem")), (std::set<std::string>{"/changes/0/sourceSequence"}));
  EXPECT_EQ(pointers(results[1].at("problem")), (std::set<std::string>{"/changes/1/extra"}));
  EXPECT_EQ(pointers(results[2].at("problem")),
            (std::set<std::string>{"/changes/2/a", "/changes/2/b", "/changes/2/c"}));
  EXPECT_EQ(body.at("accepted"), 0);
  auto state = state_of(port(), kAdmin, twin);
  EXPECT_EQ(state.at("version"), 1);
  EXPECT_TRUE(state.at("properties").as_object().empty());
}

TEST_F(StateTest, AnAcknowledgedReportSurvivesSigkill) {
  TempDir data;
  const std::map<std::string, std::string> env{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}};
  const auto twin = "urn:dev:st:durable";
  json::value acknowledged;
  {
    ServerProcess first(data.path(), {}, env);
    const auto token = principal_on(first.port(), "st-durable-owner", "twin-system");
    register_system(first.port(), token, "st-durable", json::array{machine(twin)});
    ASSERT_EQ(patch_state(first.port(), token, twin, R"({"properties":{"temperature":5}})").status, 200);
    auto r = patch_state(first.port(), token, twin,
                         R"({"sourceSeq":41,"properties":{"temperature":17.25,"mode":"manual"},)"
                         R"("pose":{"position":[7,8,9]}})");
    ASSERT_EQ(r.status, 200) << r.body;  // answered once the change is durable
    acknowledged = r.json();
    EXPECT_EQ(first.stop(SIGKILL), 128 + SIGKILL);
  }
  ServerProcess second(data.path(), {}, env);
  auto state = state_of(second.port(), kAdmin, twin);
  EXPECT_EQ(state.at("version"), acknowledged.at("version"));
  EXPECT_EQ(state.at("version"), 3);
  EXPECT_EQ(number(state.at("properties").at("temperature")), 17.25);
  EXPECT_EQ(state.at("properties").at("mode"), "manual");
  EXPECT_EQ(state.at("pose"), acknowledged.at("pose"));
  EXPECT_EQ(state.at("sourceSeq"), 41);
  EXPECT_EQ(state.at("updated"), acknowledged.at("updated"));
  // The ordering goes on from the stored state: an older report is still refused.
  auto token = call(second.port(), "POST", "/v1/principals/st-durable-owner/api-keys", kAdmin, "{}");
  ASSERT_EQ(token.status, 201) << token.body;
  const std::string key(token.json().at("token").as_string());
  EXPECT_EQ(
      patch_state(second.port(), key, twin, R"({"sourceSeq":40,"properties":{"temperature":1}})").status,
      409);
  auto next = patch_state(second.port(), key, twin, R"({"sourceSeq":42,"properties":{"temperature":2}})");
  ASSERT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(next.json().at("version"), 4);
}

TEST_F(StateTest, ConcurrentReportsOfOneTwinAreAllApplied) {
  const auto twin = "urn:dev:st:busy";
  constexpr int kThreads = 6;
  constexpr int kEach = 15;
  // One property per thread.
  auto td = machine(twin);
  auto& properties = td["properties"].as_object();
  for (int t = 0; t < kThreads; ++t) properties["p" + std::to_string(t)] = with_form({{"type", "integer"}});
  const auto token = principal("st-busy-owner", "twin-system");
  register_system(port(), token, "st-busy", json::array{td});
  const auto initial = state_of(port(), kAdmin, twin).at("version").as_int64();

  std::atomic<int> applied{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 1; i <= kEach; ++i) {
        auto r = patch_state(port(), token, twin,
                             R"({"properties":{"p)" + std::to_string(t) + R"(":)" + std::to_string(i) + "}}");
        if (r.status == 200) ++applied;
        EXPECT_EQ(r.status, 200) << r.body;
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto state = state_of(port(), kAdmin, twin);
  EXPECT_EQ(applied, kThreads * kEach);
  EXPECT_EQ(state.at("version").as_int64(), initial + applied);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(state.at("properties").at("p" + std::to_string(t)), kEach) << "p" << t;
  }
}

TEST_F(StateTest, EphemeralValuesAreServedLiveButNeverStored) {
  TempDir data;
  const std::map<std::string, std::string> env{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}};
  const auto twin = "urn:dev:st:live";
  {
    ServerProcess first(data.path(), {}, env);
    const auto token = principal_on(first.port(), "st-live-owner", "twin-system");
    register_system(first.port(), token, "st-live", json::array{machine(twin)});
    auto r = patch_state(first.port(), token, twin, R"({"properties":{"vibration":0.25,"temperature":30}})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(number(r.json().at("properties").at("vibration")), 0.25);
    // A report of the ephemeral value alone is served at once.
    auto live = patch_state(first.port(), token, twin, R"({"properties":{"vibration":0.5}})");
    ASSERT_EQ(live.status, 200) << live.body;
    auto state = state_of(first.port(), kAdmin, twin);
    EXPECT_EQ(number(state.at("properties").at("vibration")), 0.5);
    EXPECT_TRUE(state.at("updated").as_object().contains("vibration"));
    EXPECT_EQ(number(state.at("properties").at("temperature")), 30);
    auto one = call(first.port(), "GET", std::string("/v1/twins/") + twin + "/properties/vibration", kAdmin);
    ASSERT_EQ(one.status, 200) << one.body;
    EXPECT_EQ(number(one.json()), 0.5);
    EXPECT_EQ(first.stop(SIGTERM), 0);
  }
  ServerProcess second(data.path(), {}, env);
  auto state = state_of(second.port(), kAdmin, twin);
  EXPECT_EQ(number(state.at("properties").at("temperature")), 30);
  EXPECT_FALSE(state.at("properties").as_object().contains("vibration")) << json::serialize(state);
  EXPECT_FALSE(state.at("updated").as_object().contains("vibration")) << json::serialize(state);
  EXPECT_EQ(
      call(second.port(), "GET", std::string("/v1/twins/") + twin + "/properties/vibration", kAdmin).status,
      404);
}

TEST_F(StateTest, EphemeralReportsAreOrderedLikeDurableOnes) {
  const auto by_seq = "urn:dev:st:live-seq";
  const auto by_time = "urn:dev:st:live-time";
  const auto token = plant("st-live-order-owner", "st-live-order", {by_seq, by_time});
  auto vibration = [&](const std::string& twin) {
    return number(state_of(port(), kAdmin, twin).at("properties").at("vibration"));
  };
  ASSERT_EQ(patch_state(port(), token, by_seq, R"({"sourceSeq":5,"properties":{"vibration":0.5}})").status,
            200);
  // A late reading must not replace a newer one.
  EXPECT_EQ(patch_state(port(), token, by_seq, R"({"sourceSeq":3,"properties":{"vibration":0.3}})").status,
            409);
  EXPECT_EQ(vibration(by_seq), 0.5);
  // A retry is applied once.
  EXPECT_EQ(patch_state(port(), token, by_seq, R"({"sourceSeq":5,"properties":{"vibration":0.9}})").status,
            200);
  EXPECT_EQ(vibration(by_seq), 0.5);
  ASSERT_EQ(patch_state(port(), token, by_seq, R"({"sourceSeq":6,"properties":{"vibration":0.6}})").status,
            200);
  EXPECT_EQ(vibration(by_seq), 0.6);
  EXPECT_EQ(state_of(port(), kAdmin, by_seq).at("version"), 1);  // nothing was stored

  ASSERT_EQ(patch_state(port(), token, by_time,
                        R"({"sourceTime":"2024-05-01T12:00:10Z","properties":{"vibration":0.1}})")
                .status,
            200);
  EXPECT_EQ(patch_state(port(), token, by_time,
                        R"({"sourceTime":"2024-05-01T12:00:05Z","properties":{"vibration":0.05}})")
                .status,
            409);
  EXPECT_EQ(vibration(by_time), 0.1);
}

TEST_F(StateTest, ACachedCopyIsNotRevalidatedOverNewLiveValuesOrStaleness) {
  const auto twin = "urn:dev:st:cached";
  const std::string base = std::string("/v1/twins/") + twin;
  const auto token = plant("st-cached-owner", "st-cached", {twin});
  const auto reader = principal("st-cached-reader", "metaverse-system");
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"temperature":20,"vibration":0.1}})").status,
            200);
  auto first = call(port(), "GET", base + "/state", reader);
  ASSERT_EQ(first.status, 200);
  const auto etag = first.header("ETag");
  ASSERT_FALSE(etag.empty());
  // Nothing changed: the cached copy is current.
  EXPECT_EQ(call(port(), "GET", base + "/state", reader, "", {{"If-None-Match", etag}}).status, 304);
  auto property = call(port(), "GET", base + "/properties/vibration", reader);
  ASSERT_EQ(property.status, 200);
  EXPECT_EQ(call(port(), "GET", base + "/properties/vibration", reader, "",
                 {{"If-None-Match", property.header("ETag")}})
                .status,
            304);

  // A new live value makes no new version, but the cached copies are out of date.
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"vibration":0.2}})").status, 200);
  auto revalidated = call(port(), "GET", base + "/state", reader, "", {{"If-None-Match", etag}});
  ASSERT_EQ(revalidated.status, 200);
  EXPECT_EQ(number(revalidated.json().at("properties").at("vibration")), 0.2);
  EXPECT_NE(revalidated.header("ETag"), etag);
  auto one = call(port(), "GET", base + "/properties/vibration", reader, "",
                  {{"If-None-Match", property.header("ETag")}});
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(number(one.json()), 0.2);

  // Neither is a copy from before its values went stale.
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"reading":1}})").status, 200);
  auto fresh = call(port(), "GET", base + "/state", reader);
  ASSERT_EQ(fresh.status, 200);
  if (!fresh.json().as_object().contains("stale")) {  // else this machine was slower than the maximum age
    ASSERT_TRUE(wait_for_state(twin, [](const json::object& s) { return s.contains("stale"); }));
    auto now_stale =
        call(port(), "GET", base + "/state", reader, "", {{"If-None-Match", fresh.header("ETag")}});
    ASSERT_EQ(now_stale.status, 200);
    EXPECT_TRUE(now_stale.json().as_object().contains("stale"));
  }
}

TEST_F(StateTest, LiveValuesFollowTheTdWhenItChanges) {
  const auto twin = "urn:dev:st:retyped";
  const auto token = plant("st-retyped-owner", "st-retyped", {twin});
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"vibration":0.5,"flicker":0.1}})").status,
            200);
  // The TD no longer calls vibration ephemeral, and drops flicker: their live values go with it.
  auto td = machine(twin);
  td["properties"].as_object()["vibration"].as_object().erase("twinbridge:ephemeral");
  td["properties"].as_object().erase("flicker");
  auto put = call(port(), "PUT", std::string("/v1/twin-systems/st-retyped/twins/") + twin, token,
                  json::serialize(td), kTd);
  ASSERT_EQ(put.status, 200) << put.body;
  auto after = state_of(port(), kAdmin, twin);
  EXPECT_FALSE(after.at("properties").as_object().contains("vibration")) << json::serialize(after);
  EXPECT_FALSE(after.at("updated").as_object().contains("flicker")) << json::serialize(after);
  // A value reported now is stored, and it is the one served.
  auto r = patch_state(port(), token, twin, R"({"properties":{"vibration":0.7}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(number(r.json().at("properties").at("vibration")), 0.7);
  EXPECT_EQ(number(state_of(port(), kAdmin, twin).at("properties").at("vibration")), 0.7);
}

TEST_F(StateTest, AnEphemeralPoseIsServedLiveAndRemovedByNull) {
  const auto twin = "urn:dev:st:moving";
  auto td = machine(twin);
  td["twinbridge:poseEphemeral"] = true;
  const auto token = principal("st-moving-owner", "twin-system");
  register_system(port(), token, "st-moving", json::array{td});
  auto moved = patch_state(port(), token, twin, R"({"pose":{"position":[9,9,9]}})");
  ASSERT_EQ(moved.status, 200) << moved.body;
  auto live = state_of(port(), kAdmin, twin);
  EXPECT_EQ(numbers(live.at("pose").at("position")), (std::vector<double>{9, 9, 9}));
  EXPECT_EQ(live.at("version"), 1);  // nothing stored
  auto removed = patch_state(port(), token, twin, R"({"pose":null})");
  ASSERT_EQ(removed.status, 200) << removed.body;
  EXPECT_FALSE(removed.json().as_object().contains("pose")) << removed.body;
  EXPECT_FALSE(state_of(port(), kAdmin, twin).contains("pose"));
}

TEST_F(StateTest, APartialReportOfALiveValueMergesIntoTheLiveValue) {
  const auto twin = "urn:dev:st:turning";
  auto td = machine(twin);
  td["twinbridge:poseEphemeral"] = true;
  td["properties"].as_object()["config"].as_object()["twinbridge:ephemeral"] = true;
  const auto token = principal("st-turning-owner", "twin-system");
  register_system(port(), token, "st-turning", json::array{td});
  ASSERT_EQ(patch_state(port(), token, twin,
                        R"({"pose":{"position":[9,9,9]},"properties":{"config":{"setpoint":5,"label":"a"}}})")
                .status,
            200);
  // Only the orientation turns; only the label changes: the rest is the live value's, not the TD's.
  auto r = patch_state(port(), token, twin,
                       R"({"pose":{"orientation":[0,0,1,0]},"properties":{"config":{"label":"b"}}})");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto state = state_of(port(), kAdmin, twin);
  EXPECT_EQ(numbers(state.at("pose").at("position")), (std::vector<double>{9, 9, 9}));
  EXPECT_EQ(numbers(state.at("pose").at("orientation")), (std::vector<double>{0, 0, 1, 0}));
  EXPECT_EQ(number(state.at("properties").at("config").at("setpoint")), 5);
  EXPECT_EQ(state.at("properties").at("config").at("label"), "b");
}

TEST_F(StateTest, AValueOlderThanItsMaxAgeIsServedAsStale) {
  const auto twin = "urn:dev:st:aging";
  const auto token = plant("st-aging-owner", "st-aging", {twin});
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"reading":5,"temperature":20}})").status, 200);
  auto stale = wait_for_state(twin, [](const json::object& s) { return s.contains("stale"); });
  ASSERT_TRUE(stale);
  const auto& mark = stale->at("stale");
  EXPECT_EQ(mark.at("properties"), (json::array{"reading"}));  // temperature has no maximum age
  EXPECT_NE(mark.at("reason").as_string().find("twinbridge:maxAge"), std::string::npos) << mark;
  EXPECT_EQ(instant(mark.at("since")), *instant(stale->at("updated").at("reading")) + 1s);
  // The value is still served: stale, never invented or dropped.
  EXPECT_EQ(number(stale->at("properties").at("reading")), 5);
  auto one = call(port(), "GET", std::string("/v1/twins/") + twin + "/properties/reading", kAdmin);
  ASSERT_EQ(one.status, 200);
  EXPECT_EQ(number(one.json()), 5);
  EXPECT_FALSE(one.header("Twinbridge-Stale").empty());
}

TEST_F(StateTest, ALiveValueOlderThanItsMaxAgeIsServedAsStaleToo) {
  const auto twin = "urn:dev:st:aging-live";
  const auto token = plant("st-aging-live-owner", "st-aging-live", {twin});
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"flicker":0.5,"vibration":0.1}})").status,
            200);
  auto stale = wait_for_state(twin, [](const json::object& s) { return s.contains("stale"); });
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->at("stale").at("properties"), (json::array{"flicker"}));  // vibration has no maximum age
  EXPECT_EQ(instant(stale->at("stale").at("since")), *instant(stale->at("updated").at("flicker")) + 1s);
  EXPECT_EQ(number(stale->at("properties").at("flicker")), 0.5);
}

TEST_F(StateTest, ATwinOfASystemThatIsDownIsStaleUntilItRecovers) {
  UpstreamServer health([](const UpstreamRequest&) {
    return UpstreamReply{200, {{"Content-Type", "application/health+json"}}, R"({"status":"pass"})"};
  });
  const auto twin = "urn:dev:st:watched";
  const auto token = plant("st-watched-owner", "st-watched", {twin}, health.url("/health"));
  ASSERT_EQ(patch_state(port(), token, twin, R"({"properties":{"temperature":20}})").status, 200);
  auto system_is = [&](const std::string& state) {
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = call(port(), "GET", "/v1/twin-systems/st-watched/status", kAdmin);
      if (r.status == 200 && r.json().at("state") == state.c_str()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  };
  ASSERT_TRUE(system_is("up"));
  EXPECT_FALSE(state_of(port(), kAdmin, twin).contains("stale"));

  health.stop();  // connections are refused from now on
  auto down = wait_for_state(twin, [](const json::object& s) { return s.contains("stale"); });
  ASSERT_TRUE(down);
  const std::string reason(down->at("stale").at("reason").as_string());
  EXPECT_TRUE(reason.starts_with("twin system 'st-watched' is down since ")) << reason;
  EXPECT_NE(reason.find("health probe"), std::string::npos) << reason;
  EXPECT_TRUE(down->at("stale").at("properties").as_array().empty());  // all of them
  EXPECT_EQ(number(down->at("properties").at("temperature")), 20);     // the last known value is kept

  health.start();  // same port
  EXPECT_TRUE(wait_for_state(twin, [](const json::object& s) { return !s.contains("stale"); }));
}

TEST_F(StateTest, ReadsFollowTheTwinsPolicy) {
  const auto twin = "urn:dev:st:guarded";
  const std::string base = std::string("/v1/twins/") + twin;
  const auto holder = plant("st-guard-owner", "st-guard", {twin});
  const auto viewer = principal("st-guard-viewer", "metaverse-system");
  const auto colleague = principal("st-guard-colleague", "metaverse-system");
  const auto stranger = principal("st-guard-stranger", "twin-system");
  const auto blind = principal_on(port(), "st-guard-blind", "metaverse-system", R"(["registry-reader"])");
  ASSERT_EQ(patch_state(port(), holder, twin, R"({"properties":{"temperature":20,"mode":"auto"}})").status,
            200);

  // No policy: principals with twins:read read everything; others nothing.
  auto open = call(port(), "GET", base + "/state", viewer);
  ASSERT_EQ(open.status, 200);
  EXPECT_TRUE(open.json().at("properties").as_object().contains("temperature"));
  EXPECT_EQ(call(port(), "GET", base + "/state", blind).status, 403);
  EXPECT_EQ(call(port(), "GET", base + "/properties/temperature", blind).status, 403);
  EXPECT_EQ(call(port(), "GET", base + "/policy", viewer).status, 404);

  const std::string policy = R"({"rules":[
      {"id":"hide-temperature","subject":{"principal":"st-guard-viewer"},"effect":"deny",
       "operations":["readproperty"],"affordances":["temperature"]},
      {"id":"readers","subject":{"role":"twin-reader"},"effect":"allow",
       "operations":["readproperty","observeproperty"],"affordances":"*"}]})";
  // Only the holder (or an operator) sets it.
  EXPECT_EQ(call(port(), "PUT", base + "/policy", stranger, policy).status, 403);
  EXPECT_EQ(call(port(), "PUT", base + "/policy", viewer, policy).status, 403);
  EXPECT_EQ(call(port(), "GET", base + "/policy", viewer).status, 404);
  auto put = call(port(), "PUT", base + "/policy", holder, policy);
  ASSERT_EQ(put.status, 201) << put.body;
  EXPECT_EQ(put.header("ETag"), "\"1\"");

  // The denied property is left out of the state, and refused on its own.
  auto guarded = state_of(port(), viewer, twin);
  EXPECT_FALSE(guarded.at("properties").as_object().contains("temperature")) << json::serialize(guarded);
  // A copy cached before the policy is not revalidated: it holds what the viewer may no longer read.
  auto cached = call(port(), "GET", base + "/state", viewer, "", {{"If-None-Match", open.header("ETag")}});
  ASSERT_EQ(cached.status, 200);
  EXPECT_FALSE(cached.json().at("properties").as_object().contains("temperature"));
  EXPECT_FALSE(guarded.at("updated").as_object().contains("temperature"));
  EXPECT_EQ(guarded.at("properties").at("mode"), "auto");
  EXPECT_EQ(call(port(), "GET", base + "/properties/temperature", viewer).status, 403);
  EXPECT_EQ(call(port(), "GET", base + "/properties/mode", viewer).status, 200);
  auto states = call(port(), "GET", std::string("/v1/twin-states?id=") + twin, viewer);
  ASSERT_EQ(states.status, 200) << states.body;
  EXPECT_FALSE(states.json().at("items").at(0).at("properties").as_object().contains("temperature"));
  // Others are not affected.
  EXPECT_TRUE(state_of(port(), colleague, twin).at("properties").as_object().contains("temperature"));
  EXPECT_TRUE(state_of(port(), kAdmin, twin).at("properties").as_object().contains("temperature"));

  // The access check names the deciding rule, for oneself and, for an operator, for anyone.
  auto mine = call(port(), "POST", "/v1/access/check", viewer,
                   json::serialize(json::object{
                       {"operation", "readproperty"}, {"twin", twin}, {"affordance", "temperature"}}));
  ASSERT_EQ(mine.status, 200) << mine.body;
  EXPECT_EQ(mine.json().at("allowed"), false);
  EXPECT_EQ(mine.json().at("rule_id"), "hide-temperature");
  auto theirs = call(port(), "POST", "/v1/access/check", kAdmin,
                     json::serialize(json::object{{"principal", "st-guard-viewer"},
                                                  {"operation", "readproperty"},
                                                  {"twin", twin},
                                                  {"affordance", "mode"}}));
  ASSERT_EQ(theirs.status, 200) << theirs.body;
  EXPECT_EQ(theirs.json().at("allowed"), true);
  EXPECT_EQ(theirs.json().at("rule_id"), "readers");

  // Conditional replacement: a stale ETag changes nothing.
  auto second = call(port(), "PUT", base + "/policy", holder, policy, {{"If-Match", "\"1\""}});
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(second.header("ETag"), "\"2\"");
  const std::string allow_all =
      R"({"rules":[{"subject":{"any":true},"effect":"allow","operations":["readproperty"],"affordances":"*"}]})";
  auto stale = call(port(), "PUT", base + "/policy", holder, allow_all, {{"If-Match", "\"1\""}});
  EXPECT_EQ(stale.status, 412) << stale.body;
  EXPECT_EQ(call(port(), "GET", base + "/properties/temperature", viewer).status, 403);
  EXPECT_EQ(call(port(), "GET", base + "/policy", viewer).header("ETag"), "\"2\"");

  // A policy for another TD (a property this twin lacks) is refused at the name.
  auto misspelt = call(
      port(), "PUT", base + "/policy", holder,
      R"({"rules":[{"subject":{"any":true},"effect":"allow","operations":["readproperty"],"affordances":["mode","colour"]}]})");
  ASSERT_EQ(misspelt.status, 422) << misspelt.body;
  EXPECT_EQ(pointers(misspelt.json()), (std::set<std::string>{"/rules/0/affordances/1"}));
  EXPECT_EQ(call(port(), "GET", base + "/policy", viewer).header("ETag"), "\"2\"");
}

TEST_F(StateTest, DeletingATwinDeletesItsStateAndPolicy) {
  const auto twin = "urn:dev:st:reborn";
  const std::string base = std::string("/v1/twins/") + twin;
  const auto token = plant("st-reborn-owner", "st-reborn", {twin});
  ASSERT_EQ(
      patch_state(port(), token, twin, R"({"sourceSeq":9,"properties":{"temperature":20,"vibration":1}})")
          .status,
      200);
  ASSERT_EQ(
      call(
          port(), "PUT", base + "/policy", token,
          R"({"rules":[{"subject":{"any":true},"effect":"deny","operations":["readproperty"],"affordances":"*"}]})")
          .status,
      201);
  const std::string location = std::string("/v1/twin-systems/st-reborn/twins/") + twin;
  ASSERT_EQ(call(port(), "DELETE", location, token).status, 204);
  EXPECT_EQ(call(port(), "GET", base + "/state", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "GET", base + "/policy", kAdmin).status, 404);

  ASSERT_EQ(
      call(port(), "POST", "/v1/twin-systems/st-reborn/twins", token, json::serialize(machine(twin))).status,
      201);
  auto fresh = state_of(port(), kAdmin, twin);
  EXPECT_EQ(fresh.at("version"), 1);
  EXPECT_TRUE(fresh.at("properties").as_object().empty()) << json::serialize(fresh);
  EXPECT_TRUE(fresh.at("updated").as_object().empty());
  EXPECT_FALSE(fresh.contains("sourceSeq"));
  EXPECT_EQ(call(port(), "GET", base + "/policy", kAdmin).status, 404);
  // A reader with twins:read reads it again (no policy), and the sequence starts over.
  const auto reader = principal("st-reborn-reader", "metaverse-system");
  EXPECT_EQ(call(port(), "GET", base + "/state", reader).status, 200);
  auto first = patch_state(port(), token, twin, R"({"sourceSeq":1,"properties":{"temperature":5}})");
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.json().at("version"), 2);
}

// One ingest worker and at most one batch of a principal waiting for it (ingest.max_queued_per_principal):
// batches beyond are refused at once with 429 and Retry-After, and change nothing.
class IngestQueueTest : public StateTest {
 protected:
  static void SetUpTestSuite() {
    start_server({"--ingest-workers", "1", "--ingest-max-queued-per-principal", "1"});
  }
};

TEST_F(IngestQueueTest, BatchesBeyondThoseWaitingForAWorkerAreRefusedWith429) {
  std::vector<std::string> twins;
  for (int i = 0; i < 50; ++i) twins.push_back("urn:dev:iq:" + std::to_string(i));
  const auto token = plant("iq-owner", "iq", twins);
  const auto before = state_of(port(), kAdmin, twins[0]).at("version").as_int64();
  // Batches of 5,000 changes (more than one run: they go to the worker), each holding it for a while.
  json::array changes;
  for (int k = 0; k < 5'000; ++k) {
    changes.push_back(json::object{{"twin", twins[static_cast<std::size_t>(k) % twins.size()]},
                                   {"patch", {{"properties", {{"temperature", k % 100}}}}}});
  }
  const auto request = serialize(
      Request("POST", "/v1/twin-systems/iq/state", json::serialize(json::object{{"changes", changes}}),
              {{"Authorization", "Bearer " + token}, {"Content-Type", "application/json"}}));
  // Six at once: one runs, one waits, the others are refused (a round on a machine fast enough to finish
  // each batch before the next arrives is tried again).
  int accepted = 0;
  bool refused = false;
  for (int round = 0; round < 5 && !refused; ++round) {
    std::vector<std::unique_ptr<Connection>> connections;
    for (int i = 0; i < 6; ++i) {
      connections.push_back(std::make_unique<Connection>(port(), 120s));
      ASSERT_TRUE(connections.back()->send(request));
    }
    for (auto& c : connections) {
      const auto r = c->read_response();
      ASSERT_TRUE(r);
      ASSERT_TRUE(r->status == 200 || r->status == 429) << r->status << ": " << r->body.substr(0, 300);
      if (r->status == 200) ++accepted;
      if (r->status == 429) {
        refused = true;
        EXPECT_FALSE(r->header("Retry-After").empty()) << r->body;
      }
    }
  }
  EXPECT_TRUE(refused);
  // Each accepted batch gave each twin 100 versions; a refused one none.
  const auto version = state_of(port(), kAdmin, twins[0]).at("version").as_int64();
  EXPECT_EQ(version, before + accepted * 100);
}

}  // namespace
}  // namespace twinbridge::testing
