// Integration tests of selections and twin information acquisition (FGMV-29 8.3.3 DTIA; flow 9.2 steps 6 to
// 12) against the real server and a real HTTP server on loopback acting as the DT system: its TDs' forms
// point at it, it checks the credentials it registered (basic, bearer), answers values and permissions, fails
// and goes down.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <mutex>
#include <set>
#include <thread>

#include "support/http_client.hpp"
#include "support/shared_server.hpp"
#include "support/upstream_server.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

constexpr std::string_view kPassword = "s3cret-pw";
constexpr std::string_view kBasic = "Basic YWxpY2U6czNjcmV0LXB3";  // alice:s3cret-pw
constexpr std::string_view kToken = "t0ken-NEVER-SERVED-42";

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

std::string encoded(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out += "%" + std::string(1, "0123456789ABCDEF"[u >> 4]) + std::string(1, "0123456789ABCDEF"[u & 15]);
    }
  }
  return out;
}

UpstreamReply json_reply(std::string body, int status = 200) {
  return {status, {{"Content-Type", "application/json"}}, std::move(body)};
}

// The DT system: answers a test-scripted reply per request and remembers every request.
class DtSystem {
 public:
  using Script = std::function<UpstreamReply(const UpstreamRequest&)>;
  explicit DtSystem(Script script)
      : script_(std::move(script)), server_([this](const UpstreamRequest& r) { return serve(r); }) {}

  std::string url(const std::string& path) const { return server_.url(path); }
  std::vector<UpstreamRequest> requests() const {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  std::size_t count(std::string_view prefix) const {
    std::size_t n = 0;
    for (const auto& r : requests()) n += r.target.starts_with(prefix);
    return n;
  }
  void set_script(Script script) {
    std::lock_guard lock(mutex_);
    script_ = std::move(script);
  }
  void stop() { server_.stop(); }

 private:
  UpstreamReply serve(const UpstreamRequest& r) {
    Script script;
    {
      std::lock_guard lock(mutex_);
      requests_.push_back(r);
      script = script_;
    }
    if (r.target == "/health") return json_reply(R"({"status":"pass"})");
    return script(r);
  }

  mutable std::mutex mutex_;
  Script script_;
  std::vector<UpstreamRequest> requests_;
  UpstreamServer server_;
};

// A lamp whose values come from the DT system at `base` through its readallproperties form, secured by
// basic authentication.
json::object lamp(const std::string& id, const std::string& title, const std::string& base) {
  return {{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
          {"id", id},
          {"title", title},
          {"base", base},
          {"securityDefinitions", {{"basic_sc", {{"scheme", "basic"}}}}},
          {"security", "basic_sc"},
          {"properties",
           {{"brightness",
             {{"type", "integer"},
              {"minimum", 0},
              {"maximum", 100},
              {"observable", true},
              {"forms", json::array{{{"href", "lamps/brightness"}}}}}},
            {"on", {{"type", "boolean"}, {"forms", json::array{{{"href", "lamps/on"}}}}}}}},
          {"actions", {{"toggle", {{"forms", json::array{{{"href", "lamps/toggle"}}}}}}}},
          {"forms", json::array{{{"href", "lamps/" + title + "/properties"}, {"op", "readallproperties"}}}}};
}

// A sensor without a readallproperties form: each property through its readproperty form, bearer-secured;
// the temperature's form has a URI variable with a default.
json::object sensor(const std::string& id, const std::string& base) {
  return {{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
          {"id", id},
          {"title", "Sensor"},
          {"base", base},
          {"securityDefinitions", {{"bearer_sc", {{"scheme", "bearer"}}}}},
          {"security", "bearer_sc"},
          {"properties",
           {{"temperature",
             {{"type", "number"},
              {"uriVariables",
               {{"unit", {{"type", "string"}, {"enum", json::array{"C", "F"}}, {"default", "C"}}}}},
              {"forms", json::array{{{"href", "sensor/temperature{?unit}"}}}}}},
            {"humidity", {{"type", "number"}, {"forms", json::array{{{"href", "sensor/humidity"}}}}}}}}};
}

std::string twin_system(const std::string& id, const DtSystem& dt, json::array twins,
                        json::object credentials, json::object extra = {}) {
  json::object doc{{"id", id},
                   {"type", "factory"},
                   {"name", "Plant " + id},
                   {"endpoints", {{"base_url", dt.url("/")}, {"permissions", dt.url("/permissions")}}},
                   {"twins", std::move(twins)}};
  if (!credentials.empty()) doc["credentials"] = std::move(credentials);
  for (auto& [k, v] : extra) doc[k] = v;
  return json::serialize(doc);
}

// Credentials for the TDs' basic_sc and for the permissions endpoint.
json::object basic_credentials() {
  return {{"basic_sc", {{"username", "alice"}, {"password", kPassword}}},
          {"permissions", {{"username", "alice"}, {"password", kPassword}}}};
}

// A permission answer that lets every principal read and observe every property.
constexpr std::string_view kEveryoneReads =
    R"({"permissions": [{"subject": {"any": true}, "operations": ["readproperty", "observeproperty"],
                         "affordances": "*"}]})";

