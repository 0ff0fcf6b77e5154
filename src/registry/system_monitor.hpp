#pragma once
// SystemMonitor: the status and performance of every registered system (FGMV-29 8.2.1 / 8.3.1), for both
// kinds. It probes each declared health URL on the system's interval (bounded in time and response size,
// through connect::HttpClient), takes heartbeats, lapses heartbeats whose TTL passed, and turns what it sees
// into a status with core::HealthTracker. Probe samples and status changes are written to the store (the
// status history and the SLA report read them back); each durable status change is passed to the listener
// (the HTTP layer publishes it as an event).
//
// Probes run on the monitor's own thread and io_context, never on the API's I/O threads; at most
// `max_concurrent_probes` are in flight. A system is probed again `interval` after its previous probe
// started, never while one is in flight. A status change is written at once (with its sample); samples
// without a change are written together on the next tick (one write for all). A write racing a
// deregistration is dropped by the store
// (not_found), so a deregistered system never comes back through the monitor.
//
// Every node probes every system it knows; when several nodes share a store (scale-out), probing will be
// assigned to one node per system.
//
// Thread-safety: every public method may be called from any thread; the listener runs on the store's writer
// thread and must not block.

#include <boost/json/object.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "connect/http_client.hpp"
#include "core/health.hpp"
#include "core/system.hpp"
#include "store/change_feed.hpp"

namespace boost::asio {
class io_context;
}

namespace twinbridge::registry {

struct MonitorSettings {
  bool enabled = true;           // false: no probes and no TTL lapses (heartbeats still count)
  core::MonitorPolicy defaults;  // for registrations that do not say otherwise
  std::chrono::milliseconds min_interval{1'000};  // a registration's interval is raised to this
  std::chrono::milliseconds max_timeout{30'000};  // and its timeout lowered to this
  std::size_t max_response_body = 64 * 1024;      // a larger health response fails the probe
  std::size_t max_concurrent_probes = 64;
  std::size_t history_limit = 1'000;           // status changes kept per system
  std::chrono::seconds sla_window{24 * 3600};  // probe samples kept, and the longest SLA window
  std::chrono::milliseconds tick{250};  // how often due probes and TTLs are looked at (at most min_interval)
  connect::HttpClientOptions client;
};

// Observes probes and durable status changes for metrics; called from the monitor's and the store's threads.
class MonitorObserver {
 public:
  virtual ~MonitorObserver() = default;
  virtual void on_probe(core::SystemKind kind, bool passed, std::chrono::microseconds latency) = 0;
  virtual void on_status_change(core::SystemKind kind, core::SystemStatus to) = 0;
};

// What the monitor knows of one system now.
struct MonitoredSystem {
  core::SystemKind kind = core::SystemKind::third_party;
  std::string id;
  core::SystemStatus status = core::SystemStatus::unknown;
  std::string reason;
  core::Timestamp since{};
  core::MonitorPolicy policy;  // with the health URL
  core::CheckState probe;
  core::CheckState heartbeat;
  std::optional<core::Timestamp> heartbeat_expires;
};

boost::json::object to_json(const MonitoredSystem& system);

class SystemMonitor final : public store::ChangeConsumer {
 public:
  SystemMonitor(store::Store& store, const core::Clock& clock, MonitorSettings settings,
                MonitorObserver* observer = nullptr);
  ~SystemMonitor() override;
  SystemMonitor(const SystemMonitor&) = delete;
  SystemMonitor& operator=(const SystemMonitor&) = delete;

  // Loads every registered system from the store and starts probing. Errors: the store's.
  core::Result<void> start();
  // Stops probing; probes in flight are abandoned (nothing of them is written).
  void stop();

  // Follows the change feed: systems registered, changed (their health URL and policy are read again) and
  // deregistered.
  void apply(std::span<const store::ChangePtr> changes) override;

  // Watches `record` (a registration the monitor has not heard of yet): (re)reads its health URL and policy.
  void track(const core::SystemRecord& record);
  void forget(core::SystemKind kind, const std::string& id);

  // A heartbeat from the system: refreshes its TTL; `reported` is the status it reports of itself (up when
  // absent). `done` runs once a change of status it caused is durable, with the system's state. not_found
  // when the monitor does not know the system.
  void heartbeat(core::SystemKind kind, const std::string& id, std::optional<core::SystemStatus> reported,
                 std::string note, store::Completion<MonitoredSystem> done);

  std::optional<MonitoredSystem> status(core::SystemKind kind, const std::string& id) const;

  // Service-level compliance of the last `window` (at most the kept sla_window), from the store.
  core::Result<core::SlaReport> sla(core::SystemKind kind, const std::string& id,
                                    std::chrono::seconds window) const;

  const MonitorSettings& settings() const { return settings_; }

 private:
  struct Entry;
  using Key = std::pair<core::SystemKind, std::string>;

  void schedule_tick();
  void on_tick();
  void launch_probe(const Key& key, Entry& entry, std::chrono::steady_clock::time_point now);
  void on_probe_done(const Key& key, std::uint64_t generation, core::ProbeResult result);
  // Writes the sample and the change (the change feed carries the change once it is durable).
  void record(const Key& key, std::optional<core::ProbeSample> sample,
              std::optional<core::StatusChange> change, store::Completion<void> done = nullptr);
  MonitoredSystem view(const Key& key, const Entry& entry) const;
  void flush_samples();

  store::Store& store_;
  const core::Clock& clock_;
  MonitorSettings settings_;
  MonitorObserver* observer_;

  mutable std::mutex mutex_;
  std::map<Key, std::unique_ptr<Entry>> entries_;
  std::uint64_t next_generation_ = 1;
  std::minstd_rand random_{std::random_device{}()};  // first-probe spread; under mutex_
  std::size_t in_flight_ = 0;
  std::vector<store::SystemCheck>
      pending_samples_;  // probe samples without a change, written on the next tick
  bool running_ = false;

  std::unique_ptr<boost::asio::io_context> io_;
  std::unique_ptr<connect::HttpClient> client_;
  struct Timer;
  std::unique_ptr<Timer> timer_;
  std::thread thread_;
};

}  // namespace twinbridge::registry
