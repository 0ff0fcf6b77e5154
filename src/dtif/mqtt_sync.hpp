#pragma once
// MqttSync: physical -> virtual over MQTT (FGMV-29 8.3.4 DTS, flow 9.2 step 14). twinbridge subscribes, on
// one broker (mqtt.url), to
//   - the topics the twins' TDs declare for their properties (W3C WoT MQTT binding: a property form with an
//     mqtt:// or mqtts:// href on the configured broker and the subscribe control packet, from op
//     observeproperty/readproperty or mqv:controlPacket; topic from mqv:filter, mqv:topic or the href's
//     path). A message there is the property's new value (JSON);
//   - one topic per twin system, "<mqtt.state_topic_prefix><system id>" (default "twinbridge/state/"), where
//     the twin system publishes its twins' changes in the format of POST /v1/twin-systems/{id}/state:
//     {"changes": [{"twin", "patch", "sourceTime"?, "sourceSeq"?}]}, or one such change alone.
// Every message becomes a state report of TwinService (channel mqtt), made by the principal that holds the
// twin (its twin system's owner): the broker authenticates publishers, so its ACL must let only that twin
// system publish on its twins' topics (README, "MQTT").
//
// Subscriptions follow the change feed (a twin created, changed or deleted; a twin system registered or
// deregistered). The client keeps a persistent session (MqttClient), resubscribes after a reconnect, and the
// broker queues QoS 1 messages while twinbridge is away. Duplicates (a redelivery, a sourceSeq seen) are
// applied once and an older value never overwrites a newer one (core::change_order); a value of a property
// form carries no sequence, and arrival order decides.
//
// Threads: messages arrive on the MQTT client's loop thread and are queued (at most max_queue; beyond, they
// are dropped and counted). The thread "mqtt ingest" takes them in arrival order, reads them (JSON, the
// changes of a state topic's message, the twin each is for) and deals each change to one of `workers`
// threads, "mqtt check", by its twin: a twin's changes always go to the same one, in arrival order. Each
// check thread hands its changes to TwinService in batches (one store write per batch; the next batch is
// checked while the previous one commits, at most two waiting for their commit), so one twin's changes are
// applied in the order they arrived (TwinService orders them before the store writes them, in that order),
// the changes of different twins are checked on several cores at once, and the loop thread never waits for
// the store. A check thread whose queue holds max_queue changes holds up the reading until it catches up, so
// the client's queue is what overflows. A message counts as applied once its batch is committed. Messages
// that cannot be applied (not JSON, an unknown twin, a value the TD refuses) are counted by outcome and
// logged (at most one line a second).
//
// Topics: an exact filter is found in a map; only the filters with a wildcard are matched one by one.
//
// Limits: libmosquitto acknowledges a QoS 1 message when it arrives, before twinbridge commits it, so a
// crash between the two loses that message (MQTT 5 has no application acknowledgement in libmosquitto).
// Forms naming another broker than mqtt.url are not followed (counted as `other_broker`).

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <prometheus/metric_family.h>

#include "connect/mqtt_client.hpp"
#include "dtif/twin_index.hpp"
#include "dtif/twin_service.hpp"
#include "store/change_feed.hpp"

namespace twinbridge::dtif {

struct MqttSyncSettings {
  connect::MqttSettings client;  // broker_url empty: no MQTT sync
  std::string state_topic_prefix = "twinbridge/state/";
  std::size_t max_queue = 100'000;
  std::size_t max_batch = 1'000;  // reports handed to TwinService at once
  std::size_t workers = 0;  // threads that check changes ("mqtt check"; 0: one per core), a twin's on one
};

class MqttSync final : public store::ChangeConsumer {
 public:
  // Outcomes of messages, by name (for metrics): applied, rejected (the twin plane refused the change),
  // malformed (not JSON, or not a change), unknown_topic, other_broker (forms), dropped_queue_full.
  struct Counters {
    std::atomic<std::uint64_t> applied{0}, rejected{0}, malformed{0}, unknown_topic{0}, other_broker{0},
        dropped_queue_full{0};
  };

