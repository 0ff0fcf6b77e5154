#pragma once
// StreamHub: the live side of the change feed, below every transport. A subscription is a cursor into the
// feed (store::ChangeFeed) with a filter: it yields, in sequence order, every change it admits after the
// sequence number it started from, whatever thread delivered it. Server-Sent Events (/events,
// /v1/system-events) and the WebSocket stream are adapters in `http` that frame what a subscription yields;
// when several nodes share a store, the same subscriptions will read the feed delivered over the event bus.
//
// Delivery: the hub is a consumer of the feed; each commit's changes are queued on the subscriptions that
// admit them (one shared, immutable Change for all), found by the hub's index of the subscriptions' subjects
// (set_subjects), so that a change costs a lookup, not a test per subscription. A subscription that falls
// behind (more than kMaxPending changes queued, or a change it missed) stops queueing and reads the feed
// itself from its cursor (memory, then the store, on the `reader` executor), so that a slow client costs
// memory bounded by its queue and never holds up the feed or other subscribers. A resume (Last-Event-ID) is
// such a read from the given sequence number: it survives restarts while the store keeps the changes, and
// when it does not, the subscription yields a gap (which changes were missed) before going on, never skipping
// silently.
//
// A subscription belongs to the credential that opened it (StreamOwner): it ends, after a last `closed`
// item saying why, when that credential expires (its own timer), when the feed says its API key was
// revoked or its principal was disabled, deleted or lost the permission the stream needs. Queued changes are
// not delivered after that. A subscription leaves the hub when its consumer drops it.
//
// Thread-safety: apply() runs on the store's writer thread; subscribe() from any thread; each subscription's
// next() runs on its consumer's executor; cancel() and close() from any thread.

#include <prometheus/gauge.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "core/access.hpp"
#include "store/change_feed.hpp"

namespace twinbridge::dtif {

// Who opened a stream, and until when its credential is valid.
struct StreamOwner {
  core::PrincipalId principal;
  std::string credential;  // "api-key:<key id>", "jwt:<kid>", "admin-token"
  core::Permission permission = core::Permission::registry_read;  // what the stream needs
  std::optional<std::chrono::steady_clock::time_point> expires;   // the credential's expiry
};

// Why a stream ended: `reason` is one of the documented codes (credential_expired, credential_revoked,
// principal_disabled, principal_deleted, permission_revoked).
struct StreamEnd {
  std::string reason;
  std::string detail;
};

// The end a change of a principal brings to a stream `owner` opened, if any.
std::optional<StreamEnd> stream_end(const StreamOwner& owner, const store::PrincipalChange& change);

// What a subscription yields next.
struct StreamItem {
  enum class Kind { change, gap, heartbeat, closed, woken };  // woken: poke() was called
  Kind kind = Kind::change;
  store::ChangePtr change;    // change
  std::int64_t gap_from = 0;  // gap: the changes gap_from .. gap_until - 1 are no longer kept
  std::int64_t gap_until = 0;
  StreamEnd end;  // closed
};

class StreamHub;
struct StreamHubState;

class StreamSubscription final : public std::enable_shared_from_this<StreamSubscription> {
 public:
  static constexpr std::size_t kMaxPending = 10'000;  // beyond this a subscription reads the feed itself
  static constexpr std::size_t kReadPage = 1'000;     // changes read from the feed at once

  StreamSubscription(boost::asio::any_io_executor executor, std::set<store::ChangeType> types,
                     std::int64_t after, StreamOwner owner, std::chrono::milliseconds heartbeat,
                     store::ChangeFeed& feed, boost::asio::any_io_executor reader);
  ~StreamSubscription();
  StreamSubscription(const StreamSubscription&) = delete;
  StreamSubscription& operator=(const StreamSubscription&) = delete;

  // The next item: a change, a gap, a heartbeat after `heartbeat` without one, or the final `closed`;
  // nullopt after that and once cancelled.
  boost::asio::awaitable<std::optional<StreamItem>> next();
  // The next queued change, when next() would yield it at once (nothing comes before it: no end, gap or
  // poke); nullopt otherwise, and then next() says what comes. Saves a coroutine for each queued change.
  std::optional<StreamItem> try_next();
  // The consumer went away or the server stops: next() yields nullopt.
  void cancel();
  // Makes the pending (or next) next() yield a `woken` item, so that its consumer can do other work first.
  void poke();

