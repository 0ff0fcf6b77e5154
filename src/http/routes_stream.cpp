// The live stream of twins (FGMV-29 flow 9.2 step 14): thin adapters that frame what a dtif::TwinStream
// yields (the protocol is described there and in /asyncapi.json).
//   GET /v1/stream          WebSocket (subprotocol twinbridge.v1): subscribe / unsubscribe messages in,
//                           subscribed, state, change, ... out
//   GET /v1/stream/events   the same messages as Server-Sent Events, for one subscription given in the query
//                           (id=<twin id> repeated | filter=<JSONPath> | selection=<id>,
//                           snapshot=true|false); the event name is the message type, the event id its seq,
//                           and Last-Event-ID resumes after it.
// The WebSocket closes after a "closed" message with 4401 (the credential ended: expired, revoked, principal
// disabled or deleted), 4403 (the principal lost twins:read) or 1011 (the feed could not be read).

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>

#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

int close_code(std::string_view reason) {
  if (reason == "permission_revoked") return 4403;
  if (reason == "unavailable") return 1011;
  if (reason == "too_many_commands") return 1008;
  return 4401;
}

std::shared_ptr<dtif::TwinStream> open_stream(ApiServices& s, const Caller& caller,
                                              boost::asio::any_io_executor executor) {
  dtif::TwinStreamServices services{s.streams,         s.feed,  s.twins,         s.twins.index(),
                                    s.dtia.selections, s.clock, &problem_summary};
  return std::make_shared<dtif::TwinStream>(std::move(services), caller, std::move(executor),
                                            s.settings.stream);
}

class StreamSession final : public WebSocketSession {
 public:
  explicit StreamSession(std::shared_ptr<dtif::TwinStream> stream) : stream_(std::move(stream)) {}

  boost::asio::awaitable<void> run(std::shared_ptr<WebSocketChannel> channel) override {
    std::weak_ptr<WebSocketChannel> weak = channel;
    stream_->set_backlog([weak] {
      auto c = weak.lock();
      return c ? c->queued_bytes() : std::size_t{0};
    });
    // The writer: every message the stream yields, in order, one shared text for many connections. (The
    // executor is awaited first: GCC 12 destroys a lambda temporary of a co_await expression twice.)
    const auto executor = co_await boost::asio::this_coro::executor;
    boost::asio::co_spawn(
        executor,
        [stream = stream_, channel]() -> boost::asio::awaitable<void> {
          while (auto m = co_await stream->next()) {
            if (!channel->send(m->json)) break;
            if (m->last) {
              channel->close(close_code(m->close_reason), m->close_reason);
              break;
            }
          }
          stream->cancel();
        },
        boost::asio::detached);
    // The reader: the client's commands. One read stays pending all along (pongs, the close handshake).
    while (auto text = co_await channel->read()) stream_->command(std::move(*text));
    stream_->cancel();
  }

 private:
  std::shared_ptr<dtif::TwinStream> stream_;
};

class StreamEvents final : public ResponseStream {
 public:
  explicit StreamEvents(std::shared_ptr<dtif::TwinStream> stream) : stream_(std::move(stream)) {}
  ~StreamEvents() override { stream_->cancel(); }

  boost::asio::awaitable<std::optional<std::string>> next() override {
    if (ended_) co_return std::nullopt;
    auto m = co_await stream_->next();
    if (!m) co_return std::nullopt;
    // One subscription per event stream: when it is refused, the stream ends after saying why.
    ended_ = m->last || m->type == "error";
    // An event id only where the message stands for a place in the feed, so that Last-Event-ID resumes there.
    if (m->seq > 0) co_return fmt::format("event: {}\nid: {}\ndata: {}\n\n", m->type, m->seq, *m->json);
    co_return fmt::format("event: {}\ndata: {}\n\n", m->type, *m->json);
  }

  void cancel() override { stream_->cancel(); }

 private:
  std::shared_ptr<dtif::TwinStream> stream_;
  bool ended_ = false;
};

// The subscribe command that GET /v1/stream/events' query string makes.
core::Result<boost::json::object> sse_subscribe(const Request& req) {
  auto params = parse_query(req.query);
  if (!params) return std::unexpected(params.error());
  boost::json::object command{{"type", "subscribe"}, {"id", "events"}};
  boost::json::array ids;
  for (const auto& [k, v] : *params) {
    if (k == "id") {
      ids.emplace_back(v);
    } else if ((k == "filter" || k == "selection") && !command.contains(k)) {
      command[k] = v;
    } else if (k == "snapshot" && (v == "true" || v == "false")) {
      command["snapshot"] = v == "true";
    } else {
      return core::fail_in(Errc::bad_request, core::FieldIn::query, k,
                           k == "snapshot" ? "snapshot must be true or false"
                           : k == "filter" || k == "selection"
                               ? fmt::format("{} may be given once", k)
                               : fmt::format("unknown query parameter '{}'", k));
    }
  }
  if (!ids.empty()) command["twins"] = std::move(ids);
  const int ways = static_cast<int>(command.contains("twins")) +
                   static_cast<int>(command.contains("filter")) +
                   static_cast<int>(command.contains("selection"));
  if (ways != 1) {
    return core::fail_in(Errc::bad_request, core::FieldIn::query, "id",
                         "name the twins by exactly one of id (repeated), filter and selection");
  }
  if (!req.last_event_id.empty()) {
    auto n = integer_param("Last-Event-ID", req.last_event_id, 0, INT64_MAX);
    if (!n) {
      return core::fail_in(Errc::bad_request, core::FieldIn::header, "Last-Event-ID",
                           "must be the id of an event this server sent");
    }
    command["after"] = *n;
  }
  return command;
}

}  // namespace

void add_stream_routes(Router& router, ApiServices& s) {
  router.add({Method::get, "/v1/stream", Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request&) -> HandlerResult {
                Response r;
                r.websocket = std::make_shared<StreamSession>(
                    open_stream(s, *ctx.caller, co_await boost::asio::this_coro::executor));
                co_return r;
              }});
  router.add({Method::get, "/v1/stream/events", Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto command = sse_subscribe(req);
                if (!command) co_return std::unexpected(command.error());
                auto stream = open_stream(s, *ctx.caller, co_await boost::asio::this_coro::executor);
                stream->command(std::move(*command));
                Response r;
                r.content_type = "text/event-stream";
                r.stream = std::make_shared<StreamEvents>(std::move(stream));
                co_return r;
              }});
}

}  // namespace twinbridge::http