std::string path_of(const std::string& twin) {
  return "/v1/twins/" + encoded(twin);
}

class AcquisitionTest : public SharedServerTest {
 protected:
  // Probes as often as every 50 ms, so that a DT system is seen down quickly; few twins at once and short
  // calls, so that the bounds show.
  static void SetUpTestSuite() {
    start_server({"--monitor-min-interval-ms", "50", "--acquisition-max-concurrent", "2",
                  "--acquisition-timeout-ms", "1000", "--acquisition-max-twins", "5"});
  }

  static json::object acquire(const std::string& path, const std::string& token, int expect = 200) {
    auto r = call(port(), "POST", path, token);
    EXPECT_EQ(r.status, expect) << r.body;
    return r.status == 200 ? r.json().as_object() : json::object();
  }

  static json::array audit(const std::string& query) {
    auto r = call(port(), "GET", "/v1/audit?" + query, kAdmin);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json().at("items").as_array();
  }
};

TEST_F(AcquisitionTest, Flow92Steps6To12SelectAcquireAndSeedThePolicy) {
  DtSystem dt([](const UpstreamRequest& r) {
    if (r.headers.count("authorization") == 0 || r.headers.at("authorization") != kBasic) {
      return json_reply(R"({"error":"who are you?"})", 401);
    }
    if (r.target == "/lamps/f92/properties")
      return json_reply(R"({"brightness": 70, "on": true, "extra": 1})");
    if (r.target.starts_with("/permissions?")) {
      return json_reply(R"({"permissions": [{"id": "world-reads", "subject": {"principal": "f92-world"},
                              "operations": ["readproperty", "observeproperty"], "affordances": ["brightness"]},
                             {"subject": {"role": "twin-controller"}, "operations": ["invokeaction"],
                              "affordances": ["toggle"]}]})");
    }
    return json_reply("{}", 404);
  });
  const auto plant = principal("f92-plant", "twin-system");
  const auto world = principal("f92-world", "metaverse-system");
  const auto other = principal("f92-other", "metaverse-system");
  auto reg =
      call(port(), "POST", "/v1/twin-systems", plant,
           twin_system("f92-plant", dt, {lamp("urn:f92:lamp", "f92", dt.url("/"))}, basic_credentials()));
  ASSERT_EQ(reg.status, 201) << reg.body;

  // 6-7: the metaverse system selects the twins it will use.
  auto made = call(port(), "POST", "/v1/selections", world,
                   R"({"id": "my-lamps", "title": "Lamps of hall 2", "twins": ["urn:f92:lamp"]})");
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(made.header("Location"), "/v1/selections/my-lamps");
  EXPECT_EQ(made.header("ETag"), "\"1\"");
  EXPECT_EQ(made.json().at("owner"), "f92-world");

  // 8-12: it asks for their properties and permissions; twinbridge asks the DT system and answers.
  const auto answer = acquire("/v1/selections/my-lamps/acquire", world);
  ASSERT_EQ(answer.at("twins").as_array().size(), 1u);
  const auto& item = answer.at("twins").at(0).as_object();
  EXPECT_EQ(item.at("id"), "urn:f92:lamp");
  EXPECT_FALSE(item.contains("problem")) << json::serialize(item);
  // The seeded policy lets this metaverse system read the brightness only: that is what it is served.
  const auto& state = item.at("state").as_object();
  EXPECT_EQ(state.at("properties"), (json::object{{"brightness", 70}}));
  EXPECT_EQ(state.at("channel"), "acquisition");
  EXPECT_FALSE(state.contains("stale"));
  EXPECT_EQ(item.at("permissions"),
            (json::object{{"brightness", json::array{"readproperty", "observeproperty"}},
                          {"on", json::array()},
                          {"toggle", json::array{"invokeaction"}}}));
  const auto& acquired = item.at("acquired").as_object();
  EXPECT_EQ(acquired.at("from"), "f92-plant");
  EXPECT_EQ(acquired.at("operation"), "readallproperties");
  EXPECT_EQ(acquired.at("urls"), (json::array{dt.url("/lamps/f92/properties").c_str()}));
  EXPECT_EQ(acquired.at("at"), state.at("ingestedAt"));
  const auto permission_url = dt.url("/permissions?twin=urn%3Af92%3Alamp&principal=f92-world");
  EXPECT_EQ(item.at("permission_answer").at("from"), permission_url.c_str());
  EXPECT_EQ(item.at("permission_answer").at("seeded_policy"), true);

  // The DT system was asked with the credentials it registered; the values went through the TD's form.
  ASSERT_EQ(dt.count("/lamps/f92/properties"), 1u);
  for (const auto& r : dt.requests()) {
    if (r.target != "/health") {
      EXPECT_EQ(r.headers.at("authorization"), kBasic) << r.target;
    }
  }

  // Kept: the state (everything the DT system said that the TD declares), versioned, on the acquisition
  // channel; the seeded policy, audited with where it came from.
  auto full = call(port(), "GET", path_of("urn:f92:lamp") + "/state", kAdmin);
  ASSERT_EQ(full.status, 200) << full.body;
  EXPECT_EQ(full.json().at("properties"), (json::object{{"brightness", 70}, {"on", true}}));
  EXPECT_EQ(full.json().at("version"), 2);
  auto policy = call(port(), "GET", path_of("urn:f92:lamp") + "/policy", kAdmin);
  ASSERT_EQ(policy.status, 200) << policy.body;
  EXPECT_EQ(policy.json().at("rules").at(0).at("id"), "world-reads");
  EXPECT_EQ(policy.json().at("rules").at(0).at("effect"), "allow");
  const auto seeded = audit("action=twin.policy&target_id=" + encoded("urn:f92:lamp"));
  ASSERT_EQ(seeded.size(), 1u);
  EXPECT_EQ(seeded[0].at("actor"), "twinbridge:acquisition");
  EXPECT_EQ(seeded[0].at("detail").at("seeded_from"), permission_url.c_str());
  EXPECT_EQ(seeded[0].at("detail").at("credential"), "on-behalf-of:f92-plant");

  // A second acquisition keeps the policy someone has by now: the answer is not applied again.
  const auto again = acquire(path_of("urn:f92:lamp") + "/acquire", world);
  EXPECT_EQ(again.at("twins").at(0).at("permission_answer").at("seeded_policy"), false);
  EXPECT_EQ(audit("action=twin.policy&target_id=" + encoded("urn:f92:lamp")).size(), 1u);

  // Another metaverse system, which the policy does not let read anything, gets nothing fetched for it.
  const auto before = dt.count("/lamps/");
  const auto refused = acquire(path_of("urn:f92:lamp") + "/acquire", other);
  const auto& denied = refused.at("twins").at(0).as_object();
  EXPECT_EQ(denied.at("problem").at("status"), 403);
  EXPECT_TRUE(denied.at("state").is_null());
  EXPECT_EQ(denied.at("permissions").at("brightness"), json::array());
  EXPECT_EQ(dt.count("/lamps/"), before);
}

