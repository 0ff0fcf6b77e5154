#pragma once
// Status and performance of registered systems (FGMV-29 8.2.1 / 8.3.1 "statuses and performance"), without
// I/O: how the results of active health probes and heartbeats become a status (up, degraded, down, unknown)
// with its reason, and how a service-level report is computed from the kept probe samples and status history.
//
// A system has up to two checks. The probe check exists when it declares a health URL: `failure_threshold`
// consecutive failed probes make it down, `success_threshold` consecutive passing probes bring it back up,
// and a probe slower than the declared latency target (or a health document saying "warn") makes it
// degraded. The heartbeat check exists when the system declares a heartbeat TTL or sends a heartbeat: a
// system that has not sent one within the TTL is down. The status is the worse of the two checks; with no
// check at all it is unknown. HealthTracker is a plain value: not thread-safe, the caller serializes.

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "core/error.hpp"
#include "core/system.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

// How one system is watched. Server defaults come from configuration; a registration's `monitoring` member
// overrides them (see monitor_policy()).
struct MonitorPolicy {
  std::optional<std::string> health_url;  // endpoints.health_url: the probe check runs when it is declared
  std::chrono::milliseconds interval{30'000};
  std::chrono::milliseconds timeout{5'000};
  int failure_threshold = 3;
  int success_threshold = 1;
  std::optional<std::chrono::milliseconds>
      heartbeat_ttl;  // declared: the heartbeat check runs from the start
  std::chrono::milliseconds default_heartbeat_ttl{90'000};  // for systems that send heartbeats undeclared
  std::optional<double> latency_target_ms;                  // service_level.latency_ms
  std::optional<double> availability_target;                // service_level.availability, percent
};

// The policy of a registered system: `defaults` with the registration's monitoring members and service level
// applied. The registration was validated by its schema, so the members have the right types and ranges.
MonitorPolicy monitor_policy(const boost::json::object& registration, const MonitorPolicy& defaults);

// The outcome of one probe of a health URL.
struct ProbeResult {
  Timestamp at{};
  bool ok = false;    // answered 2xx in time (and a health document, if any, did not say "fail")
  bool warn = false;  // answered, but its health document says "warn"
  std::chrono::microseconds latency{0};
  std::string detail;  // what happened: "HTTP 200", "HTTP 503", "timed out after 5000 ms", ...
};

struct StatusChange {
  SystemStatus from = SystemStatus::unknown;
  SystemStatus to = SystemStatus::unknown;
  std::string reason;
  Timestamp at{};
};

// What a check currently says, for the status document.
struct CheckState {
  bool active = false;
  SystemStatus status = SystemStatus::unknown;
  std::string reason;
  std::optional<Timestamp> last;  // last probe or heartbeat
  int consecutive_failures = 0;
  int consecutive_successes = 0;
  std::optional<std::chrono::microseconds> last_latency;
};

class HealthTracker {
 public:
  // `has_probe`: the system declares a health URL. `status` is the status it had (from the store), kept
  // until a check decides otherwise; `since` is when the tracking starts (the heartbeat TTL counts from it).
  HealthTracker(MonitorPolicy policy, bool has_probe, SystemStatus status, std::string reason,
                Timestamp since);

  // Each returns the change of status it causes, if any.
  std::optional<StatusChange> on_probe(const ProbeResult& result);
  // `reported`: the status the system reports of itself (up when absent); `note`: its own words.
  std::optional<StatusChange> on_heartbeat(Timestamp at, std::optional<SystemStatus> reported,
                                           const std::string& note);
  // Lapses a heartbeat whose TTL has passed.
  std::optional<StatusChange> on_tick(Timestamp now);

  SystemStatus status() const { return status_; }
  const std::string& reason() const { return reason_; }
  const MonitorPolicy& policy() const { return policy_; }
  const CheckState& probe() const { return probe_; }
  const CheckState& heartbeat() const { return heartbeat_; }
  std::optional<Timestamp> heartbeat_expires() const;

 private:
  std::optional<StatusChange> settle(Timestamp at);

  MonitorPolicy policy_;
  Timestamp since_;
  CheckState probe_;
  CheckState heartbeat_;
  SystemStatus status_;
  std::string reason_;
};

// Why a system just registered is unknown: it has checks that have not run yet, or none at all.
inline constexpr std::string_view kNoChecksReason = "no health URL and no heartbeat TTL declared";
std::string initial_status_reason(const boost::json::object& registration);

// One kept probe sample.
struct ProbeSample {
  Timestamp at{};
  bool ok = false;
  std::chrono::microseconds latency{0};
};

// One kept change of status.
struct StatusHistoryEntry {
  std::int64_t seq = 0;
  Timestamp at{};
  SystemStatus status = SystemStatus::unknown;
  std::string reason;
};

// Service-level compliance over [from, to].
struct SlaReport {
  Timestamp from{};
  Timestamp to{};
  // Availability: the share of the monitored time (up, degraded or down; unknown does not count) in which
  // the system was up or degraded, from the status history. nullopt when no time was monitored.
  std::optional<double> availability_percent;
  std::chrono::microseconds monitored{0};
  // Latency of answered probes (nearest-rank percentiles), and how many probes there were.
  std::size_t probes = 0;
  std::size_t failed_probes = 0;
  std::optional<double> p50_ms, p95_ms, p99_ms;
  std::optional<double> availability_target, latency_target_ms;
  std::optional<bool> availability_met, latency_met;  // nullopt: no target, or nothing measured
};

// `history` in seq order; `before` is the status in force at `from` (the last change before the window),
// if known. `samples` are the probes within the window.
SlaReport evaluate_sla(Timestamp from, Timestamp to, std::optional<StatusHistoryEntry> before,
                       std::span<const StatusHistoryEntry> history, std::span<const ProbeSample> samples,
                       std::optional<double> availability_target, std::optional<double> latency_target_ms);

boost::json::object to_json(const SlaReport& report);

}  // namespace twinbridge::core