  // Admits, from the next change looked at on, only changes whose subject is in `subjects`, besides
  // thing_created and thing_updated of any twin when `every_thing`, and changes of principals and keys (null:
  // no restriction by subject). Returns the cursor: changes up to it were decided before, those after it are
  // decided with the new set.
  std::int64_t set_subjects(std::shared_ptr<const std::unordered_set<std::string>> subjects,
                            bool every_thing);
  // Ends the stream with a final `closed` item; changes still queued are dropped.
  void close(StreamEnd end);

  const StreamOwner& owner() const { return owner_; }

 private:
  friend class StreamHub;
  // The hub's delivery of the changes first..last (one run of a commit): `admitted`, those of them the
  // hub's index routes here, are queued if their type is taken; the cursor moves to `last`. Both return
  // whether next() waits and must be woken (the hub wakes the subscriptions of one executor together).
  [[nodiscard]] bool deliver(std::int64_t first, std::int64_t last,
                             std::span<const store::ChangePtr> admitted);
  [[nodiscard]] bool deliver_live(std::span<const store::ChangePtr> admitted);
  // With mutex_ held. What a subscription reading the feed itself admits (the index decides the rest).
  bool admits(const store::Change& change) const;
  bool takes(store::ChangeType type) const;
  void wake();

  boost::asio::any_io_executor executor_;
  boost::asio::steady_timer wakeup_;  // touched only on executor_
  const std::set<store::ChangeType> types_;
  const StreamOwner owner_;
  const std::chrono::milliseconds heartbeat_;
  store::ChangeFeed& feed_;
  boost::asio::any_io_executor reader_;

  std::mutex mutex_;
  std::int64_t cursor_;       // the last change looked at (queued or not admitted)
  bool catching_up_ = false;  // reading the feed from cursor_ instead of queueing what the hub delivers
  std::deque<store::ChangePtr> pending_;
  std::optional<StreamItem> gap_;  // a gap found by the last read, yielded before what followed it
  bool cancelled_ = false;
  bool poked_ = false;
  bool waiting_ =
      false;  // next() waits on wakeup_: a delivery must wake it (else it finds the change itself)
  std::shared_ptr<const std::unordered_set<std::string>> subjects_;
  bool every_thing_ = false;
  std::optional<StreamEnd> end_;
  bool end_sent_ = false;
  std::weak_ptr<StreamHubState> hub_state_;
  std::uint64_t key_ = 0;
};

class StreamHub final : public store::ChangeConsumer {
 public:
  // `reader` runs the feed reads of subscriptions that fell behind (they may read the store).
  StreamHub(store::ChangeFeed& feed, boost::asio::any_io_executor reader,
            std::chrono::milliseconds heartbeat = std::chrono::seconds(15));

  // A subscription to the changes of `types` (every type when empty) opened by `owner`, from after the
  // change `after` (nullopt: from now on).
  std::shared_ptr<StreamSubscription> subscribe(boost::asio::any_io_executor executor,
                                                std::set<store::ChangeType> types,
                                                std::optional<std::int64_t> after, StreamOwner owner);

  void apply(std::span<const store::ChangePtr> changes) override;

  // Ephemeral changes (sequence number 0, never stored): queued at once on every subscription that admits
  // them; a subscription more than kMaxPending behind misses them (newer ones follow).
  void publish_live(std::span<const store::ChangePtr> changes);

  std::size_t subscriber_count() const;
  // Where subscriptions read the feed (and their consumers may do other blocking reads).
  const boost::asio::any_io_executor& reader() const { return reader_; }
  // Kept equal to subscriber_count() from now on (null: none).
  void set_gauge(prometheus::Gauge* gauge);

 private:
  void close_streams(const store::PrincipalChange& change);
  // Wakes the waiting next() of each of `subs`: one handler posted per executor (a commit's changes for many
  // subscriptions of one I/O thread cost it one wake-up, not one each).
  static void wake_all(std::vector<std::shared_ptr<StreamSubscription>> subs);

  store::ChangeFeed& feed_;
  boost::asio::any_io_executor reader_;
  std::chrono::milliseconds heartbeat_;
  std::shared_ptr<StreamHubState> state_;
};

}  // namespace twinbridge::dtif