TEST_F(AcquisitionTest, BearerCredentialsAndOneReadpropertyPerPropertyWithUriVariables) {
  DtSystem dt([](const UpstreamRequest& r) {
    if (r.headers.count("authorization") == 0 ||
        r.headers.at("authorization") != "Bearer " + std::string(kToken)) {
      return json_reply(R"({"error":"no"})", 401);
    }
    if (r.target == "/sensor/temperature?unit=C") return json_reply("21.5");
    if (r.target == "/sensor/humidity") return json_reply("40");
    return json_reply("{}", 404);
  });
  const auto plant = principal("brr-plant", "twin-system");
  const auto world = principal("brr-world", "metaverse-system");
  auto reg = call(port(), "POST", "/v1/twin-systems", plant,
                  twin_system("brr-plant", dt, {sensor("urn:brr:sensor", dt.url("/"))},
                              {{"bearer_sc", {{"token", kToken}}}}));
  ASSERT_EQ(reg.status, 201) << reg.body;
  const auto answer = acquire(path_of("urn:brr:sensor") + "/acquire", world);
  const auto& item = answer.at("twins").at(0).as_object();
  ASSERT_FALSE(item.contains("problem")) << json::serialize(item);
  EXPECT_EQ(item.at("state").at("properties"), (json::object{{"temperature", 21.5}, {"humidity", 40}}));
  EXPECT_EQ(item.at("acquired").at("operation"), "readproperty");
  EXPECT_EQ(item.at("acquired").at("urls"),
            (json::array{dt.url("/sensor/humidity").c_str(), dt.url("/sensor/temperature?unit=C").c_str()}));
  // Its permissions endpoint wants credentials it registered none for: said, not fatal.
  EXPECT_EQ(item.at("permissions_problem").at("status"), 503);
  EXPECT_TRUE(contains(std::string(item.at("permissions_problem").at("detail").as_string()), "HTTP 401"));
  // Without a policy, twins:read reads and observes; nothing may be written or invoked.
  EXPECT_EQ(item.at("permissions").at("temperature"), (json::array{"readproperty"}));
}

