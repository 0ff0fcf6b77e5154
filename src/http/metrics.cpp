#include "http/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <mutex>
#include <sstream>

namespace twinbridge::http {

namespace {

const prometheus::Histogram::BucketBoundaries& latency_buckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
  return kBuckets;
}

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("twinbridge_http_requests_total")
                    .Help("HTTP requests answered, by route pattern, method and status")
                    .Register(*registry_)),
      request_latency_(prometheus::BuildHistogram()
                           .Name("twinbridge_http_request_duration_seconds")
                           .Help("Time from a complete request to its response, by route, method and status")
                           .Register(*registry_)),
      open_connections_(prometheus::BuildGauge()
                            .Name("twinbridge_http_open_connections")
                            .Help("HTTP connections open now")
                            .Register(*registry_)
                            .Add({})),
      connections_total_(prometheus::BuildCounter()
                             .Name("twinbridge_http_connections_total")
                             .Help("HTTP connections accepted")
                             .Register(*registry_)
                             .Add({})),
      connections_rejected_(
          prometheus::BuildCounter()
              .Name("twinbridge_http_connections_rejected_total")
              .Help("HTTP connections closed at once because the connection limit was reached")
              .Register(*registry_)
              .Add({})),
      store_reads_(prometheus::BuildHistogram()
                       .Name("twinbridge_store_read_duration_seconds")
                       .Help("Store read latency by operation")
                       .Register(*registry_)),
      store_commit_latency_(prometheus::BuildHistogram()
                                .Name("twinbridge_store_commit_duration_seconds")
                                .Help("Latency of one group commit (transaction with fsync)")
                                .Register(*registry_)
                                .Add({}, latency_buckets())),
      store_commit_writes_(
          prometheus::BuildHistogram()
              .Name("twinbridge_store_commit_writes")
              .Help("Writes committed together in one group commit")
              .Register(*registry_)
              .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})),
      queries_stopped_(prometheus::BuildCounter()
                           .Name("twinbridge_queries_stopped_total")
                           .Help("Queries stopped before their answer: over a limit of their budget, or "
                                 "because the client went away (limit=\"cancelled\")")
                           .Register(*registry_)) {
  auto& jobs = prometheus::BuildGauge()
                   .Name("twinbridge_query_jobs")
                   .Help("Jobs of the query worker pool, running and queued")
                   .Register(*registry_);
  query_jobs_running_ = &jobs.Add({{"state", "running"}});
  query_jobs_queued_ = &jobs.Add({{"state", "queued"}});
  auto& probes = prometheus::BuildCounter()
                     .Name("twinbridge_monitor_probes_total")
                     .Help("Health probes of registered systems, by kind and result")
                     .Register(*registry_);
  auto& probe_latency = prometheus::BuildHistogram()
                            .Name("twinbridge_monitor_probe_duration_seconds")
                            .Help("Time of answered health probes, connect to last byte, by kind")
                            .Register(*registry_);
  auto& changes = prometheus::BuildCounter()
                      .Name("twinbridge_monitor_status_changes_total")
                      .Help("Durable changes of systems' status, by kind and new status")
                      .Register(*registry_);
  for (const auto kind : {core::SystemKind::third_party, core::SystemKind::twin}) {
    const auto k = static_cast<std::size_t>(kind);
    const std::string name(core::to_string(kind));
    probes_[k][0] = &probes.Add({{"kind", name}, {"result", "fail"}});
    probes_[k][1] = &probes.Add({{"kind", name}, {"result", "pass"}});
    probe_latency_[k] = &probe_latency.Add({{"kind", name}}, latency_buckets());
    for (const auto s : {core::SystemStatus::unknown, core::SystemStatus::up, core::SystemStatus::degraded,
                         core::SystemStatus::down}) {
      status_changes_[k][static_cast<std::size_t>(s)] =
          &changes.Add({{"kind", name}, {"to", std::string(core::to_string(s))}});
    }
  }
}

void Metrics::on_probe(core::SystemKind kind, bool passed, std::chrono::microseconds latency) {
  const auto k = static_cast<std::size_t>(kind);
  probes_[k][passed ? 1 : 0]->Increment();
  if (passed) probe_latency_[k]->Observe(seconds(latency));
}

void Metrics::on_status_change(core::SystemKind kind, core::SystemStatus to) {
  status_changes_[static_cast<std::size_t>(kind)][static_cast<std::size_t>(to)]->Increment();
}

void Metrics::query_stopped(query::BudgetLimit limit) {
  queries_stopped_.Add({{"limit", std::string(query::to_string(limit))}}).Increment();
}

void Metrics::query_jobs(std::size_t running, std::size_t queued) {
  query_jobs_running_->Set(static_cast<double>(running));
  query_jobs_queued_->Set(static_cast<double>(queued));
}

void Metrics::observe_request(std::string_view route, Method method, int status,
                              std::chrono::nanoseconds latency) {
  const Key key{route.data(), static_cast<int>(method), status};
  Series series{};
  {
    std::shared_lock lock(mutex_);
    if (auto it = series_.find(key); it != series_.end()) series = it->second;
  }
  if (series.count == nullptr) {
    std::unique_lock lock(mutex_);
    auto [it, inserted] = series_.try_emplace(key, Series{});
    if (inserted) {
      const prometheus::Labels labels{{"route", std::string(route)},
                                      {"method", std::string(to_string(method))},
                                      {"status", std::to_string(status)}};
      it->second = Series{&requests_.Add(labels), &request_latency_.Add(labels, latency_buckets())};
    }
    series = it->second;
  }
  series.count->Increment();
  series.latency->Observe(seconds(latency));
}

void Metrics::connection_opened() {
  open_connections_.Increment();
  connections_total_.Increment();
}
void Metrics::connection_closed() {
  open_connections_.Decrement();
}
void Metrics::connection_rejected() {
  connections_rejected_.Increment();
}

void Metrics::on_read(std::string_view operation, std::chrono::nanoseconds latency) {
  prometheus::Histogram* h = nullptr;
  {
    std::shared_lock lock(mutex_);
    if (auto it = read_series_.find(std::string(operation)); it != read_series_.end()) h = it->second;
  }
  if (h == nullptr) {
    std::unique_lock lock(mutex_);
    auto& slot = read_series_[std::string(operation)];
    if (slot == nullptr) slot = &store_reads_.Add({{"operation", std::string(operation)}}, latency_buckets());
    h = slot;
  }
  h->Observe(seconds(latency));
}

void Metrics::on_commit(std::size_t writes, std::chrono::nanoseconds latency) {
  store_commit_latency_.Observe(seconds(latency));
  store_commit_writes_.Observe(static_cast<double>(writes));
}

void Metrics::add_source(std::function<std::vector<prometheus::MetricFamily>()> source) {
  std::lock_guard lock(sources_mutex_);
  sources_.push_back(std::move(source));
}

std::string Metrics::render() const {
  auto families = registry_->Collect();
  {
    std::lock_guard lock(sources_mutex_);
    for (const auto& source : sources_) {
      auto more = source();
      families.insert(families.end(), std::make_move_iterator(more.begin()),
                      std::make_move_iterator(more.end()));
    }
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace twinbridge::http
