#include "dtif/mqtt_sync.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <chrono>
#include <functional>

#include "connect/mqtt_forms.hpp"
#include "core/json_reader.hpp"

namespace twinbridge::dtif {

using core::Errc;

core::Result<std::unique_ptr<MqttSync>> MqttSync::create(MqttSyncSettings settings, TwinService& twins,
                                                         const TwinIndex& index, store::Store& store) {
  auto url = connect::parse_mqtt_url(settings.client.broker_url);
  if (!url) return std::unexpected(url.error());
  if (settings.state_topic_prefix.empty() ||
      settings.state_topic_prefix.find_first_of("+#") != std::string::npos) {
    return core::fail(Errc::validation_failed,
                      "mqtt.state_topic_prefix must be a topic prefix without wildcards");
  }
  std::unique_ptr<MqttSync> sync(new MqttSync(std::move(settings), twins, index, store));
  sync->broker_ = url->broker;
  auto* self = sync.get();
  auto client = connect::MqttClient::create(
      sync->settings_.client, [self](connect::MqttMessage m) { self->on_message(std::move(m)); },
      [](connect::MqttState state, std::string_view detail) {
        spdlog::info("mqtt: {} ({})", connect::to_string(state), detail);
      });
  if (!client) return std::unexpected(client.error());
  sync->client_ = std::move(*client);
  return sync;
}

MqttSync::MqttSync(MqttSyncSettings settings, TwinService& twins, const TwinIndex& index, store::Store& store)
    : settings_(std::move(settings)), twins_(twins), index_(index), store_(store) {}

MqttSync::~MqttSync() {
  stop();
}

core::Result<void> MqttSync::start() {
  store::SystemQuery q;
  q.kind = core::SystemKind::twin;
  q.limit = 1000;
  for (;;) {
    auto page = store_.systems(q);
    if (!page) return std::unexpected(page.error());
    for (const auto& s : page->items) map_system(s.id);
    if (!page->next_after) break;
    q.after = *page->next_after;
  }
  TwinIndexQuery t;
  t.limit = 1000;
  for (;;) {
    const auto page = index_.find(t);
    for (const auto& view : page.items) map_twin(view->id(), view->td_json());
    if (!page.next_after) break;
    t.after = *page.next_after;
  }
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = false;
  }
  const std::size_t workers =
      settings_.workers > 0 ? settings_.workers : std::max(1u, std::thread::hardware_concurrency());
  for (std::size_t i = 0; i < workers; ++i) {
    auto& w = *workers_.emplace_back(std::make_unique<Worker>());
    w.thread = std::thread([this, &w] { run_checker(w); });
    ::pthread_setname_np(w.thread.native_handle(), "mqtt check");
  }
  reader_ = std::thread([this] { run_reader(); });
  ::pthread_setname_np(reader_.native_handle(), "mqtt ingest");
  return client_->start();
}

void MqttSync::stop() {
  if (client_) client_->stop();
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (reader_.joinable()) reader_.join();  // every message read and dealt
  for (auto& w : workers_) {
    {
      std::lock_guard lock(w->mutex);
      w->stopping = true;
    }
    w->changed.notify_all();
    if (w->thread.joinable()) w->thread.join();  // every change handed to TwinService
    std::unique_lock lock(w->mutex);
    w->settled.wait(lock, [&] { return w->in_flight == 0; });
  }
  workers_.clear();
}

void MqttSync::settle(Worker& worker, const core::Result<std::vector<ReportResult>>& results) {
  if (results) {
    for (const auto& r : *results) {
      if (r) {
        ++counters_.applied;
      } else {
        ++counters_.rejected;
        note(fmt::format("a change was refused: {}", r.error().detail));
      }
    }
  }
  // Notified under the lock: stop() cannot return (and destroy the worker) before it is released.
  std::lock_guard lock(worker.mutex);
  --worker.in_flight;
  worker.settled.notify_all();
}

void MqttSync::note(std::string_view what) {
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count();
  auto last = last_note_.load();
  if (now > last && last_note_.compare_exchange_strong(last, now)) spdlog::warn("mqtt: {}", what);
}