TEST_F(AcquisitionTest, AFailingDtSystemLeavesTheLastValuesMarkedStaleWithAProblem) {
  DtSystem dt([](const UpstreamRequest& r) {
    if (r.target == "/lamps/fail/properties") return json_reply(R"({"brightness": 40, "on": false})");
    return json_reply(std::string(kEveryoneReads));
  });
  const auto plant = principal("fail-plant", "twin-system");
  const auto world = principal("fail-world", "metaverse-system");
  ASSERT_EQ(
      call(port(), "POST", "/v1/twin-systems", plant,
           twin_system("fail-plant", dt, {lamp("urn:fail:lamp", "fail", dt.url("/"))}, basic_credentials()))
          .status,
      201);
  const auto first = acquire(path_of("urn:fail:lamp") + "/acquire", world);
  ASSERT_FALSE(first.at("twins").at(0).as_object().contains("problem"));
  const auto first_at = first.at("twins").at(0).at("acquired").at("at");

  // The DT system fails: the item has the last known values, stale since this failure, and the problem.
  dt.set_script([](const UpstreamRequest&) { return json_reply(R"({"error":"maintenance"})", 500); });
  const auto failed = acquire(path_of("urn:fail:lamp") + "/acquire", world);
  const auto& item = failed.at("twins").at(0).as_object();
  EXPECT_EQ(item.at("problem").at("status"), 503);
  EXPECT_TRUE(contains(std::string(item.at("problem").at("detail").as_string()), "HTTP 500"));
  EXPECT_FALSE(item.contains("acquired"));
  EXPECT_EQ(item.at("last_acquired").at("at"), first_at);
  EXPECT_EQ(item.at("state").at("properties"), (json::object{{"brightness", 40}, {"on", false}}));
  const auto& stale = item.at("state").at("stale").as_object();
  EXPECT_TRUE(contains(std::string(stale.at("reason").as_string()), "could not be acquired")) << stale;
  // The state was not touched: still the version the first acquisition made.
  EXPECT_EQ(item.at("state").at("version"), 2);

  // Values that do not fit the TD are not taken in either.
  dt.set_script([](const UpstreamRequest&) { return json_reply(R"({"brightness": 400})"); });
  const auto invalid = acquire(path_of("urn:fail:lamp") + "/acquire", world);
  const auto& bad = invalid.at("twins").at(0).as_object();
  EXPECT_EQ(bad.at("problem").at("status"), 422);
  EXPECT_EQ(bad.at("state").at("properties").at("brightness"), 40);
  // Stale since the first failure, which has not ended.
  EXPECT_EQ(bad.at("state").at("stale").at("since"), stale.at("since"));
}

