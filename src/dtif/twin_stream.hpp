#pragma once
// TwinStream: one client's live view of twins (FGMV-29 flow 9.2 step 14, the metaverse side): the domain part
// of GET /v1/stream (WebSocket) and GET /v1/stream/events (Server-Sent Events), which only frame what it
// yields. The client subscribes to twins (by ids, by a JSONPath filter over their TDs, or by one of its saved
// selections), gets a snapshot of their state, then every change, in order per twin, of what it may observe.
//
// Protocol (subprotocol twinbridge.v1; every message a JSON object with "type"; described in
// /asyncapi.json):
//
// Client to server:
//   {"type":"subscribe", "id":"<subscription id>", one of "twins":[ids] | "filter":"<JSONPath>" |
//    "selection":"<selection id>", "snapshot":true|false (default true), "after":<seq> (resume)}
//   {"type":"unsubscribe", "id":"<subscription id>"}
// A subscription id is the client's choice (1 to 64 printable ASCII characters), unique among its open ones.
// "twins" names up to kMaxStreamTwinIds ids; a twin named that does not exist (yet) joins when created. A
// "filter" subscription follows the TDs: a twin created or changed so that its TD matches joins, one that no
// longer matches leaves. A "selection" is read when subscribing (its ids or filter, then as above).
//
// Server to client:
//   subscribed   {"id", "seq", "twins":[ids]}: the subscription's twins now; changes after "seq" follow.
//   state        {"twin", "seq", "reason", "state"}: a twin's whole state document as GET
//                /v1/twins/{id}/state serves it to this client. reason: "snapshot" (after subscribed),
//                "joined" (a twin that joined a subscription), "conflated" (the client fell behind: this
//                replaces the changes it did not get), "gap" (after a gap), "access" (access was granted).
//   change       {"seq", "twin", "version", "patch", "ingestedAt", "channel", "sourceTime"?, "sourceSeq"?}:
//                a durable change (seq > 0); patch is an RFC 7396 merge patch of the state document.
//                {"seq":0, "twin", "ephemeral":true, "patch", "ingestedAt"}: a live value (never stored).
//   thing_updated {"seq", "twin"}, thing_deleted {"seq", "twin"}: the twin's TD changed / the twin is gone.
//   revoked      {"seq", "twin", "detail"}: the client may no longer observe the twin (a policy changed);
//                nothing more of it comes until access is granted again (then a state with reason access).
//   gap          {"from", "to", "detail"}: changes from..to are no longer kept; a state of every twin
//                follows.
//   left         {"id", "seq", "twin"}: the twin left the subscription (its TD no longer matches the filter);
//                nothing more of it comes through that subscription. A deleted twin is thing_deleted.
//   unsubscribed {"id"}
//   error        {"id"?, "status", "title", "detail", "pointer"?}: a command was refused (RFC 9457 members;
//                pointer into the command); nothing changed. The connection stays open. A message that is
//                not a JSON object gets one too (without "id").
//   closed       {"reason", "detail"}: the last message; the stream's credential ended (see StreamHub), or
//                reason too_many_commands: more than kMaxPendingCommands commands waited for their answers.
//
// Order and duplicates. Changes of one twin come in their commit order. A twin's state version increases with
// every durable change: a client keeps, per twin, the version it holds and may ignore a change whose version
// is not greater (a twin in two subscriptions is sent once; a state message may already include a change
// that follows it, which the stream then does not send).
//
// Resume. A subscribe with "after" (the last seq the client saw) sends, instead of a snapshot, every change
// of the subscription's twins after it, then goes on; when the feed no longer holds them, a gap and a state
// of every twin of the subscription.
//
// Access. Each twin's messages carry only what the client may read (readproperty, decided by TwinService as
// for GET /v1/twins/{id}/state: the stream is a live read of twinbridge's state of the twin; observeproperty
// governs observing the Thing a twin exposes over WoT): properties it may not read are left out of states and
// changes, and a twin of which it may read no property is not sent. A policy change, or a change of the
// client's own principal, is decided again at once, in feed order: revoked / state(access). A revoked key, a
// disabled or deleted principal, or an expired credential ends the stream (closed).
//
// Slow consumers. When the transport's backlog (backlog()) is above conflate_above_bytes, changes are not
// framed: their twins are marked and, once the backlog is below half that, each marked twin gets one state
// message (reason "conflated") holding its newest state. A consumer that stops reading costs a bounded
// transport queue and one mark per twin, and never holds up the feed or other consumers.
//
// Sharing. A durable or live change is framed once for every stream that sends it whole (a client that may
// observe every property of the twin); only restricted clients get a copy of their own.
//
// Threads. A TwinStream belongs to one executor (its connection's): command(), next() and cancel() are called
// there, never concurrently. What may block (feed and store reads, filters over every TD, policies) runs on
// the hub's reader executor, with copies of what it needs.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "core/actor.hpp"
#include "dtif/stream_hub.hpp"
#include "dtif/twin_index.hpp"
#include "dtif/twin_service.hpp"
#include "query/budget.hpp"
#include "query/jsonpath.hpp"