std::vector<std::pair<std::string, std::string>> MqttSync::twin_filters(const std::string& twin_id,
                                                                        const boost::json::object& td) {
  std::vector<std::pair<std::string, std::string>> out;
  const auto* properties = td.if_contains("properties");
  if (properties == nullptr || !properties->is_object()) return out;
  std::string base;
  if (const auto* b = td.if_contains("base"); b != nullptr && b->is_string())
    base = std::string(b->get_string());
  for (const auto& [name, affordance] : properties->as_object()) {
    const auto* forms = affordance.is_object() ? affordance.as_object().if_contains("forms") : nullptr;
    if (forms == nullptr || !forms->is_array()) continue;
    for (std::size_t i = 0; i < forms->as_array().size(); ++i) {
      const auto& form = forms->as_array()[i];
      const auto* href = form.is_object() ? form.as_object().if_contains("href") : nullptr;
      if (href == nullptr || !href->is_string()) continue;
      const std::string_view h = href->get_string();
      const bool mqtt = h.starts_with("mqtt://") || h.starts_with("mqtts://") ||
                        (!h.contains("://") && (base.starts_with("mqtt://") || base.starts_with("mqtts://")));
      if (!mqtt) continue;
      auto target =
          connect::parse_mqtt_form(form, {fmt::format("/properties/{}/forms/{}", std::string_view(name), i),
                                          base, connect::MqttControlPacket::subscribe});
      if (!target) {
        note(fmt::format("twin '{}': form {} not followed: {}", twin_id, i, target.error().detail));
        continue;
      }
      if (target->control_packet != connect::MqttControlPacket::subscribe) continue;
      if (!(target->broker.host == broker_.host && target->broker.port == broker_.port)) {
        ++counters_.other_broker;
        continue;
      }
      for (const auto& f : target->filters) out.emplace_back(f, std::string(name));
    }
  }
  return out;
}

void MqttSync::add_target(const std::string& filter, Target target) {
  // With map_mutex_ held.
  auto& set = targets_[filter];
  const bool fresh = set.empty();
  set.insert(std::move(target));
  if (fresh && filter.find_first_of("+#") != std::string::npos) wildcard_filters_.insert(filter);
  if (fresh) {
    if (auto ok = client_->subscribe(filter, 1); !ok) {
      note(fmt::format("cannot subscribe to '{}': {}", filter, ok.error().detail));
    }
  }
}

void MqttSync::remove_target(const std::string& filter, const Target& target) {
  // With map_mutex_ held.
  auto it = targets_.find(filter);
  if (it == targets_.end()) return;
  it->second.erase(target);
  if (it->second.empty()) {
    targets_.erase(it);
    wildcard_filters_.erase(filter);
    (void)client_->unsubscribe(filter);
  }
}

void MqttSync::unmap_twin_locked(const std::string& twin_id) {
  auto old = twin_filters_.find(twin_id);
  if (old == twin_filters_.end()) return;
  for (const auto& f : old->second) {
    auto it = targets_.find(f);
    if (it == targets_.end()) continue;
    std::vector<Target> mine;
    for (const auto& t : it->second) {
      if (t.twin == twin_id) mine.push_back(t);
    }
    for (const auto& t : mine) remove_target(f, t);
  }
  twin_filters_.erase(old);
}

void MqttSync::map_twin(const std::string& twin_id, const boost::json::object& td) {
  auto filters = twin_filters(twin_id, td);
  std::lock_guard lock(map_mutex_);
  unmap_twin_locked(twin_id);
  if (filters.empty()) return;
  auto& mine = twin_filters_[twin_id];
  for (auto& [filter, property] : filters) {
    add_target(filter, Target{twin_id, property, ""});
    mine.push_back(filter);
  }
}

void MqttSync::unmap_twin(const std::string& twin_id) {
  std::lock_guard lock(map_mutex_);
  unmap_twin_locked(twin_id);
}

void MqttSync::map_system(const std::string& system_id) {
  const auto filter = settings_.state_topic_prefix + system_id;
  if (!connect::check_mqtt_topic(filter)) return;  // an id that cannot be a topic (a '+' or '#')
  std::lock_guard lock(map_mutex_);
  add_target(filter, Target{"", "", system_id});
}

void MqttSync::unmap_system(const std::string& system_id) {
  std::lock_guard lock(map_mutex_);
  remove_target(settings_.state_topic_prefix + system_id, Target{"", "", system_id});
}

void MqttSync::apply(std::span<const store::ChangePtr> changes) {
  for (const auto& c : changes) {
    switch (c->type) {
      case store::ChangeType::thing_created:
      case store::ChangeType::thing_updated:
        if (c->twin) map_twin(c->twin->id, c->twin->document);
        break;
      case store::ChangeType::thing_deleted:
        unmap_twin(c->subject);
        break;
      case store::ChangeType::system_created:
        if (c->system_kind == core::SystemKind::twin) map_system(c->subject);
        break;
      case store::ChangeType::system_deleted:
        if (c->system_kind == core::SystemKind::twin) unmap_system(c->subject);
        break;
      default:
        break;
    }
  }
}