TEST_F(AcquisitionTest, ADtSystemThatIsDownIsNotAskedAndItsTwinsAreServedStale) {
  DtSystem dt([](const UpstreamRequest& r) {
    if (r.target == "/lamps/down/properties") return json_reply(R"({"brightness": 10, "on": true})");
    return json_reply(std::string(kEveryoneReads));
  });
  const auto plant = principal("down-plant", "twin-system");
  const auto world = principal("down-world", "metaverse-system");
  ASSERT_EQ(
      call(port(), "POST", "/v1/twin-systems", plant,
           twin_system("down-plant", dt, {lamp("urn:down:lamp", "down", dt.url("/"))}, basic_credentials(),
                       {{"endpoints",
                         {{"base_url", dt.url("/")},
                          {"permissions", dt.url("/permissions")},
                          {"health_url", dt.url("/health")}}},
                        {"monitoring", {{"interval_s", 0.05}, {"timeout_s", 1}, {"failure_threshold", 1}}}}))
          .status,
      201);
  ASSERT_FALSE(acquire(path_of("urn:down:lamp") + "/acquire", world)
                   .at("twins")
                   .at(0)
                   .as_object()
                   .contains("problem"));

  dt.stop();
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  std::string state;
  while (state != "down" && std::chrono::steady_clock::now() < deadline) {
    auto status = call(port(), "GET", "/v1/twin-systems/down-plant/status", kAdmin);
    if (status.status == 200) state = std::string(status.json().at("state").as_string());
    if (state != "down") std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(state, "down");
  const auto calls = dt.count("/lamps/");
  const auto answer = acquire(path_of("urn:down:lamp") + "/acquire", world);
  const auto& item = answer.at("twins").at(0).as_object();
  EXPECT_EQ(item.at("problem").at("status"), 503);
  EXPECT_TRUE(contains(std::string(item.at("problem").at("detail").as_string()), "is down since"));
  EXPECT_EQ(item.at("state").at("properties"), (json::object{{"brightness", 10}, {"on", true}}));
  EXPECT_TRUE(contains(std::string(item.at("state").at("stale").at("reason").as_string()), "is down since"));
  EXPECT_EQ(dt.count("/lamps/"), calls);  // not asked
}

TEST_F(AcquisitionTest, ASelectionByFilterSelectsWhatItsTdsMatchNow) {
  DtSystem dt([](const UpstreamRequest& r) {
    if (r.target.starts_with("/lamps/") && r.target.ends_with("/properties"))
      return json_reply(R"({"brightness": 5, "on": true})");
    return json_reply(std::string(kEveryoneReads));
  });
  const auto plant = principal("flt-plant", "twin-system");
  const auto world = principal("flt-world", "metaverse-system");
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", plant,
                 twin_system("flt-plant", dt,
                             {lamp("urn:flt:a", "flt-a", dt.url("/")),
                              lamp("urn:flt:b", "flt-b", dt.url("/")), sensor("urn:flt:s", dt.url("/"))},
                             basic_credentials()))
                .status,
            201);
  auto made =
      call(port(), "POST", "/v1/selections", world,
           R"({"id": "flt-lamps", "filter": "$[?@.properties.brightness && search(@.title, '^flt-')]"})");
  ASSERT_EQ(made.status, 201) << made.body;
  auto twins = call(port(), "GET", "/v1/selections/flt-lamps/twins?limit=1", world);
  ASSERT_EQ(twins.status, 200) << twins.body;
  ASSERT_EQ(twins.json().at("items").as_array().size(), 1u);
  EXPECT_EQ(twins.json().at("items").at(0).at("id"), "urn:flt:a");
  auto rest =
      call(port(), "GET",
           "/v1/selections/flt-lamps/twins?cursor=" + std::string(twins.json().at("next_cursor").as_string()),
           world);
  ASSERT_EQ(rest.status, 200);
  ASSERT_EQ(rest.json().at("items").as_array().size(), 1u);
  EXPECT_EQ(rest.json().at("items").at(0).at("id"), "urn:flt:b");

  const auto answer = acquire("/v1/selections/flt-lamps/acquire", world);
  ASSERT_EQ(answer.at("twins").as_array().size(), 2u);
  for (const auto& item : answer.at("twins").as_array()) {
    EXPECT_FALSE(item.as_object().contains("problem")) << json::serialize(item);
    EXPECT_EQ(item.at("state").at("properties").at("brightness"), 5);
  }

  // Replaced (If-Match) by a list that names a twin that does not exist: it is said so, the others go on.
  auto stale_put = call(port(), "PUT", "/v1/selections/flt-lamps", world, R"({"twins": ["urn:flt:a"]})",
                        {{"If-Match", "\"7\""}});
  EXPECT_EQ(stale_put.status, 412);
  auto put =
      call(port(), "PUT", "/v1/selections/flt-lamps", world,
           R"({"id": "flt-lamps", "twins": ["urn:flt:missing", "urn:flt:a"]})", {{"If-Match", "\"1\""}});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.header("ETag"), "\"2\"");
  const auto listed = acquire("/v1/selections/flt-lamps/acquire", world);
  ASSERT_EQ(listed.at("twins").as_array().size(), 2u);
  EXPECT_EQ(listed.at("twins").at(0).at("problem").at("status"), 404);
  EXPECT_FALSE(listed.at("twins").at(1).as_object().contains("problem"));
}