namespace twinbridge::dtif {

class Selections;

inline constexpr std::size_t kMaxStreamTwinIds = 1000;  // ids in one subscribe
inline constexpr std::size_t kMaxStreamIdBytes = 64;
// Commands of a client waiting for their answers at most; one more ends the stream (closed,
// too_many_commands).
inline constexpr std::size_t kMaxPendingCommands = 1000;

struct TwinStreamLimits {
  std::size_t max_subscriptions = 100;  // open subscriptions per stream
  std::size_t max_twins = 10'000;       // twins per stream, all subscriptions together
  std::size_t conflate_above_bytes = 4 * 1024 * 1024;
  query::QueryLimits query_limits;  // a filter's budget when subscribing
};

// What the stream needs of the rest of the twin plane.
struct TwinStreamServices {
  StreamHub& hub;
  store::ChangeFeed& feed;
  TwinService& twins;
  const TwinIndex& index;
  Selections* selections = nullptr;  // null: selection subscriptions are refused (503)
  const core::Clock& clock;
  // The members of an error message for `error`: status, title, detail, pointer (the adapter's RFC 9457).
  std::function<boost::json::object(const core::Error&)> problem;
};

// One message for the client: JSON text, framed once and possibly shared with other streams.
struct StreamMessage {
  std::string_view type;  // the "type" member, for SSE event names
  std::int64_t seq = 0;   // the feed position it stands for (SSE id); 0: none
  std::shared_ptr<const std::string> json;
  bool last = false;         // the stream ends after it (closed)
  std::string close_reason;  // with last: the reason of the closed message
};

// Owned by a shared_ptr (next() and a backlog watch hold it while they run).
class TwinStream final : public std::enable_shared_from_this<TwinStream> {
 public:
  TwinStream(TwinStreamServices services, core::Actor actor, boost::asio::any_io_executor executor,
             TwinStreamLimits limits);
  ~TwinStream();
  TwinStream(const TwinStream&) = delete;
  TwinStream& operator=(const TwinStream&) = delete;

  // The transport's backlog in bytes (what is queued and not written); null: none (SSE writes one message
  // at a time).
  void set_backlog(std::function<std::size_t()> backlog) { backlog_ = std::move(backlog); }

  // One message of the client (JSON text). Its answers come through next().
  void command(std::string text);
  // A command made by the adapter itself (SSE: a subscribe from the query string).
  void command(boost::json::object document);

  // The next message for the client; nullopt once cancelled or after the last one.
  boost::asio::awaitable<std::optional<StreamMessage>> next();

  // The client went away or the server stops: next() yields nullopt.
  void cancel();

  std::size_t twin_count() const { return twins_.size(); }

 private:
  struct Subscription;
  struct Access {
    bool any = false;                                // the client may read something of the twin: it is sent
    std::function<bool(std::string_view)> readable;  // null: every property (the change's shared message)
  };
  struct Twin {
    std::size_t refs = 0;  // subscriptions it is a member of
    Access access;
    std::int64_t floor_version = 0;  // a state of this version was sent: changes up to it are not
    core::Timestamp floor_live{};    // live values taken in before this were in a state sent
  };

  boost::asio::awaitable<void> handle(std::string text);
  boost::asio::awaitable<void> subscribe(boost::json::object command);
  void unsubscribe(const boost::json::object& command);
  boost::asio::awaitable<void> on_item(StreamItem item);
  boost::asio::awaitable<void> on_change(const store::ChangePtr& change);
  // A change of a twin's state: framed and queued for the client (or conflated), never waiting.
  void on_state_change(const store::Change& c);
  // The stream's place in the feed moves past a committed change it was handed.
  void advance_position(const store::Change& c) {
    if (c.seq > 0) position_ = std::max(position_, c.seq);
  }
  // A TD was created or changed: the twin joins or leaves subscriptions, its access is decided again.
  boost::asio::awaitable<void> follow_td(const store::ChangePtr& change);
  boost::asio::awaitable<void> flush_conflated();
  // Adds `id` to `sub`; true when the twin is new to the stream.
  bool add_twin(Subscription& sub, const std::string& id);
  void drop_twin(Subscription& sub, const std::string& id);
  // Tells the hub which changes the stream wants; returns the hub's cursor (see set_subjects).
  std::int64_t update_hub_subjects();
  // Decides access to `ids` again (on the reader); with `announce`, sends revoked / state(access) where it
  // changed.
  boost::asio::awaitable<void> refresh_access(std::vector<std::string> ids, std::int64_t seq, bool announce);
  // State messages of `ids` (read on the reader), skipping twins the client may not read.
  boost::asio::awaitable<void> send_states(std::vector<std::string> ids, std::string_view reason);
  void send_error(const std::optional<std::string>& id, const core::Error& error);
  void push(std::string_view type, std::int64_t seq, std::shared_ptr<const std::string> json);
  std::size_t backlog() const;
  // While changes are conflated: pokes the feed once the backlog has fallen.
  void watch_backlog();
  void wake();

  TwinStreamServices services_;
  core::Actor actor_;
  boost::asio::any_io_executor executor_;
  TwinStreamLimits limits_;
  std::function<std::size_t()> backlog_;

  // Opened with the stream, so that the end of its credential ends it even before a subscription; it admits
  // the changes of the twins the subscriptions name (update_hub_subjects()).
  std::shared_ptr<StreamSubscription> feed_;
  std::int64_t position_ = 0;  // the last change of the feed handled
  std::map<std::string, std::unique_ptr<Subscription>> subscriptions_;
  std::unordered_map<std::string, Twin> twins_;
  std::set<std::string> conflated_;  // twins whose changes were not framed (backlog)
  std::deque<std::string> commands_;
  std::deque<StreamMessage> out_;
  boost::asio::steady_timer idle_;  // next() waits on it while the transport's backlog is high
  bool cancelled_ = false;
  bool ended_ = false;
  bool watching_ = false;
  bool flooded_ = false;  // too many commands waited: the stream is ending
};

}  // namespace twinbridge::dtif
