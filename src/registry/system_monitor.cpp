#include "registry/system_monitor.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "core/json_reader.hpp"
#include "core/text.hpp"

namespace twinbridge::registry {

using core::Errc;
using std::chrono::steady_clock;

struct SystemMonitor::Entry {
  explicit Entry(core::HealthTracker t) : tracker(std::move(t)) {}
  core::HealthTracker tracker;  // its policy holds the health URL
  core::Timestamp since{};
  std::uint64_t generation = 0;
  steady_clock::time_point next_probe{};
  bool in_flight = false;
};

struct SystemMonitor::Timer {
  explicit Timer(boost::asio::io_context& io) : timer(io) {}
  boost::asio::steady_timer timer;
};

namespace {

double seconds(std::chrono::milliseconds ms) {
  return static_cast<double>(ms.count()) / 1000.0;
}

boost::json::value optional_time(const std::optional<core::Timestamp>& t) {
  if (t) return boost::json::value(core::format_rfc3339(*t));
  return nullptr;
}

// A probe passes on 2xx. When the body is a health document (application/health+json, or any JSON object
// with a string "status"), its status refines that: pass/ok/up pass, warn/degraded warn, fail/down/error
// fail.
core::ProbeResult probe_result(core::Timestamp at, const core::Result<connect::HttpResponse>& r) {
  core::ProbeResult p;
  p.at = at;
  if (!r) {
    p.detail = r.error().detail;
    return p;
  }
  p.latency = r->elapsed;
  p.detail = fmt::format("HTTP {}", r->status);
  p.ok = r->status >= 200 && r->status < 300;
  if (!p.ok || r->header("content-type").find("json") == std::string_view::npos) return p;
  boost::system::error_code ec;
  const auto doc = core::read_json(r->body, ec);
  if (ec || !doc.is_object()) return p;
  const auto* status = doc.get_object().if_contains("status");
  if (status == nullptr || !status->is_string()) return p;
  const std::string_view s = status->get_string();
  if (core::iequals(s, "warn") || core::iequals(s, "degraded")) {
    p.warn = true;
  } else if (core::iequals(s, "fail") || core::iequals(s, "down") || core::iequals(s, "error")) {
    p.ok = false;
    p.detail = fmt::format("HTTP {}, health document says '{}'", r->status, s);
  }
  return p;
}

}  // namespace

boost::json::object to_json(const MonitoredSystem& s) {
  auto check = [](const core::CheckState& c) {
    boost::json::object o{{"active", c.active},
                          {"state", core::to_string(c.status)},
                          {"reason", c.reason},
                          {"last", optional_time(c.last)},
                          {"consecutive_failures", c.consecutive_failures},
                          {"consecutive_successes", c.consecutive_successes}};
    return o;
  };
  auto probe = check(s.probe);
  probe["url"] = s.policy.health_url ? boost::json::value(*s.policy.health_url) : nullptr;
  probe["latency_ms"] = s.probe.last_latency
                            ? boost::json::value(static_cast<double>(s.probe.last_latency->count()) / 1000.0)
                            : nullptr;
  probe["interval_s"] = seconds(s.policy.interval);
  probe["timeout_s"] = seconds(s.policy.timeout);
  probe["failure_threshold"] = s.policy.failure_threshold;
  probe["success_threshold"] = s.policy.success_threshold;
  auto heartbeat = check(s.heartbeat);
  heartbeat["ttl_s"] = seconds(s.policy.heartbeat_ttl.value_or(s.policy.default_heartbeat_ttl));
  heartbeat["expires"] = optional_time(s.heartbeat_expires);
  return {{"id", s.id},
          {"kind", core::to_string(s.kind)},
          {"state", core::to_string(s.status)},
          {"reason", s.reason},
          {"since", core::format_rfc3339(s.since)},
          {"checks", {{"probe", std::move(probe)}, {"heartbeat", std::move(heartbeat)}}}};
}

SystemMonitor::SystemMonitor(store::Store& store, const core::Clock& clock, MonitorSettings settings,
                             MonitorObserver* observer)
    : store_(store),
      clock_(clock),
      settings_(std::move(settings)),
      observer_(observer),
      io_(std::make_unique<boost::asio::io_context>(1)),
      client_(std::make_unique<connect::HttpClient>(*io_, settings_.client)),
      timer_(std::make_unique<Timer>(*io_)) {
  // Look often enough for the shortest interval a registration may ask for.
  settings_.tick = std::min(settings_.tick, settings_.min_interval);
}

SystemMonitor::~SystemMonitor() {
  stop();
  // Abandoned probes are coroutine frames owned by the io_context: destroy them while the client lives.
  timer_.reset();
  io_.reset();
  client_.reset();
}

void SystemMonitor::apply(std::span<const store::ChangePtr> changes) {
  for (const auto& c : changes) {
    if ((c->type == store::ChangeType::system_created || c->type == store::ChangeType::system_updated) &&
        c->system) {
      track(*c->system);
    } else if (c->type == store::ChangeType::system_deleted) {
      forget(c->system_kind, c->subject);
    }
  }
}

core::Result<void> SystemMonitor::start() {
  for (const auto kind : {core::SystemKind::third_party, core::SystemKind::twin}) {
    store::SystemQuery q;
    q.kind = kind;
    q.limit = 1000;
    for (;;) {
      auto page = store_.systems(q);
      if (!page) return std::unexpected(page.error());
      for (const auto& r : page->items) track(r);
      if (!page->next_after) break;
      q.after = *page->next_after;
    }
  }
  {
    std::lock_guard lock(mutex_);
    if (running_) return {};
    running_ = true;
  }
  schedule_tick();
  thread_ = std::thread([this] { io_->run(); });
  return {};
}

void SystemMonitor::stop() {
  {
    std::lock_guard lock(mutex_);
    running_ = false;
    flush_samples();
  }
  if (io_) io_->stop();
  if (thread_.joinable()) thread_.join();
}

void SystemMonitor::track(const core::SystemRecord& r) {
  auto policy = core::monitor_policy(r.body, settings_.defaults);
  policy.interval = std::max(policy.interval, settings_.min_interval);
  policy.timeout = std::min(policy.timeout, settings_.max_timeout);
  const Key key{r.kind, r.id};
  const auto now = clock_.now();
  std::lock_guard lock(mutex_);
  auto& slot = entries_[key];
  auto status = r.status;
  auto reason = r.status_reason;
  auto since = r.status_since;
  // A system seen for the first time is probed within its first interval, at a random point of it (at most
  // 10 s in): many registrations at once (or a restart with many systems) spread their probes out.
  const auto spread = std::min<std::chrono::milliseconds>(policy.interval, std::chrono::seconds(10));
  auto next_probe =
      steady_clock::now() + std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(
                                0, std::max<std::int64_t>(0, spread.count() - 1))(random_));
  if (slot) {
    status = slot->tracker.status();
    reason = slot->tracker.reason();
    since = slot->since;
    if (slot->tracker.policy().health_url == policy.health_url) next_probe = slot->next_probe;
  }
  auto entry = std::make_unique<Entry>(
      core::HealthTracker(policy, policy.health_url.has_value(), status, reason, now));
  entry->since = since;
  entry->generation = next_generation_++;
  entry->next_probe = next_probe;
  std::optional<core::StatusChange> change;
  if (entry->tracker.status() != status) {
    change = core::StatusChange{status, entry->tracker.status(), entry->tracker.reason(), now};
    entry->since = now;
  }
  slot = std::move(entry);
  if (change) record(key, std::nullopt, std::move(change));
}

