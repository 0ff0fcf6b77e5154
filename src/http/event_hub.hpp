#pragma once
// EventHub: notifications for Server-Sent Events subscribers: the W3C WoT Discovery notifications of the
// directory (thing_created, thing_updated, thing_deleted) in one hub, changes of systems' status in another.
// Every event gets an increasing id; the last `history` events are kept so that a client reconnecting with
// Last-Event-ID misses nothing that is still kept. Events carry two payloads: the plain one
// ({"id": ...}) and the one for subscribers that asked for diff=true (the whole TD when created, the merge
// patch of the change when updated).
//
// Ids restart with the process; several nodes will share events through the event bus (later issue).
// Thread-safe: publish() from any thread; each Subscription runs on its subscriber's executor.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "http/message.hpp"

namespace twinbridge::http {

struct DirectoryEvent {
  std::uint64_t id = 0;
  std::string type;       // thing_created, thing_updated, thing_deleted, status_changed
  std::string data;       // JSON text without diff
  std::string diff_data;  // JSON text with diff
};

class Subscription final : public ResponseStream, public std::enable_shared_from_this<Subscription> {
 public:
  Subscription(boost::asio::any_io_executor executor, std::set<std::string> types, bool diff,
               std::chrono::milliseconds heartbeat);

  // The next SSE frame: an event, or a ": heartbeat" comment after `heartbeat` without events.
  boost::asio::awaitable<std::optional<std::string>> next() override;
  void cancel() override;

  // Called by the hub: queues the event when its type was asked for.
  void deliver(const std::shared_ptr<const DirectoryEvent>& event);

 private:
  static constexpr std::size_t kMaxPending = 10'000;  // a subscriber this far behind is disconnected

  boost::asio::any_io_executor executor_;
  boost::asio::steady_timer wakeup_;  // touched only on executor_
  std::set<std::string> types_;
  bool diff_;
  std::chrono::milliseconds heartbeat_;
  std::mutex mutex_;
  std::deque<std::shared_ptr<const DirectoryEvent>> pending_;
  bool cancelled_ = false;
};

class EventHub {
 public:
  explicit EventHub(std::size_t history = 10'000,
                    std::chrono::milliseconds heartbeat = std::chrono::seconds(15))
      : history_limit_(history), heartbeat_(heartbeat) {}

  void publish(std::string type, std::string data, std::string diff_data);

  // A new subscription for `types` (every type when empty); with `last_event_id`, every kept event after it
  // is queued first.
  std::shared_ptr<Subscription> subscribe(boost::asio::any_io_executor executor, std::set<std::string> types,
                                          bool diff, std::optional<std::uint64_t> last_event_id);

 private:
  std::size_t history_limit_;
  std::chrono::milliseconds heartbeat_;
  std::mutex mutex_;
  std::uint64_t next_id_ = 1;
  std::deque<std::shared_ptr<const DirectoryEvent>> history_;
  std::vector<std::weak_ptr<Subscription>> subscribers_;
};

}  // namespace twinbridge::http
