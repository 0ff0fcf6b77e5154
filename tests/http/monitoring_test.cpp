// Integration tests of system monitoring (FGMV-29 8.2.1 / 8.3.1 "statuses and performance") against the real
// server and real HTTP health endpoints on loopback: probes, thresholds, bounded probe failures (a hanging
// URL, a 10 MB answer), heartbeats and their TTL, status history, the SLA report, status-change events, and
// discovery that leaves out systems that are down.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <csignal>
#include <set>
#include <thread>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"
#include "support/upstream_server.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;

class MonitoringTest : public SharedServerTest {
 protected:
  // Probes as often as every 50 ms, so that a test sees several in well under a second.
  static void SetUpTestSuite() { start_server({"--monitor-min-interval-ms", "50"}); }

  static std::string third_party(const std::string& id, const std::string& health_url,
                                 boost::json::object monitoring, double latency_ms = 1000) {
    boost::json::object endpoints{{"base_url", "http://127.0.0.1:1/api"}};
    if (!health_url.empty()) endpoints["health_url"] = health_url;
    return boost::json::serialize(boost::json::object{
        {"id", id},
        {"type", "monitored"},
        {"name", id},
        {"service_charge", {{"model", "free"}, {"amount", 0}, {"currency", "EUR"}, {"unit", "call"}}},
        {"service_level", {{"availability", 99.0}, {"latency_ms", latency_ms}}},
        {"apis", boost::json::array{{{"name", "ping"}, {"method", "GET"}, {"path", "/ping"}}}},
        {"endpoints", std::move(endpoints)},
        {"monitoring", std::move(monitoring)}});
  }

  // Polls until the monitor's view (GET <path>/status) and the stored record (GET <path>, written once the
  // change is durable) both say `state`; returns the last status document.
  static boost::json::value wait_for_state(const std::string& path, const std::string& state,
                                           std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    boost::json::value last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = call(port(), "GET", path + "/status", kAdmin);
      auto record = call(port(), "GET", path, kAdmin);
      if (r.status == 200 && record.status == 200) {
        last = r.json();
        if (last.at("state") == state.c_str() && record.json().at("status").at("state") == state.c_str()) {
          return last;
        }
      }
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << path << " did not become " << state << "; last: " << boost::json::serialize(last);
    return last;
  }
};

UpstreamReply healthy() {
  return {200, {{"Content-Type", "application/health+json"}}, R"({"status":"pass"})"};
}