TEST_F(AcquisitionTest, SelectionsBelongToTheirMakerAndAreCheckedWhenWritten) {
  const auto world = principal("sel-world", "metaverse-system");
  const auto neighbour = principal("sel-neighbour", "metaverse-system");
  const auto plant = principal("sel-plant", "twin-system");

  // A filter that is not a JSONPath query: 400 at its pointer.
  auto bad_filter =
      call(port(), "POST", "/v1/selections", world, R"({"id": "bad", "filter": "$[?@.title =="})");
  ASSERT_EQ(bad_filter.status, 400) << bad_filter.body;
  EXPECT_EQ(bad_filter.json().at("errors").at(0).at("pointer"), "/filter");
  // Shape errors: 422 with every pointer.
  auto bad = call(port(), "POST", "/v1/selections", world,
                  R"({"id": "bad id", "twins": ["urn:x", "urn:x", 3], "colour": "red"})");
  ASSERT_EQ(bad.status, 422) << bad.body;
  std::set<std::string> pointers;
  const auto errors = bad.json();
  for (const auto& e : errors.at("errors").as_array()) pointers.emplace(e.at("pointer").as_string());
  EXPECT_EQ(pointers, (std::set<std::string>{"/id", "/twins/1", "/twins/2", "/colour"}));
  auto both =
      call(port(), "POST", "/v1/selections", world, R"({"id": "both", "twins": ["urn:x"], "filter": "$"})");
  EXPECT_EQ(both.status, 422);

  ASSERT_EQ(call(port(), "POST", "/v1/selections", world, R"({"id": "mine", "twins": ["urn:x"]})").status,
            201);
  EXPECT_EQ(call(port(), "POST", "/v1/selections", world, R"({"id": "mine", "twins": ["urn:y"]})").status,
            409);
  // Ids are per owner; one sees only one's own.
  ASSERT_EQ(call(port(), "POST", "/v1/selections", neighbour, R"({"id": "mine", "twins": ["urn:y"]})").status,
            201);
  auto list = call(port(), "GET", "/v1/selections", world);
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.json().at("items").as_array().size(), 1u);
  EXPECT_EQ(list.json().at("items").at(0).at("twins"), (json::array{"urn:x"}));
  auto theirs = call(port(), "GET", "/v1/selections/mine", neighbour);
  EXPECT_EQ(theirs.json().at("twins"), (json::array{"urn:y"}));
  // A twin system makes no selections.
  EXPECT_EQ(call(port(), "POST", "/v1/selections", plant, R"({"id": "p", "twins": ["urn:x"]})").status, 403);
  // Read-only members may be echoed, not changed.
  auto changed_owner =
      call(port(), "PUT", "/v1/selections/mine", world, R"({"twins": ["urn:z"], "owner": "x"})");
  EXPECT_EQ(changed_owner.status, 422);

  auto gone = call(port(), "DELETE", "/v1/selections/mine", world, "", {{"If-Match", "\"1\""}});
  EXPECT_EQ(gone.status, 204);
  EXPECT_EQ(call(port(), "GET", "/v1/selections/mine", world).status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/selections/mine", neighbour).status, 200);
  const auto entries = audit("target_type=selection&actor=sel-world");
  std::vector<std::string> actions;
  for (const auto& e : entries) actions.emplace_back(e.at("action").as_string());
  EXPECT_EQ(actions, (std::vector<std::string>{"selection.create", "selection.delete"}));
}

TEST_F(AcquisitionTest, CredentialsAreNeverServedAuditedOrEchoed) {
  DtSystem dt([](const UpstreamRequest& r) {
    // A careless DT system that echoes what it got.
    std::string seen = r.headers.count("authorization") != 0 ? r.headers.at("authorization") : "";
    return json_reply(json::serialize(json::object{{"denied", seen}}), 401);
  });
  const auto plant = principal("sec-plant", "twin-system");
  const auto world = principal("sec-world", "metaverse-system");
  const json::object secrets{{"basic_sc", {{"username", "alice"}, {"password", kPassword}}},
                             {"permissions", {{"token", kToken}}}};
  auto reg = call(port(), "POST", "/v1/twin-systems", plant,
                  twin_system("sec-plant", dt, {lamp("urn:sec:lamp", "sec", dt.url("/"))}, secrets));
  ASSERT_EQ(reg.status, 201) << reg.body;
  const auto never = [&](const std::string& text, const std::string& where) {
    EXPECT_FALSE(contains(text, kPassword)) << where << ": " << text;
    EXPECT_FALSE(contains(text, kToken)) << where << ": " << text;
    EXPECT_FALSE(contains(text, kBasic.substr(6))) << where << ": " << text;
  };
  never(reg.body, "POST answer");
  EXPECT_FALSE(reg.json().as_object().contains("credentials"));
  auto got = call(port(), "GET", "/v1/twin-systems/sec-plant", world);
  never(got.body, "GET");
  EXPECT_FALSE(got.json().as_object().contains("credentials"));
  never(call(port(), "GET", "/v1/twin-systems?filter=%24%5B%3F%40.credentials%5D", world).body, "discovery");
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems?filter=%24%5B%3F%40.credentials%5D", world)
                .json()
                .at("items")
                .as_array()
                .size(),
            0u);

  // An invalid replacement is refused without repeating what it held.
  auto invalid =
      call(port(), "PATCH", "/v1/twin-systems/sec-plant", plant,
           json::serialize(json::object{
               {"credentials", {{"basic_sc", {{"username", kToken}, {"password", 7}, {"pin", kPassword}}}}}}),
           {{"Content-Type", "application/merge-patch+json"}});
  EXPECT_EQ(invalid.status, 422) << invalid.body;
  never(invalid.body, "422");

  // A DT system that echoes them: the problem says what failed, not what was sent.
  const auto answer = acquire(path_of("urn:sec:lamp") + "/acquire", world);
  const auto& item = answer.at("twins").at(0).as_object();
  EXPECT_EQ(item.at("problem").at("status"), 503);
  never(json::serialize(answer), "acquisition answer");
  ASSERT_GE(dt.count("/permissions"), 1u);
  for (const auto& r : dt.requests()) {
    if (r.target.starts_with("/permissions")) {
      EXPECT_EQ(r.headers.at("authorization"), "Bearer " + std::string(kToken));
    }
  }

  // PATCH without credentials keeps them; PUT without them removes them, after which the TD's security
  // cannot be met.
  ASSERT_EQ(call(port(), "PATCH", "/v1/twin-systems/sec-plant", plant, R"({"name": "Renamed"})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            200);
  const auto kept = dt.count("/lamps/");
  acquire(path_of("urn:sec:lamp") + "/acquire", world);
  EXPECT_EQ(dt.count("/lamps/"), kept + 1);
  auto current = call(port(), "GET", "/v1/twin-systems/sec-plant", plant).json().as_object();
  auto put = call(port(), "PUT", "/v1/twin-systems/sec-plant", plant,
                  json::serialize(json::object{
                      {"type", "factory"}, {"name", "Renamed"}, {"endpoints", current.at("endpoints")}}));
  ASSERT_EQ(put.status, 200) << put.body;
  const auto without = acquire(path_of("urn:sec:lamp") + "/acquire", world);
  EXPECT_EQ(without.at("twins").at(0).at("problem").at("status"), 403);
  EXPECT_EQ(dt.count("/lamps/"), kept + 1);

  // The audit log names what the credentials are for, never what they are.
  const auto entries = audit("target_type=twin-system&target_id=sec-plant");
  ASSERT_GE(entries.size(), 3u);
  never(json::serialize(entries), "audit");
  EXPECT_EQ(entries[0].at("detail").at("credentials"), (json::array{"basic_sc", "permissions"}));
  // Nor does the server's log say them.
  never(server_->log(), "server log");
}

TEST_F(AcquisitionTest, APermissionsEndpointMustPassTheOutboundGuard) {
  const auto plant = principal("guard-plant", "twin-system");
  auto reg = call(port(), "POST", "/v1/twin-systems", plant,
                  R"({"type": "factory", "name": "g", "endpoints": {"base_url": "https://plant.example",
                      "permissions": "http://169.254.169.254/latest/meta-data"}})");
  ASSERT_EQ(reg.status, 422) << reg.body;
  EXPECT_EQ(reg.json().at("errors").at(0).at("pointer"), "/endpoints/permissions");
}