void SystemMonitor::forget(core::SystemKind kind, const std::string& id) {
  std::lock_guard lock(mutex_);
  entries_.erase(Key{kind, id});
}

void SystemMonitor::heartbeat(core::SystemKind kind, const std::string& id,
                              std::optional<core::SystemStatus> reported, std::string note,
                              store::Completion<MonitoredSystem> done) {
  const Key key{kind, id};
  std::unique_lock lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    lock.unlock();
    done(core::fail(Errc::not_found, fmt::format("{} '{}' does not exist", core::to_string(kind), id)));
    return;
  }
  auto& entry = *it->second;
  auto change = entry.tracker.on_heartbeat(clock_.now(), reported, note);
  if (change) entry.since = change->at;
  auto state = view(key, entry);
  if (!change) {
    lock.unlock();
    done(std::move(state));
    return;
  }
  record(key, std::nullopt, std::move(change),
         [done = std::move(done), state = std::move(state)](core::Result<void> r) mutable {
           if (!r) {
             done(std::unexpected(r.error()));
           } else {
             done(std::move(state));
           }
         });
}

std::optional<MonitoredSystem> SystemMonitor::status(core::SystemKind kind, const std::string& id) const {
  const Key key{kind, id};
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return view(key, *it->second);
}

MonitoredSystem SystemMonitor::view(const Key& key, const Entry& e) const {
  MonitoredSystem s;
  s.kind = key.first;
  s.id = key.second;
  s.status = e.tracker.status();
  s.reason = e.tracker.reason();
  s.since = e.since;
  s.policy = e.tracker.policy();
  s.probe = e.tracker.probe();
  s.heartbeat = e.tracker.heartbeat();
  s.heartbeat_expires = e.tracker.heartbeat_expires();
  return s;
}