TEST_F(MonitoringTest, AHealthEndpointThatGoesDownAndComesBack) {
  UpstreamServer upstream([](const UpstreamRequest&) { return healthy(); });
  auto events = open_events(port(), "/v1/system-events", kAdmin);
  const std::string path = "/v1/third-party-systems/flaky-svc";
  auto reg = call(port(), "POST", "/v1/third-party-systems", kAdmin,
                  third_party("flaky-svc", upstream.url("/health"),
                              {{"interval_s", 0.05}, {"timeout_s", 1}, {"failure_threshold", 2}}));
  ASSERT_EQ(reg.status, 201) << reg.body;

  auto up = wait_for_state(path, "up");
  EXPECT_EQ(up.at("checks").at("probe").at("url"), upstream.url("/health").c_str());
  EXPECT_EQ(up.at("checks").at("probe").at("failure_threshold"), 2);
  EXPECT_TRUE(up.at("checks").at("probe").at("latency_ms").is_number());
  auto while_up = call(port(), "GET", path, kAdmin);
  ASSERT_EQ(while_up.status, 200);
  EXPECT_EQ(while_up.json().at("status").at("state"), "up");
  const auto etag_up = while_up.header("ETag");

  upstream.stop();  // connections are refused from now on
  auto down = wait_for_state(path, "down");
  // Probes go on every 50 ms, so the count may already be past the threshold of 2 when the test reads it.
  const std::string reason(down.at("reason").as_string());
  const std::string prefix = "health probe: connection refused while connecting (";
  ASSERT_TRUE(reason.starts_with(prefix) && reason.ends_with(" failures in a row)")) << reason;
  EXPECT_GE(std::stoi(reason.substr(prefix.size())), 2) << reason;

  // The status is part of the representation: a cached copy is not "not modified" any more...
  auto revalidate = call(port(), "GET", path, kAdmin, "", {{"If-None-Match", etag_up}});
  EXPECT_EQ(revalidate.status, 200);
  EXPECT_EQ(revalidate.json().at("status").at("state"), "down");
  // ...but the owner's conditional write, made against the registration it read, still succeeds.
  auto put = call(port(), "PUT", path, kAdmin,
                  third_party("flaky-svc", upstream.url("/health"),
                              {{"interval_s", 0.05}, {"timeout_s", 1}, {"failure_threshold", 2}}),
                  {{"If-Match", etag_up}});
  EXPECT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.json().at("status").at("state"), "down");  // a new registration does not reset the status

  // Discovery marks it and can leave it out.
  auto all = call(port(), "GET", "/v1/third-party-systems?type=monitored&status=down", kAdmin).json();
  bool listed = false;
  for (const auto& item : all.at("items").as_array()) listed |= item.at("id") == "flaky-svc";
  EXPECT_TRUE(listed);
  auto alive = call(port(), "GET", "/v1/third-party-systems?type=monitored&exclude_down=true", kAdmin).json();
  for (const auto& item : alive.at("items").as_array()) EXPECT_NE(item.at("id"), "flaky-svc");

  upstream.start();  // same port
  wait_for_state(path, "up");

  // The history: unknown → up → down → up, oldest first.
  auto history = call(port(), "GET", path + "/status-history", kAdmin);
  ASSERT_EQ(history.status, 200) << history.body;
  std::vector<std::string> states;
  const auto entries = history.json();
  for (const auto& e : entries.at("items").as_array()) states.emplace_back(e.at("state").as_string());
  EXPECT_EQ(states, (std::vector<std::string>{"up", "down", "up"}));
  auto first = call(port(), "GET", path + "/status-history?limit=1", kAdmin);
  ASSERT_EQ(first.json().at("items").as_array().size(), 1u);
  auto rest = call(port(), "GET",
                   path + "/status-history?cursor=" + std::string(first.json().at("next_cursor").as_string()),
                   kAdmin);
  EXPECT_EQ(rest.json().at("items").as_array().size(), 2u);

  // The same changes arrived as events, in order.
  std::vector<std::string> seen;
  while (seen.size() < 3) {
    auto e = next_event(*events);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type, "status_changed");
    if (e->data.at("id") != "flaky-svc") continue;
    EXPECT_EQ(e->data.at("kind"), "third-party-system");
    seen.emplace_back(e->data.at("to").as_string());
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"up", "down", "up"}));

  // The SLA report measured the outage against the declared 99 %.
  auto sla = call(port(), "GET", path + "/sla?window=3600", kAdmin);
  ASSERT_EQ(sla.status, 200) << sla.body;
  const auto report = sla.json();
  EXPECT_EQ(report.at("window_s"), 3600);
  EXPECT_LT(report.at("availability").at("measured_percent").to_number<double>(), 100.0);
  EXPECT_EQ(report.at("availability").at("target_percent").to_number<double>(), 99.0);
  EXPECT_GE(report.at("probes").at("failed").to_number<int>(), 2);
  EXPECT_GT(report.at("probes").at("total").to_number<int>(),
            report.at("probes").at("failed").to_number<int>());
  EXPECT_TRUE(report.at("latency").at("p99_ms").is_number());
  EXPECT_EQ(report.at("latency").at("met"), true);  // loopback answers well within 1000 ms

  // Operators see the probes and changes in /metrics.
  const auto metrics = fetch(port(), {"GET", "/metrics"}).body;
  for (const char* series :
       {R"(twinbridge_monitor_probes_total{kind="third-party-system",result="fail"})",
        R"(twinbridge_monitor_probes_total{kind="third-party-system",result="pass"})",
        R"(twinbridge_monitor_status_changes_total{kind="third-party-system",to="down"} )",
        R"(twinbridge_monitor_probe_duration_seconds_count{kind="third-party-system"})"}) {
    EXPECT_NE(metrics.find(series), std::string::npos) << series;
  }
  EXPECT_EQ(metrics.find(R"(twinbridge_monitor_status_changes_total{kind="third-party-system",to="down"} 0)"),
            std::string::npos);
}

TEST_F(MonitoringTest, AHangingHealthUrlIsABoundedProbeFailure) {
  UpstreamServer upstream([](const UpstreamRequest&) {
    UpstreamReply r;
    r.hang = true;
    return r;
  });
  const std::string path = "/v1/third-party-systems/hanging-svc";
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin,
                 third_party("hanging-svc", upstream.url("/health"),
                             {{"interval_s", 0.05}, {"timeout_s", 0.2}, {"failure_threshold", 1}}))
                .status,
            201);
  auto down = wait_for_state(path, "down");
  EXPECT_EQ(down.at("reason"),
            "health probe: timed out after 200 ms while reading the response (1 failure in a row)");
  EXPECT_EQ(call(port(), "GET", "/healthz", "").status, 200);  // the API is not held up
}

