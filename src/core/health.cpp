#include "core/health.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace twinbridge::core {

namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

int severity(SystemStatus s) {
  switch (s) {
    case SystemStatus::unknown:
      return 0;
    case SystemStatus::up:
      return 1;
    case SystemStatus::degraded:
      return 2;
    case SystemStatus::down:
      return 3;
  }
  return 0;
}

std::optional<double> number(const boost::json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  return v->to_number<double>();
}

milliseconds seconds_to_ms(double seconds) {
  return milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

double to_ms(microseconds us) {
  return static_cast<double>(us.count()) / 1000.0;
}

std::string plural(int n, std::string_view word) {
  return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s");
}

}  // namespace

MonitorPolicy monitor_policy(const boost::json::object& registration, const MonitorPolicy& defaults) {
  MonitorPolicy p = defaults;
  if (const auto* e = registration.if_contains("endpoints"); e != nullptr && e->is_object()) {
    if (const auto* url = e->get_object().if_contains("health_url"); url != nullptr && url->is_string()) {
      p.health_url = std::string(url->get_string());
    }
  }
  if (const auto* m = registration.if_contains("monitoring"); m != nullptr && m->is_object()) {
    const auto& o = m->get_object();
    if (auto v = number(o, "interval_s")) p.interval = seconds_to_ms(*v);
    if (auto v = number(o, "timeout_s")) p.timeout = seconds_to_ms(*v);
    if (auto v = number(o, "failure_threshold")) p.failure_threshold = static_cast<int>(*v);
    if (auto v = number(o, "success_threshold")) p.success_threshold = static_cast<int>(*v);
    if (auto v = number(o, "heartbeat_ttl_s")) p.heartbeat_ttl = seconds_to_ms(*v);
  }
  if (const auto* l = registration.if_contains("service_level"); l != nullptr && l->is_object()) {
    p.latency_target_ms = number(l->get_object(), "latency_ms");
    p.availability_target = number(l->get_object(), "availability");
  }
  p.failure_threshold = std::max(1, p.failure_threshold);
  p.success_threshold = std::max(1, p.success_threshold);
  return p;
}

std::string initial_status_reason(const boost::json::object& registration) {
  const auto p = monitor_policy(registration, MonitorPolicy{});
  return p.health_url || p.heartbeat_ttl ? "not checked yet" : std::string(kNoChecksReason);
}

HealthTracker::HealthTracker(MonitorPolicy policy, bool has_probe, SystemStatus status, std::string reason,
                             Timestamp since)
    : policy_(std::move(policy)), since_(since), status_(status), reason_(std::move(reason)) {
  probe_.active = has_probe;
  probe_.reason = "not probed yet";
  heartbeat_.active = policy_.heartbeat_ttl.has_value();
  heartbeat_.reason = "no heartbeat yet";
  if (!probe_.active && !heartbeat_.active) {
    status_ = SystemStatus::unknown;
    reason_ = kNoChecksReason;
  }
}

std::optional<Timestamp> HealthTracker::heartbeat_expires() const {
  if (!heartbeat_.active) return std::nullopt;
  const auto ttl = policy_.heartbeat_ttl.value_or(policy_.default_heartbeat_ttl);
  return heartbeat_.last.value_or(since_) + duration_cast<microseconds>(ttl);
}

std::optional<StatusChange> HealthTracker::on_probe(const ProbeResult& r) {
  probe_.active = true;
  probe_.last = r.at;
  if (r.ok) {
    probe_.last_latency = r.latency;
    probe_.consecutive_failures = 0;
    ++probe_.consecutive_successes;
    SystemStatus sample = SystemStatus::up;
    std::string why = fmt::format("health probe: {} in {:.1f} ms", r.detail, to_ms(r.latency));
    if (r.warn) {
      sample = SystemStatus::degraded;
      why = fmt::format("health probe: {} reports a warning", r.detail);
    } else if (policy_.latency_target_ms && to_ms(r.latency) > *policy_.latency_target_ms) {
      sample = SystemStatus::degraded;
      why = fmt::format("health probe: {} in {:.1f} ms, over the latency target of {} ms", r.detail,
                        to_ms(r.latency), *policy_.latency_target_ms);
    }
    const bool recovering = probe_.status == SystemStatus::down || probe_.status == SystemStatus::unknown;
    if (!recovering || probe_.consecutive_successes >= policy_.success_threshold) {
      probe_.status = sample;
      probe_.reason = std::move(why);
    } else {
      probe_.reason = fmt::format("health probe: {} of {} passed after failures",
                                  plural(probe_.consecutive_successes, "probe"), policy_.success_threshold);
    }
  } else {
    probe_.last_latency.reset();
    probe_.consecutive_successes = 0;
    ++probe_.consecutive_failures;
    if (probe_.consecutive_failures >= policy_.failure_threshold) {
      probe_.status = SystemStatus::down;
      probe_.reason = fmt::format("health probe: {} ({} in a row)", r.detail,
                                  plural(probe_.consecutive_failures, "failure"));
    } else {
      probe_.reason = fmt::format("health probe: {} ({} of {} failures before down)", r.detail,
                                  probe_.consecutive_failures, policy_.failure_threshold);
    }
  }
  return settle(r.at);
}