core::Result<core::SlaReport> SystemMonitor::sla(core::SystemKind kind, const std::string& id,
                                                 std::chrono::seconds window) const {
  const auto state = status(kind, id);
  if (!state)
    return core::fail(Errc::not_found, fmt::format("{} '{}' does not exist", core::to_string(kind), id));
  window = std::min(window, settings_.sla_window);
  const auto to = clock_.now();
  const auto from = to - std::chrono::duration_cast<std::chrono::microseconds>(window);
  auto before = store_.status_before(kind, id, from);
  if (!before) return std::unexpected(before.error());
  std::vector<core::StatusHistoryEntry> history;
  store::StatusHistoryQuery q;
  q.kind = kind;
  q.id = id;
  q.since = from;
  q.limit = 1000;
  for (;;) {
    auto page = store_.status_history(q);
    if (!page) return std::unexpected(page.error());
    std::move(page->items.begin(), page->items.end(), std::back_inserter(history));
    if (!page->next_after) break;
    q.after_seq = std::stoll(*page->next_after);
  }
  auto samples = store_.probe_samples(kind, id, from, to);
  if (!samples) return std::unexpected(samples.error());
  return core::evaluate_sla(from, to, *before, history, *samples, state->policy.availability_target,
                            state->policy.latency_target_ms);
}

void SystemMonitor::schedule_tick() {
  timer_->timer.expires_after(settings_.tick);
  timer_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    on_tick();
    schedule_tick();
  });
}