TEST_F(AcquisitionTest, TwinsAreAcquiredAFewAtATimeAndEachCallIsBounded) {
  std::mutex mutex;
  int in_flight = 0;
  int most = 0;
  DtSystem dt([&](const UpstreamRequest& r) {
    if (r.target == "/lamps/hang/properties") {
      UpstreamReply never;
      never.hang = true;
      return never;
    }
    if (!r.target.ends_with("/properties")) return json_reply("{}", 404);
    {
      std::lock_guard lock(mutex);
      most = std::max(most, ++in_flight);
    }
    std::this_thread::sleep_for(100ms);
    std::lock_guard lock(mutex);
    --in_flight;
    return json_reply(R"({"brightness": 1})");
  });
  const auto plant = principal("few-plant", "twin-system");
  const auto world = principal("few-world", "metaverse-system");
  json::array twins;
  for (const auto* name : {"a", "b", "c", "d", "hang"}) {
    twins.push_back(lamp(std::string("urn:few:") + name, name, dt.url("/")));
  }
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", plant,
                 twin_system("few-plant", dt, std::move(twins), basic_credentials()))
                .status,
            201);
  ASSERT_EQ(
      call(port(), "POST", "/v1/selections", world,
           R"({"id": "few", "twins": ["urn:few:a", "urn:few:b", "urn:few:c", "urn:few:d", "urn:few:hang"]})")
          .status,
      201);
  const auto answer = acquire("/v1/selections/few/acquire", world);
  ASSERT_EQ(answer.at("twins").as_array().size(), 5u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(answer.at("twins").at(i).at("state").at("properties").at("brightness"), 1);
  }
  // The one that never answers is cut off at acquisition.timeout_ms.
  const auto& hung = answer.at("twins").at(4).as_object();
  EXPECT_EQ(hung.at("problem").at("status"), 503);
  EXPECT_TRUE(contains(std::string(hung.at("problem").at("detail").as_string()), "timed out")) << hung;
  EXPECT_LE(most, 2);  // acquisition.max_concurrent

  // More twins than acquisition.max_twins: refused as a whole.
  ASSERT_EQ(
      call(port(), "PUT", "/v1/selections/few", world,
           R"({"twins": ["urn:few:a", "urn:few:b", "urn:few:c", "urn:few:d", "urn:few:e", "urn:few:f"]})")
          .status,
      200);
  auto refused = call(port(), "POST", "/v1/selections/few/acquire", world);
  EXPECT_EQ(refused.status, 422) << refused.body;
}