TEST_F(MonitoringTest, ATenMegabyteHealthAnswerFailsTheProbe) {
  UpstreamServer upstream([](const UpstreamRequest&) {
    return UpstreamReply{200, {{"Content-Type", "text/plain"}}, std::string(10 << 20, 'x')};
  });
  const std::string path = "/v1/third-party-systems/chatty-svc";
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin,
                 third_party("chatty-svc", upstream.url("/health"),
                             {{"interval_s", 0.05}, {"timeout_s", 5}, {"failure_threshold", 1}}))
                .status,
            201);
  auto down = wait_for_state(path, "down");
  EXPECT_EQ(
      down.at("reason"),
      "health probe: response body larger than 65536 bytes while reading the response (1 failure in a row)");
}

TEST_F(MonitoringTest, HealthDocumentsAndSlowAnswersMakeItDegraded) {
  std::atomic<int> mode{0};
  UpstreamServer upstream([&](const UpstreamRequest&) {
    if (mode == 0)
      return UpstreamReply{200, {{"Content-Type", "application/health+json"}}, R"({"status":"warn"})"};
    if (mode == 1) return UpstreamReply{200, {}, "ok", 150ms};
    return UpstreamReply{200, {{"Content-Type", "application/health+json"}}, R"({"status":"fail"})"};
  });
  const std::string path = "/v1/third-party-systems/moody-svc";
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin,
                 third_party("moody-svc", upstream.url("/health"),
                             {{"interval_s", 0.05}, {"failure_threshold", 1}}, /*latency_ms=*/50))
                .status,
            201);
  EXPECT_EQ(wait_for_state(path, "degraded").at("reason"), "health probe: HTTP 200 reports a warning");
  mode = 2;
  EXPECT_EQ(wait_for_state(path, "down").at("reason"),
            "health probe: HTTP 200, health document says 'fail' (1 failure in a row)");
  mode = 1;
  auto slow = wait_for_state(path, "degraded");
  EXPECT_NE(slow.at("reason").as_string().find("over the latency target of 50 ms"), std::string::npos)
      << slow.at("reason");
}

TEST_F(MonitoringTest, HeartbeatsRefreshTheTtl) {
  const auto token = principal("beating", "third-party-system");
  const std::string path = "/v1/third-party-systems/beating-svc";
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", token,
                 third_party("beating-svc", "", {{"heartbeat_ttl_s", 1}}))
                .status,
            201);
  auto beat = call(port(), "POST", path + "/heartbeat", token);
  ASSERT_EQ(beat.status, 200) << beat.body;
  EXPECT_EQ(beat.json().at("state"), "up");
  EXPECT_EQ(beat.json().at("checks").at("heartbeat").at("ttl_s").to_number<double>(), 1.0);
  EXPECT_FALSE(beat.json().at("checks").at("probe").at("active").as_bool());

  auto lapsed = wait_for_state(path, "down", 5s);
  EXPECT_TRUE(lapsed.at("reason").as_string().starts_with("heartbeat: none since ")) << lapsed.at("reason");

  auto degraded =
      call(port(), "POST", path + "/heartbeat", token, R"({"status":"degraded","note":"disk 95% full"})");
  ASSERT_EQ(degraded.status, 200) << degraded.body;
  EXPECT_EQ(degraded.json().at("state"), "degraded");
  EXPECT_EQ(degraded.json().at("reason"), "heartbeat: reports degraded: disk 95% full");

  // Bad heartbeats change nothing.
  auto bad = call(port(), "POST", path + "/heartbeat", token, R"({"status":"sideways","colour":1})");
  ASSERT_EQ(bad.status, 422) << bad.body;
  std::set<std::string> pointers;
  const auto problem = bad.json();
  for (const auto& e : problem.at("errors").as_array())
    pointers.insert(std::string(e.at("pointer").as_string()));
  EXPECT_EQ(pointers, (std::set<std::string>{"/status", "/colour"}));
  EXPECT_EQ(call(port(), "GET", path + "/status", kAdmin).json().at("state"), "degraded");
  // Only the system itself (or an operator) beats for it; unknown systems are 404.
  const auto other = principal("not-beating", "third-party-system");
  EXPECT_EQ(call(port(), "POST", path + "/heartbeat", other).status, 403);
  EXPECT_EQ(call(port(), "POST", "/v1/third-party-systems/nobody/heartbeat", token).status, 404);
}