void MqttSync::on_message(connect::MqttMessage message) {
  std::vector<Target> found;
  {
    std::lock_guard lock(map_mutex_);
    if (auto exact = targets_.find(message.topic); exact != targets_.end()) {
      found.assign(exact->second.begin(), exact->second.end());
    }
    for (const auto& filter : wildcard_filters_) {
      if (connect::mqtt_topic_matches(filter, message.topic)) {
        const auto& targets = targets_.at(filter);
        found.insert(found.end(), targets.begin(), targets.end());
      }
    }
  }
  if (found.empty()) {
    ++counters_.unknown_topic;
    return;
  }
  {
    std::lock_guard lock(queue_mutex_);
    for (auto& t : found) {
      if (queue_.size() >= settings_.max_queue) {
        ++counters_.dropped_queue_full;
        continue;
      }
      queue_.push_back(Item{std::move(t), message.payload});
    }
  }
  queue_cv_.notify_one();
}

void MqttSync::run_reader() {
  std::vector<Item> batch;
  for (;;) {
    {
      std::unique_lock lock(queue_mutex_);
      queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      while (!queue_.empty() && batch.size() < settings_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    read(batch);
    batch.clear();
  }
}

namespace {

// The holder's principal as the actor of a report that came over MQTT.
core::Result<core::Actor> mqtt_actor(store::Store& store, const core::PrincipalId& holder,
                                     const std::string& broker) {
  auto principal = store.principal(holder);
  if (!principal) return std::unexpected(principal.error());
  core::Actor a;
  a.principal = std::move(*principal);
  a.credential = "mqtt:" + broker;
  a.channel = core::Channel::mqtt;
  return a;
}

}  // namespace

void MqttSync::read(std::vector<Item>& items) {
  // The changes of these messages, dealt by twin; each worker's share is queued at once, in arrival order.
  std::vector<std::vector<Routed>> dealt(workers_.size());
  auto add = [&](const core::PrincipalId& holder, StateReport report) {
    const auto w = std::hash<std::string>{}(report.twin_id) % workers_.size();
    dealt[w].push_back(Routed{holder, std::move(report)});
  };
  for (auto& item : items) {
    boost::system::error_code ec;
    auto value = core::read_json(item.payload, ec);
    if (ec) {
      ++counters_.malformed;
      note(fmt::format("a message for {} is not JSON ({}); dropped",
                       item.target.system.empty() ? "twin '" + item.target.twin + "'"
                                                  : "twin system '" + item.target.system + "'",
                       ec.message()));
      continue;
    }
    if (!item.target.twin.empty()) {
      auto view = index_.get(item.target.twin);
      if (!view) {
        ++counters_.unknown_topic;
        continue;
      }
      StateReport r;
      r.twin_id = item.target.twin;
      r.patch =
          boost::json::object{{"properties", boost::json::object{{item.target.property, std::move(value)}}}};
      add(view->owner(), std::move(r));
      continue;
    }
    auto system = store_.system(core::SystemKind::twin, item.target.system);
    if (!system) {
      ++counters_.unknown_topic;
      continue;
    }
    std::vector<const boost::json::value*> changes;
    if (const auto* o = value.if_object(); o != nullptr && o->contains("changes")) {
      const auto& list = o->at("changes");
      if (list.is_array()) {
        for (const auto& c : list.as_array()) changes.push_back(&c);
      }
    } else {
      changes.push_back(&value);
    }
    if (changes.empty()) {
      ++counters_.malformed;
      note(fmt::format("a message for twin system '{}' holds no change; dropped", item.target.system));
      continue;
    }
    for (std::size_t i = 0; i < changes.size(); ++i) {
      auto report = read_state_change(*changes[i], fmt::format("/changes/{}", i));
      if (!report) {
        ++counters_.malformed;
        note(fmt::format("a change for twin system '{}' dropped: {}", item.target.system,
                         report.error().fields.empty()
                             ? report.error().detail
                             : report.error().fields[0].pointer + " " + report.error().fields[0].detail));
        continue;
      }
      // Only the twins of this system: the topic is the system's.
      if (auto view = index_.get(report->twin_id); !view || view->system_id() != item.target.system) {
        ++counters_.rejected;
        note(fmt::format("twin system '{}' has no twin '{}'", item.target.system, report->twin_id));
        continue;
      }
      add(system->owner, std::move(*report));
    }
  }
  for (std::size_t w = 0; w < dealt.size(); ++w) {
    if (dealt[w].empty()) continue;
    auto& worker = *workers_[w];
    {
      std::unique_lock lock(worker.mutex);
      worker.changed.wait(lock, [&] { return worker.queue.size() < settings_.max_queue; });
      for (auto& r : dealt[w]) worker.queue.push_back(std::move(r));
    }
    worker.changed.notify_all();
  }
}

void MqttSync::run_checker(Worker& worker) {
  std::vector<Routed> batch;
  for (;;) {
    {
      std::unique_lock lock(worker.mutex);
      worker.changed.wait(lock, [&] { return worker.stopping || !worker.queue.empty(); });
      if (worker.queue.empty()) return;  // stopping and drained
      while (!worker.queue.empty() && batch.size() < settings_.max_batch) {
        batch.push_back(std::move(worker.queue.front()));
        worker.queue.pop_front();
      }
    }
    worker.changed.notify_all();  // room for the reader
    // Consecutive changes of one holder go to TwinService together (one store write); their order is kept.
    std::vector<StateReport> reports;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      reports.push_back(std::move(batch[i].report));
      if (i + 1 == batch.size() || batch[i + 1].holder != batch[i].holder) {
        check(worker, batch[i].holder, std::move(reports));
        reports.clear();
      }
    }
    batch.clear();
  }
}

void MqttSync::check(Worker& worker, const core::PrincipalId& holder, std::vector<StateReport> reports) {
  auto actor = mqtt_actor(store_, holder, broker_.url());
  if (!actor) {
    counters_.rejected += reports.size();
    note(fmt::format("reports of principal '{}' dropped: {}", holder.str(), actor.error().detail));
    return;
  }
  actor->request_id = fmt::format("mqtt-{}", ++serial_);
  // At most kMaxInFlight batches wait for their commit: the next one is checked while one commits.
  {
    std::unique_lock lock(worker.mutex);
    worker.settled.wait(lock, [&] { return worker.in_flight < kMaxInFlight; });
    ++worker.in_flight;
  }
  twins_.report(*actor, std::move(reports), std::nullopt,
                [this, &worker](core::Result<std::vector<ReportResult>> r) { settle(worker, r); });
}

std::vector<prometheus::MetricFamily> MqttSync::metric_families() const {
  const auto status = client_->status();
  const auto one = [](double value, prometheus::MetricType type) {
    prometheus::ClientMetric m;
    (type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = value;
    return m;
  };
  const auto family = [&](std::string name, std::string help, prometheus::MetricType type, double value) {
    return prometheus::MetricFamily{std::move(name), std::move(help), type, {one(value, type)}};
  };
  prometheus::MetricFamily messages{"twinbridge_mqtt_messages_total",
                                    "MQTT messages received for the twin sync, by outcome",
                                    prometheus::MetricType::Counter,
                                    {}};
  const std::pair<const char*, std::uint64_t> outcomes[] = {
      {"applied", counters_.applied.load()},
      {"rejected", counters_.rejected.load()},
      {"malformed", counters_.malformed.load()},
      {"unknown_topic", counters_.unknown_topic.load()},
      {"other_broker", counters_.other_broker.load()},
      {"dropped_queue_full", counters_.dropped_queue_full.load()},
      {"dropped_oversize", status.counters.dropped_oversize}};
  for (const auto& [outcome, n] : outcomes) {
    auto m = one(static_cast<double>(n), prometheus::MetricType::Counter);
    m.label.push_back({"outcome", outcome});
    messages.metric.push_back(std::move(m));
  }
  using T = prometheus::MetricType;
  return {
      std::move(messages),
      family("twinbridge_mqtt_connected", "1 while connected to the MQTT broker", T::Gauge,
             status.state == connect::MqttState::connected ? 1 : 0),
      family("twinbridge_mqtt_subscriptions", "topic filters held on the MQTT broker", T::Gauge,
             static_cast<double>(client_->subscriptions().size())),
      family("twinbridge_mqtt_connects_total", "connections to the MQTT broker established", T::Counter,
             static_cast<double>(status.counters.connects)),
      family("twinbridge_mqtt_reconnects_total", "connections established again after one was lost",
             T::Counter, static_cast<double>(status.counters.reconnects)),
      family("twinbridge_mqtt_connect_failures_total", "attempts to connect to the MQTT broker that failed",
             T::Counter, static_cast<double>(status.counters.connect_failures))};
}

}  // namespace twinbridge::dtif
