#pragma once
// Prometheus metrics of the server (prometheus-cpp registry, text exposition format 0.0.4):
//   twinbridge_http_requests_total{route,method,status}            counter
//   twinbridge_http_request_duration_seconds{route,method,status}  histogram
//   twinbridge_http_open_connections                               gauge
//   twinbridge_http_connections_total / _rejected_total            counters
//   twinbridge_store_read_duration_seconds{operation}              histogram
//   twinbridge_store_commit_duration_seconds                       histogram
//   twinbridge_store_commit_writes                                 histogram (writes per group commit)
//   twinbridge_monitor_probes_total{kind,result}                   counter (health probes, pass or fail)
//   twinbridge_monitor_probe_duration_seconds{kind}                histogram (answered probes)
//   twinbridge_monitor_status_changes_total{kind,to}               counter
//   twinbridge_query_jobs{state}                                   gauge (jobs of the worker pool: running,
//                                                                  queued; set when /metrics is read)
//   twinbridge_queries_stopped_total{limit}                        counter (queries over their budget, or
//                                                                  whose client went away: limit="cancelled")
// Later parts add their families through registry(), or, for figures read when /metrics is rendered, through
// add_source(). Thread-safe.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/message.hpp"
#include "query/budget.hpp"
#include "registry/system_monitor.hpp"
#include "store/store.hpp"

namespace twinbridge::http {

class Metrics final : public store::StoreObserver, public registry::MonitorObserver {
 public:
  Metrics();

  // `route` must outlive the Metrics (route patterns of the router, or string literals): it keys a cache by
  // address.
  void observe_request(std::string_view route, Method method, int status, std::chrono::nanoseconds latency);
  void connection_opened();
  void connection_closed();
  void connection_rejected();

  void on_read(std::string_view operation, std::chrono::nanoseconds latency) override;
  void on_commit(std::size_t writes, std::chrono::nanoseconds latency) override;
  void on_probe(core::SystemKind kind, bool passed, std::chrono::microseconds latency) override;
  void on_status_change(core::SystemKind kind, core::SystemStatus to) override;
  void query_stopped(query::BudgetLimit limit);
  void query_jobs(std::size_t running, std::size_t queued);

  std::string render() const;
  prometheus::Registry& registry() { return *registry_; }
  // Families read at every render() (e.g. MqttSync::metric_families). `source` must stay valid while the
  // metrics are rendered: the server that serves /metrics stops first.
  void add_source(std::function<std::vector<prometheus::MetricFamily>()> source);

 private:
  struct Key {
    const char* route;
    int method;
    int status;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const {
      return std::hash<const void*>()(k.route) ^ (static_cast<std::size_t>(k.method) << 20) ^
             static_cast<std::size_t>(k.status);
    }
  };
  struct Series {
    prometheus::Counter* count;
    prometheus::Histogram* latency;
  };

  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex sources_mutex_;
  std::vector<std::function<std::vector<prometheus::MetricFamily>()>> sources_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_latency_;
  prometheus::Gauge& open_connections_;
  prometheus::Counter& connections_total_;
  prometheus::Counter& connections_rejected_;
  prometheus::Family<prometheus::Histogram>& store_reads_;
  prometheus::Histogram& store_commit_latency_;
  prometheus::Histogram& store_commit_writes_;
  // By kind (0 third-party, 1 twin), then result (0 fail, 1 pass) or status (SystemStatus order).
  prometheus::Counter* probes_[2][2];
  prometheus::Histogram* probe_latency_[2];
  prometheus::Counter* status_changes_[2][4];
  prometheus::Family<prometheus::Counter>& queries_stopped_;
  prometheus::Gauge* query_jobs_running_;
  prometheus::Gauge* query_jobs_queued_;

  mutable std::shared_mutex mutex_;
  std::unordered_map<Key, Series, KeyHash> series_;
  std::unordered_map<std::string, prometheus::Histogram*> read_series_;
};

}  // namespace twinbridge::http