TEST_F(MonitoringTest, TwinSystemsAreMonitoredAsWell) {
  UpstreamServer upstream([](const UpstreamRequest&) { return healthy(); });
  auto reg = call(port(), "POST", "/v1/twin-systems", kAdmin,
                  boost::json::serialize(boost::json::object{
                      {"id", "watched-plant"},
                      {"type", "factory"},
                      {"name", "watched plant"},
                      {"endpoints", {{"base_url", "http://127.0.0.1:1"}, {"health_url", upstream.url("/h")}}},
                      {"monitoring", {{"interval_s", 0.05}}}}));
  ASSERT_EQ(reg.status, 201) << reg.body;
  wait_for_state("/v1/twin-systems/watched-plant", "up");
  EXPECT_EQ(call(port(), "DELETE", "/v1/twin-systems/watched-plant", kAdmin).status, 204);
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/watched-plant/status", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/watched-plant/status-history", kAdmin).status, 404);
}

TEST_F(MonitoringTest, StatusAndHistorySurviveARestart) {
  TempDir data;
  const std::map<std::string, std::string> env{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}};
  const std::string path = "/v1/third-party-systems/durable-svc";
  {
    ServerProcess first(data.path(), {}, env);
    ASSERT_EQ(call(first.port(), "POST", "/v1/third-party-systems", kAdmin,
                   third_party("durable-svc", "", {{"heartbeat_ttl_s", 3600}}))
                  .status,
              201);
    auto beat = call(first.port(), "POST", path + "/heartbeat", kAdmin,
                     R"({"status":"degraded","note":"warming up"})");
    ASSERT_EQ(beat.status, 200) << beat.body;  // answered once the change is durable
    EXPECT_EQ(first.stop(SIGKILL), 128 + SIGKILL);
  }
  ServerProcess second(data.path(), {}, env);
  auto record = call(second.port(), "GET", path, kAdmin).json();
  EXPECT_EQ(record.at("status").at("state"), "degraded");
  EXPECT_EQ(record.at("status").at("reason"), "heartbeat: reports degraded: warming up");
  auto status = call(second.port(), "GET", path + "/status", kAdmin).json();
  EXPECT_EQ(status.at("state"), "degraded");
  auto history = call(second.port(), "GET", path + "/status-history", kAdmin).json();
  ASSERT_EQ(history.at("items").as_array().size(), 1u);
  EXPECT_EQ(history.at("items").at(0).at("state"), "degraded");
}

TEST_F(MonitoringTest, BadMonitoringParametersAreRejected) {
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin, third_party("quiet-svc", "", {})).status,
            201);
  const std::string path = "/v1/third-party-systems/quiet-svc";
  auto status = call(port(), "GET", path + "/status", kAdmin).json();
  EXPECT_EQ(status.at("state"), "unknown");
  EXPECT_EQ(status.at("reason"), "no health URL and no heartbeat TTL declared");
  EXPECT_EQ(call(port(), "GET", path, kAdmin).json().at("status").at("reason"), status.at("reason"));
  auto window = call(port(), "GET", path + "/sla?window=0", kAdmin);
  EXPECT_EQ(window.status, 400);
  EXPECT_EQ(window.json().at("errors").at(0).at("parameter"), "window");
  EXPECT_EQ(call(port(), "GET", path + "/status-history?since=yesterday", kAdmin).status, 400);
  EXPECT_EQ(call(port(), "GET", path + "/status-history?cursor=zz", kAdmin).status, 400);
  EXPECT_EQ(call(port(), "GET", path + "/sla?colour=red", kAdmin).status, 400);
  auto bad =
      call(port(), "POST", "/v1/third-party-systems", kAdmin,
           third_party("bad-mon", "", {{"interval_s", -1}, {"failure_threshold", 0}, {"extra", true}}));
  ASSERT_EQ(bad.status, 422) << bad.body;
  std::set<std::string> pointers;
  const auto problem = bad.json();
  for (const auto& e : problem.at("errors").as_array())
    pointers.insert(std::string(e.at("pointer").as_string()));
  EXPECT_EQ(pointers, (std::set<std::string>{"/monitoring/interval_s", "/monitoring/failure_threshold",
                                             "/monitoring/extra"}));
  auto sla = call(port(), "GET", path + "/sla", kAdmin).json();
  EXPECT_TRUE(sla.at("availability").at("measured_percent").is_null());
  EXPECT_TRUE(sla.at("availability").at("met").is_null());
}

}  // namespace
}  // namespace twinbridge::testing