// SIGTERM while an acquisition waits on a DT system that never answers: the call in flight ends at its
// timeout, the twins still waiting are not asked for, the request is answered and the server exits 0.
TEST(AcquisitionShutdown, TwinsStillWaitingAreAnsweredAtOnceAndTheServerExits) {
  DtSystem dt([](const UpstreamRequest& r) {
    if (r.target.starts_with("/lamps/")) {
      UpstreamReply never;
      never.hang = true;
      return never;
    }
    return json_reply("{}", 404);
  });
  TempDir dir;
  ServerProcess server(dir.path(),
                       {"--outbound-allow", "loopback", "--acquisition-max-concurrent", "1",
                        "--acquisition-timeout-ms", "1000"},
                       {{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}});
  const auto make = [&](const std::string& id, const std::string& kind) {
    auto r = call(server.port(), "POST", "/v1/principals", kAdmin,
                  json::serialize(json::object{{"id", id}, {"kind", kind}, {"name", id}}));
    EXPECT_EQ(r.status, 201) << r.body;
    return std::string(r.json().at("api_key").at("token").as_string());
  };
  const auto plant = make("bye-plant", "twin-system");
  const auto world = make("bye-world", "metaverse-system");
  json::array twins;
  for (const auto* name : {"a", "b", "c"})
    twins.push_back(lamp(std::string("urn:bye:") + name, name, dt.url("/")));
  ASSERT_EQ(call(server.port(), "POST", "/v1/twin-systems", plant,
                 twin_system("bye-plant", dt, std::move(twins), basic_credentials()))
                .status,
            201);
  ASSERT_EQ(call(server.port(), "POST", "/v1/selections", world,
                 R"({"id": "bye", "twins": ["urn:bye:a", "urn:bye:b", "urn:bye:c"]})")
                .status,
            201);
  Connection c(server.port(), 20s);
  ASSERT_TRUE(c.send(
      serialize(Request("POST", "/v1/selections/bye/acquire", "", {{"Authorization", "Bearer " + world}}))));
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (dt.count("/lamps/") == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_EQ(dt.count("/lamps/"), 1u);
  ASSERT_EQ(::kill(server.pid(), SIGTERM), 0);
  auto answer = c.read_response();
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->status, 200) << answer->body;
  const auto items = answer->json().at("twins").as_array();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_TRUE(contains(std::string(items[0].at("problem").at("detail").as_string()), "timed out"));
  for (std::size_t i = 1; i < 3; ++i) {
    EXPECT_TRUE(contains(std::string(items[i].at("problem").at("detail").as_string()), "shutting down"));
  }
  EXPECT_EQ(dt.count("/lamps/"), 1u);
  EXPECT_EQ(server.stop(0), 0);
}

TEST_F(AcquisitionTest, AnAcquisitionTakesNoBody) {
  const auto world = principal("nobody-world", "metaverse-system");
  auto r = call(port(), "POST", path_of("urn:none") + "/acquire", world, R"({"x": 1})");
  EXPECT_EQ(r.status, 400) << r.body;
  const auto missing = acquire(path_of("urn:none") + "/acquire", world);
  EXPECT_EQ(missing.at("twins").at(0).at("problem").at("status"), 404);
}

}  // namespace
}  // namespace twinbridge::testing
