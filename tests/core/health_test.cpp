#include "core/health.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

namespace twinbridge::core {
namespace {

using namespace std::chrono_literals;

const Timestamp kT0 = from_unix_micros(1'800'000'000'000'000);

ProbeResult pass(Timestamp at, std::chrono::microseconds latency = 5ms) {
  return {at, true, false, latency, "HTTP 200"};
}
ProbeResult failure(Timestamp at, std::string detail = "HTTP 503") {
  return {at, false, false, 0us, std::move(detail)};
}

MonitorPolicy policy(int failures = 3, int successes = 1) {
  MonitorPolicy p;
  p.failure_threshold = failures;
  p.success_threshold = successes;
  return p;
}

TEST(MonitorPolicyTest, RegistrationOverridesDefaults) {
  const auto reg = boost::json::parse(R"({"monitoring": {"interval_s": 2.5, "timeout_s": 0.5,
      "failure_threshold": 2, "success_threshold": 4, "heartbeat_ttl_s": 60},
      "service_level": {"availability": 99.5, "latency_ms": 200}})")
                       .as_object();
  const auto p = monitor_policy(reg, MonitorPolicy{});
  EXPECT_EQ(p.interval, 2500ms);
  EXPECT_EQ(p.timeout, 500ms);
  EXPECT_EQ(p.failure_threshold, 2);
  EXPECT_EQ(p.success_threshold, 4);
  EXPECT_EQ(p.heartbeat_ttl, std::optional(60'000ms));
  EXPECT_EQ(p.latency_target_ms, std::optional(200.0));
  EXPECT_EQ(p.availability_target, std::optional(99.5));

  const auto defaults = monitor_policy(boost::json::object{}, policy(5, 2));
  EXPECT_EQ(defaults.failure_threshold, 5);
  EXPECT_FALSE(defaults.heartbeat_ttl);
}

TEST(MonitorPolicyTest, TheHealthUrlDecidesTheProbeAndTheInitialReason) {
  const auto probed =
      boost::json::parse(R"({"endpoints": {"base_url": "http://a", "health_url": "http://a/h"}})")
          .as_object();
  EXPECT_EQ(monitor_policy(probed, MonitorPolicy{}).health_url, std::optional<std::string>("http://a/h"));
  EXPECT_EQ(initial_status_reason(probed), "not checked yet");
  const auto beating = boost::json::parse(R"({"monitoring": {"heartbeat_ttl_s": 5}})").as_object();
  EXPECT_FALSE(monitor_policy(beating, MonitorPolicy{}).health_url);
  EXPECT_EQ(initial_status_reason(beating), "not checked yet");
  EXPECT_EQ(initial_status_reason(boost::json::object{}), kNoChecksReason);
}

TEST(HealthTrackerTest, WithoutChecksTheStatusIsUnknown) {
  HealthTracker t(policy(), false, SystemStatus::up, "old", kT0);
  EXPECT_EQ(t.status(), SystemStatus::unknown);
  EXPECT_EQ(t.reason(), "no health URL and no heartbeat TTL declared");
  EXPECT_FALSE(t.on_tick(kT0 + 1h));
}

TEST(HealthTrackerTest, FirstPassingProbeMakesItUp) {
  HealthTracker t(policy(), true, SystemStatus::unknown, "not probed yet", kT0);
  auto change = t.on_probe(pass(kT0 + 1s, 12ms));
  ASSERT_TRUE(change);
  EXPECT_EQ(change->from, SystemStatus::unknown);
  EXPECT_EQ(change->to, SystemStatus::up);
  EXPECT_EQ(change->at, kT0 + 1s);
  EXPECT_EQ(change->reason, "health probe: HTTP 200 in 12.0 ms");
  EXPECT_FALSE(t.on_probe(pass(kT0 + 2s)));  // no change, no event
}

TEST(HealthTrackerTest, DownOnlyAfterTheFailureThreshold) {
  HealthTracker t(policy(3), true, SystemStatus::up, "", kT0);
  EXPECT_FALSE(t.on_probe(pass(kT0)));
  EXPECT_FALSE(t.on_probe(failure(kT0 + 1s)));
  EXPECT_EQ(t.status(), SystemStatus::up);
  EXPECT_EQ(t.probe().consecutive_failures, 1);
  EXPECT_FALSE(t.on_probe(failure(kT0 + 2s)));
  auto change = t.on_probe(failure(kT0 + 3s, "connection refused"));
  ASSERT_TRUE(change);
  EXPECT_EQ(change->to, SystemStatus::down);
  EXPECT_EQ(change->reason, "health probe: connection refused (3 failures in a row)");
  // A pass in between resets the count.
  HealthTracker u(policy(2), true, SystemStatus::up, "", kT0);
  EXPECT_FALSE(u.on_probe(failure(kT0)));
  EXPECT_FALSE(u.on_probe(pass(kT0 + 1s)));
  EXPECT_FALSE(u.on_probe(failure(kT0 + 2s)));
  EXPECT_EQ(u.status(), SystemStatus::up);
}

TEST(HealthTrackerTest, RecoveryNeedsTheSuccessThreshold) {
  HealthTracker t(policy(1, 2), true, SystemStatus::unknown, "", kT0);
  ASSERT_TRUE(t.on_probe(failure(kT0)));
  EXPECT_EQ(t.status(), SystemStatus::down);
  EXPECT_FALSE(t.on_probe(pass(kT0 + 1s)));
  EXPECT_EQ(t.status(), SystemStatus::down);
  auto change = t.on_probe(pass(kT0 + 2s));
  ASSERT_TRUE(change);
  EXPECT_EQ(change->from, SystemStatus::down);
  EXPECT_EQ(change->to, SystemStatus::up);
}

TEST(HealthTrackerTest, SlowOrWarningProbesMakeItDegraded) {
  auto p = policy();
  p.latency_target_ms = 100;
  HealthTracker t(p, true, SystemStatus::unknown, "", kT0);
  ASSERT_TRUE(t.on_probe(pass(kT0, 20ms)));
  auto slow = t.on_probe(pass(kT0 + 1s, 250ms));
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->to, SystemStatus::degraded);
  EXPECT_EQ(slow->reason, "health probe: HTTP 200 in 250.0 ms, over the latency target of 100 ms");
  ASSERT_TRUE(t.on_probe(pass(kT0 + 2s, 20ms)));
  EXPECT_EQ(t.status(), SystemStatus::up);
  auto warn = pass(kT0 + 3s);
  warn.warn = true;
  ASSERT_TRUE(t.on_probe(warn));
  EXPECT_EQ(t.status(), SystemStatus::degraded);
}

TEST(HealthTrackerTest, AStoredStatusStaysUntilACheckKnows) {
  HealthTracker t(policy(3), true, SystemStatus::down, "health probe: HTTP 500", kT0);
  EXPECT_FALSE(t.on_probe(failure(kT0)));
  EXPECT_EQ(t.status(), SystemStatus::down);
  EXPECT_EQ(t.reason(), "health probe: HTTP 500");
}

TEST(HealthTrackerTest, HeartbeatsRefreshTheTtl) {
  auto p = policy();
  p.heartbeat_ttl = 10s;
  HealthTracker t(p, false, SystemStatus::unknown, "", kT0);
  EXPECT_EQ(t.heartbeat_expires(), kT0 + 10s);
  auto up = t.on_heartbeat(kT0 + 2s, std::nullopt, "");
  ASSERT_TRUE(up);
  EXPECT_EQ(up->to, SystemStatus::up);
  EXPECT_EQ(t.heartbeat_expires(), kT0 + 12s);
  EXPECT_FALSE(t.on_tick(kT0 + 11s));
  auto lapsed = t.on_tick(kT0 + 12s);
  ASSERT_TRUE(lapsed);
  EXPECT_EQ(lapsed->to, SystemStatus::down);
  EXPECT_EQ(lapsed->reason, "heartbeat: none since " + format_rfc3339(kT0 + 2s) + " (TTL 10 s)");
  EXPECT_FALSE(t.on_tick(kT0 + 20s));  // once
  auto back = t.on_heartbeat(kT0 + 21s, SystemStatus::degraded, "disk 95% full");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->to, SystemStatus::degraded);
  EXPECT_EQ(back->reason, "heartbeat: reports degraded: disk 95% full");
}

TEST(HealthTrackerTest, DeclaredTtlWithoutAnyHeartbeatLapses) {
  auto p = policy();
  p.heartbeat_ttl = 5s;
  HealthTracker t(p, false, SystemStatus::unknown, "", kT0);
  auto lapsed = t.on_tick(kT0 + 5s);
  ASSERT_TRUE(lapsed);
  EXPECT_EQ(lapsed->reason, "heartbeat: none within the TTL of 5 s");
}

TEST(HealthTrackerTest, UndeclaredHeartbeatsStartTheCheckWithTheDefaultTtl) {
  auto p = policy();
  p.default_heartbeat_ttl = 30s;
  HealthTracker t(p, false, SystemStatus::unknown, "", kT0);
  EXPECT_FALSE(t.heartbeat_expires());
  ASSERT_TRUE(t.on_heartbeat(kT0, std::nullopt, ""));
  EXPECT_EQ(t.heartbeat_expires(), kT0 + 30s);
}

TEST(HealthTrackerTest, TheWorseCheckDecides) {
  auto p = policy(1);
  p.heartbeat_ttl = 60s;
  HealthTracker t(p, true, SystemStatus::unknown, "", kT0);
  ASSERT_TRUE(t.on_heartbeat(kT0, std::nullopt, ""));
  EXPECT_EQ(t.status(), SystemStatus::up);
  auto down = t.on_probe(failure(kT0 + 1s, "timed out after 5000 ms"));
  ASSERT_TRUE(down);
  EXPECT_EQ(down->to, SystemStatus::down);
  EXPECT_EQ(down->reason, "health probe: timed out after 5000 ms (1 failure in a row)");
  EXPECT_FALSE(t.on_heartbeat(kT0 + 2s, std::nullopt, ""));  // the probe still says down
}

StatusHistoryEntry entry(Timestamp at, SystemStatus s) {
  return {0, at, s, ""};
}

TEST(SlaTest, AvailabilityIsTheShareOfMonitoredTimeNotDown) {
  const std::vector<StatusHistoryEntry> history{entry(kT0 + 10s, SystemStatus::up),
                                                entry(kT0 + 70s, SystemStatus::down),
                                                entry(kT0 + 80s, SystemStatus::degraded)};
  // Window [kT0, kT0+110s]: unknown until 10 s (not counted), up 60 s, down 10 s, degraded 30 s.
  auto r = evaluate_sla(kT0, kT0 + 110s, std::nullopt, history, {}, 99.0, std::nullopt);
  EXPECT_EQ(r.monitored, 100s);
  ASSERT_TRUE(r.availability_percent);
  EXPECT_DOUBLE_EQ(*r.availability_percent, 90.0);
  EXPECT_EQ(r.availability_met, std::optional(false));
  EXPECT_FALSE(r.latency_met);

  // The status in force before the window counts from the window's start.
  auto later =
      evaluate_sla(kT0 + 75s, kT0 + 85s, history[1], std::span(history).subspan(2), {}, 50.0, std::nullopt);
  EXPECT_DOUBLE_EQ(*later.availability_percent, 50.0);
  EXPECT_EQ(later.availability_met, std::optional(true));

  auto nothing = evaluate_sla(kT0, kT0 + 1s, std::nullopt, {}, {}, 99.0, std::nullopt);
  EXPECT_FALSE(nothing.availability_percent);
  EXPECT_FALSE(nothing.availability_met);
}

TEST(SlaTest, LatencyPercentilesOfAnsweredProbes) {
  std::vector<ProbeSample> samples;
  for (int i = 1; i <= 100; ++i) samples.push_back({kT0 + std::chrono::seconds(i), true, i * 1ms});
  samples.push_back({kT0 + 101s, false, 0us});
  samples.push_back({kT0 + 500s, true, 1000ms});  // outside the window
  auto r = evaluate_sla(kT0, kT0 + 200s, std::nullopt, {}, samples, std::nullopt, 95.0);
  EXPECT_EQ(r.probes, 101u);
  EXPECT_EQ(r.failed_probes, 1u);
  EXPECT_EQ(r.p50_ms, std::optional(50.0));
  EXPECT_EQ(r.p95_ms, std::optional(95.0));
  EXPECT_EQ(r.p99_ms, std::optional(99.0));
  EXPECT_EQ(r.latency_met, std::optional(false));
  const auto json = to_json(r);
  EXPECT_EQ(json.at("latency").at("p99_ms").as_double(), 99.0);
  EXPECT_TRUE(json.at("availability").at("measured_percent").is_null());
}

}  // namespace
}  // namespace twinbridge::core
