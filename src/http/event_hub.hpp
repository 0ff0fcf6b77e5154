#pragma once
// EventHub: notifications for Server-Sent Events subscribers: the W3C WoT Discovery notifications of the
// directory (thing_created, thing_updated, thing_deleted) in one hub, changes of systems' status in another.
// Every event gets an increasing id; the last `history` events are kept so that a client reconnecting with
// Last-Event-ID misses nothing that is still kept. Events carry two payloads: the plain one
// ({"id": ...}) and the one for subscribers that asked for diff=true (the whole TD when created, the merge
// patch of the change when updated).
//
// A stream belongs to the credential that opened it (StreamOwner): it ends, after a last `stream_closed`
// event saying why ({"reason": ..., "detail": ...}), when that credential expires (checked by the stream's
// own timer, so a quiet stream ends on time too), when close_streams() hears that the API key was revoked or
// the principal was disabled, deleted or lost the permission the stream needs, and when the subscriber falls
// too far behind. Queued events are not delivered after that: a stream that lost its rights gets nothing
// more. A subscription leaves the hub when its stream ends (its destructor), so a hub where nothing is
// published keeps no closed streams.
//
// Ids restart with the process; several nodes will share events through the event bus (later issue).
// Thread-safe: publish() and close_streams() from any thread; each Subscription runs on its subscriber's
// executor.

#include <prometheus/gauge.h>
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
#include <unordered_map>

#include "core/access.hpp"
#include "http/message.hpp"
#include "store/store.hpp"

namespace twinbridge::http {

struct DirectoryEvent {
  std::uint64_t id = 0;
  std::string type;       // thing_created, thing_updated, thing_deleted, status_changed
  std::string data;       // JSON text without diff
  std::string diff_data;  // JSON text with diff
};

// Who opened a stream, and until when its credential is valid.
struct StreamOwner {
  core::PrincipalId principal;
  std::string credential;  // Caller::credential: "api-key:<key id>", "jwt:<kid>", "admin-token"
  core::Permission permission = core::Permission::registry_read;  // what the stream needs
  std::optional<std::chrono::steady_clock::time_point> expires;   // the credential's expiry
};

// Why a stream ended: `reason` is one of the documented codes (credential_expired, credential_revoked,
// principal_disabled, principal_deleted, permission_revoked, lagging).
struct StreamEnd {
  std::string reason;
  std::string detail;
};

// The end a change of a principal brings to a stream `owner` opened, if any.
std::optional<StreamEnd> stream_end(const StreamOwner& owner, const store::PrincipalChange& change);

class EventHub;
struct EventHubState;  // the hub's shared state (event_hub.cpp); subscriptions leave it when they end

class Subscription final : public ResponseStream, public std::enable_shared_from_this<Subscription> {
 public:
  Subscription(boost::asio::any_io_executor executor, std::set<std::string> types, bool diff,
               std::chrono::milliseconds heartbeat, StreamOwner owner);
  ~Subscription() override;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // The next SSE frame: an event, a ": heartbeat" comment after `heartbeat` without events, or the final
  // stream_closed event; then nothing (the stream ends).
  boost::asio::awaitable<std::optional<std::string>> next() override;
  void cancel() override;

  // Called by the hub: queues the event when its type was asked for.
  void deliver(const std::shared_ptr<const DirectoryEvent>& event);
  // Ends the stream with a final stream_closed event; events still queued are dropped.
  void close(StreamEnd end);

  const StreamOwner& owner() const { return owner_; }

 private:
  friend class EventHub;
  static constexpr std::size_t kMaxPending = 10'000;  // a subscriber this far behind is disconnected

  void wake();

  boost::asio::any_io_executor executor_;
  boost::asio::steady_timer wakeup_;  // touched only on executor_
  std::set<std::string> types_;
  bool diff_;
  std::chrono::milliseconds heartbeat_;
  StreamOwner owner_;
  std::mutex mutex_;
  std::deque<std::shared_ptr<const DirectoryEvent>> pending_;
  bool cancelled_ = false;
  std::optional<StreamEnd> end_;  // set by close(); the final event is then the next frame
  bool end_sent_ = false;
  // Set by the hub at subscription: where to remove itself when it goes.
  std::weak_ptr<EventHubState> hub_state_;
  std::uint64_t key_ = 0;
};

class EventHub {
 public:
  explicit EventHub(std::size_t history = 10'000,
                    std::chrono::milliseconds heartbeat = std::chrono::seconds(15));

  void publish(std::string type, std::string data, std::string diff_data);

  // A new subscription for `types` (every type when empty) opened by `owner`; with `last_event_id`, every
  // kept event after it is queued first.
  std::shared_ptr<Subscription> subscribe(boost::asio::any_io_executor executor, std::set<std::string> types,
                                          bool diff, std::optional<std::uint64_t> last_event_id,
                                          StreamOwner owner);

  // Ends every stream whose credential the change takes away (stream_end()).
  void close_streams(const store::PrincipalChange& change);

  // Subscriptions the hub holds now (every one whose stream has not ended).
  std::size_t subscriber_count() const;
  // Kept equal to subscriber_count() from now on (null: none).
  void set_gauge(prometheus::Gauge* gauge);

 private:
  std::size_t history_limit_;
  std::chrono::milliseconds heartbeat_;
  std::shared_ptr<EventHubState> state_;
};

}  // namespace twinbridge::http