void SystemMonitor::on_tick() {
  const auto now = steady_clock::now();
  const auto at = clock_.now();
  std::vector<std::pair<Key, connect::HttpRequest>> probes;
  std::vector<std::uint64_t> generations;
  {
    std::lock_guard lock(mutex_);
    if (!running_ || !settings_.enabled) return;
    flush_samples();
    for (auto& [key, entry] : entries_) {
      if (auto change = entry->tracker.on_tick(at)) {
        entry->since = change->at;
        record(key, std::nullopt, std::move(change));
      }
      const auto& policy = entry->tracker.policy();
      if (!policy.health_url || entry->in_flight || entry->next_probe > now ||
          in_flight_ >= settings_.max_concurrent_probes) {
        continue;
      }
      entry->in_flight = true;
      ++in_flight_;
      entry->next_probe = now + policy.interval;
      connect::HttpRequest req;
      req.url = *policy.health_url;
      req.headers = {{"Accept", "application/health+json, application/json;q=0.9, */*;q=0.5"}};
      req.timeout = policy.timeout;
      req.max_response_body = settings_.max_response_body;
      probes.emplace_back(key, std::move(req));
      generations.push_back(entry->generation);
    }
  }
  // Started outside the lock: a call that fails at once completes inline.
  for (std::size_t i = 0; i < probes.size(); ++i) {
    client_->send(std::move(probes[i].second), [this, key = probes[i].first, generation = generations[i],
                                                at](core::Result<connect::HttpResponse> r) {
      on_probe_done(key, generation, probe_result(at, r));
    });
  }
}

void SystemMonitor::on_probe_done(const Key& key, std::uint64_t generation, core::ProbeResult result) {
  if (observer_ != nullptr) observer_->on_probe(key.first, result.ok, result.latency);
  std::lock_guard lock(mutex_);
  --in_flight_;
  auto it = entries_.find(key);
  if (!running_ || it == entries_.end() || it->second->generation != generation) return;
  auto& entry = *it->second;
  entry.in_flight = false;
  auto change = entry.tracker.on_probe(result);
  const core::ProbeSample sample{result.at, result.ok, result.latency};
  if (change) {
    entry.since = change->at;
    record(key, sample, std::move(change));
    return;
  }
  // A sample without a change waits for the next tick, which writes all waiting samples in one write.
  store::SystemCheck check;
  check.kind = key.first;
  check.id = key.second;
  check.probe = sample;
  check.keep_probes_since =
      sample.at - std::chrono::duration_cast<std::chrono::microseconds>(settings_.sla_window);
  check.keep_history = settings_.history_limit;
  pending_samples_.push_back(std::move(check));
}

// Called with mutex_ held.
void SystemMonitor::flush_samples() {
  if (pending_samples_.empty()) return;
  std::vector<store::SystemCheck> batch;
  batch.swap(pending_samples_);
  store_.record_system_checks(std::move(batch), [](core::Result<void> r) {
    if (!r) spdlog::warn("monitor: cannot record probe samples: {}", r.error().detail);
  });
}

// Called with mutex_ held, so that the writes of one system reach the store in the order of its changes.
// The completion must not take mutex_: the store may complete inline (when it refuses the write).
void SystemMonitor::record(const Key& key, std::optional<core::ProbeSample> sample,
                           std::optional<core::StatusChange> change, store::Completion<void> done) {
  store::SystemCheck check;
  check.kind = key.first;
  check.id = key.second;
  check.probe = sample;
  check.change = change;
  check.keep_probes_since =
      clock_.now() - std::chrono::duration_cast<std::chrono::microseconds>(settings_.sla_window);
  check.keep_history = settings_.history_limit;
  const auto generation = entries_.at(key)->generation;
  store_.record_system_check(std::move(check), [this, key, generation, change = std::move(change),
                                                done = std::move(done)](core::Result<void> r) mutable {
    if (!r) {
      if (r.error().code == Errc::not_found) {
        // Deregistered meanwhile: stop watching it, unless it was registered again since (on the
        // monitor's thread, never under the caller's lock).
        boost::asio::post(*io_, [this, key, generation] {
          std::lock_guard lock(mutex_);
          if (auto it = entries_.find(key); it != entries_.end() && it->second->generation == generation) {
            entries_.erase(it);
          }
        });
      } else {
        spdlog::warn("monitor: cannot record the status of {} '{}': {}", core::to_string(key.first),
                     key.second, r.error().detail);
      }
    } else if (change) {
      if (observer_ != nullptr) observer_->on_status_change(key.first, change->to);
    }
    if (done) done(std::move(r));
  });
}

}  // namespace twinbridge::registry