std::optional<StatusChange> HealthTracker::on_heartbeat(Timestamp at, std::optional<SystemStatus> reported,
                                                        const std::string& note) {
  heartbeat_.active = true;
  heartbeat_.last = at;
  const auto s = reported.value_or(SystemStatus::up);
  if (s == SystemStatus::up) {
    ++heartbeat_.consecutive_successes;
    heartbeat_.consecutive_failures = 0;
  } else {
    heartbeat_.consecutive_successes = 0;
    ++heartbeat_.consecutive_failures;
  }
  heartbeat_.status = s;
  heartbeat_.reason = note.empty() ? fmt::format("heartbeat: reports {}", to_string(s))
                                   : fmt::format("heartbeat: reports {}: {}", to_string(s), note);
  return settle(at);
}

std::optional<StatusChange> HealthTracker::on_tick(Timestamp now) {
  const auto expires = heartbeat_expires();
  if (expires && now >= *expires && heartbeat_.status != SystemStatus::down) {
    const auto ttl = policy_.heartbeat_ttl.value_or(policy_.default_heartbeat_ttl);
    heartbeat_.status = SystemStatus::down;
    heartbeat_.reason =
        heartbeat_.last ? fmt::format("heartbeat: none since {} (TTL {} s)", format_rfc3339(*heartbeat_.last),
                                      static_cast<double>(ttl.count()) / 1000.0)
                        : fmt::format("heartbeat: none within the TTL of {} s",
                                      static_cast<double>(ttl.count()) / 1000.0);
    return settle(now);
  }
  return std::nullopt;
}

std::optional<StatusChange> HealthTracker::settle(Timestamp at) {
  // The worse check decides; an unknown check does not hide what the other one knows.
  const CheckState* decisive = nullptr;
  for (const auto* c : {&probe_, &heartbeat_}) {
    if (!c->active) continue;
    if (decisive == nullptr || severity(c->status) > severity(decisive->status)) decisive = c;
  }
  // Until a check knows something, the status the system had stays (with its reason).
  if (decisive == nullptr || decisive->status == SystemStatus::unknown) return std::nullopt;
  reason_ = decisive->reason;
  if (decisive->status == status_) return std::nullopt;
  StatusChange change{status_, decisive->status, reason_, at};
  status_ = decisive->status;
  return change;
}

SlaReport evaluate_sla(Timestamp from, Timestamp to, std::optional<StatusHistoryEntry> before,
                       std::span<const StatusHistoryEntry> history, std::span<const ProbeSample> samples,
                       std::optional<double> availability_target, std::optional<double> latency_target_ms) {
  SlaReport r;
  r.from = from;
  r.to = to;
  r.availability_target = availability_target;
  r.latency_target_ms = latency_target_ms;

  // Walk the status segments that overlap [from, to].
  microseconds available{0};
  std::optional<SystemStatus> current;
  Timestamp segment_start = from;
  if (before) current = before->status;
  auto close_segment = [&](Timestamp end) {
    if (!current || end <= segment_start) return;
    const auto length = end - segment_start;
    if (*current == SystemStatus::unknown) return;
    r.monitored += length;
    if (*current != SystemStatus::down) available += length;
  };
  for (const auto& e : history) {
    if (e.at <= from) {
      current = e.status;
      continue;
    }
    if (e.at >= to) break;
    close_segment(e.at);
    current = e.status;
    segment_start = e.at;
  }
  close_segment(to);
  if (r.monitored.count() > 0) {
    r.availability_percent =
        100.0 * static_cast<double>(available.count()) / static_cast<double>(r.monitored.count());
  }

  std::vector<std::int64_t> latencies;
  for (const auto& s : samples) {
    if (s.at < from || s.at > to) continue;
    ++r.probes;
    if (!s.ok) {
      ++r.failed_probes;
      continue;
    }
    latencies.push_back(s.latency.count());
  }
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    auto rank = [&](double q) {
      const auto n = latencies.size();
      const auto idx = static_cast<std::size_t>(std::ceil(q * static_cast<double>(n)));
      return static_cast<double>(latencies[std::clamp<std::size_t>(idx, 1, n) - 1]) / 1000.0;
    };
    r.p50_ms = rank(0.50);
    r.p95_ms = rank(0.95);
    r.p99_ms = rank(0.99);
  }
  if (availability_target && r.availability_percent) {
    r.availability_met = *r.availability_percent >= *availability_target;
  }
  if (latency_target_ms && r.p99_ms) r.latency_met = *r.p99_ms <= *latency_target_ms;
  return r;
}

boost::json::object to_json(const SlaReport& r) {
  auto opt = [](const auto& v) -> boost::json::value {
    if (v) return boost::json::value(*v);
    return nullptr;
  };
  return {
      {"from", format_rfc3339(r.from)},
      {"to", format_rfc3339(r.to)},
      {"availability",
       {{"target_percent", opt(r.availability_target)},
        {"measured_percent", opt(r.availability_percent)},
        {"monitored_seconds", static_cast<double>(r.monitored.count()) / 1e6},
        {"met", opt(r.availability_met)}}},
      {"latency",
       {{"target_p99_ms", opt(r.latency_target_ms)},
        {"p50_ms", opt(r.p50_ms)},
        {"p95_ms", opt(r.p95_ms)},
        {"p99_ms", opt(r.p99_ms)},
        {"met", opt(r.latency_met)}}},
      {"probes", {{"total", r.probes}, {"failed", r.failed_probes}}},
  };
}

}  // namespace twinbridge::core