  static core::Result<std::unique_ptr<MqttSync>> create(MqttSyncSettings settings, TwinService& twins,
                                                        const TwinIndex& index, store::Store& store);
  ~MqttSync() override;
  MqttSync(const MqttSync&) = delete;
  MqttSync& operator=(const MqttSync&) = delete;

  // Subscribes to what the current twins and twin systems declare, then connects. Call after the twin index
  // is loaded, with the sync added to the change feed.
  core::Result<void> start();
  // Disconnects (the broker keeps the session), then applies what was queued and stops its threads.
  void stop();

  void apply(std::span<const store::ChangePtr> changes) override;

  const Counters& counters() const { return counters_; }
  // The sync's Prometheus metrics, read now: twinbridge_mqtt_messages_total{outcome} (the outcomes above, and
  // dropped_oversize by the client), twinbridge_mqtt_connected, twinbridge_mqtt_subscriptions,
  // twinbridge_mqtt_connects_total, twinbridge_mqtt_reconnects_total, twinbridge_mqtt_connect_failures_total.
  std::vector<prometheus::MetricFamily> metric_families() const;
  connect::MqttStatus client_status() const { return client_->status(); }
  std::vector<std::pair<std::string, int>> subscriptions() const { return client_->subscriptions(); }

 private:
  struct Target {
    std::string twin;      // a property form: the twin
    std::string property;  // and its property
    std::string system;    // a twin system's state topic: the system
    auto operator<=>(const Target&) const = default;
  };
  struct Item {
    Target target;
    std::string payload;
  };
  // A change read, for the twin's holder.
  struct Routed {
    core::PrincipalId holder;
    StateReport report;
  };
  // A check thread and the changes dealt to it.
  struct Worker {
    std::mutex mutex;
    std::condition_variable changed;  // a change queued, taken, or the end
    std::deque<Routed> queue;
    bool stopping = false;
    // Reports handed to TwinService whose store write has not completed.
    std::size_t in_flight = 0;
    std::condition_variable settled;
    std::thread thread;
  };

  MqttSync(MqttSyncSettings settings, TwinService& twins, const TwinIndex& index, store::Store& store);
  void on_message(connect::MqttMessage message);
  void run_reader();
  // Reads the messages and deals their changes to the check threads.
  void read(std::vector<Item>& items);
  void run_checker(Worker& worker);
  // Hands the changes of one holder to TwinService (at most kMaxInFlight batches of `worker` in flight).
  void check(Worker& worker, const core::PrincipalId& holder, std::vector<StateReport> reports);
  // The filters the TD of `twin` declares on our broker, with their property.
  // The MQTT subscriptions of a TD's forms: (topic filter, property).
  std::vector<std::pair<std::string, std::string>> twin_filters(const std::string& twin_id,
                                                                const boost::json::object& td);
  void map_twin(const std::string& twin_id, const boost::json::object& td);
  void unmap_twin(const std::string& twin_id);
  void unmap_twin_locked(const std::string& twin_id);  // with map_mutex_ held
  void map_system(const std::string& system_id);
  void unmap_system(const std::string& system_id);
  void add_target(const std::string& filter, Target target);
  void remove_target(const std::string& filter, const Target& target);
  void note(std::string_view what);  // a rate-limited log line
  // The outcome of one batch handed to TwinService (on the thread that completes its write).
  void settle(Worker& worker, const core::Result<std::vector<ReportResult>>& results);

  MqttSyncSettings settings_;
  connect::MqttBroker broker_;
  TwinService& twins_;
  const TwinIndex& index_;
  store::Store& store_;
  std::unique_ptr<connect::MqttClient> client_;
  Counters counters_;

  mutable std::mutex map_mutex_;
  std::map<std::string, std::set<Target>> targets_;               // filter -> what a message there is for
  std::set<std::string> wildcard_filters_;                        // those of targets_ with a + or #
  std::map<std::string, std::vector<std::string>> twin_filters_;  // twin -> its filters

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::thread reader_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<std::int64_t> last_note_{0};
  std::atomic<std::uint64_t> serial_{0};          // of the batches' request ids
  static constexpr std::size_t kMaxInFlight = 2;  // per check thread
};

}  // namespace twinbridge::dtif
