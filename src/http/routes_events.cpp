// W3C WoT Discovery notifications: /events (all), /events/thing_created, /events/thing_updated,
// /events/thing_deleted as Server-Sent Events, and /v1/system-events (status changes), all read from the
// change feed through dtif::StreamHub; ?diff=true adds the TD (created) or the merge patch (updated);
// Last-Event-ID resumes after the given event while the store keeps it.

#include <fmt/format.h>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include "core/utf8.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

// A Server-Sent Events stream: frames what a subscription of the hub yields. Every change is one event whose
// id is its sequence number in the change feed, so Last-Event-ID resumes after it, across restarts, while
// the store keeps it. Directory notifications carry {"id"} (with ?diff=true: the TD when created, the merge
// patch when updated); other changes their data. A gap is the event stream_gap {"from", "to", "detail"}
// (ids from..to were missed); the end is the event stream_closed {"reason", "detail"}.
class SseStream final : public ResponseStream {
 public:
  SseStream(std::shared_ptr<dtif::StreamSubscription> subscription, bool diff)
      : subscription_(std::move(subscription)), diff_(diff) {}
  ~SseStream() override { subscription_->cancel(); }

  boost::asio::awaitable<std::optional<std::string>> next() override {
    auto item = co_await subscription_->next();
    if (!item) co_return std::nullopt;
    switch (item->kind) {
      case dtif::StreamItem::Kind::heartbeat:
      case dtif::StreamItem::Kind::woken:  // never poked: as a heartbeat
        co_return std::string(": heartbeat\n\n");
      case dtif::StreamItem::Kind::closed: {
        const boost::json::object data{{"reason", item->end.reason}, {"detail", item->end.detail}};
        co_return fmt::format("event: stream_closed\ndata: {}\n\n", boost::json::serialize(data));
      }
      case dtif::StreamItem::Kind::gap: {
        const boost::json::object data{
            {"from", item->gap_from},
            {"to", item->gap_until - 1},
            {"detail", fmt::format("the events {} to {} are no longer kept; read the current state instead",
                                   item->gap_from, item->gap_until - 1)}};
        co_return fmt::format("event: stream_gap\nid: {}\ndata: {}\n\n", item->gap_until - 1,
                              boost::json::serialize(data));
      }
      case dtif::StreamItem::Kind::change:
        break;
    }
    const auto& c = *item->change;
    std::string data;
    if (!diff_ &&
        (c.type == store::ChangeType::thing_created || c.type == store::ChangeType::thing_updated)) {
      data = boost::json::serialize(boost::json::object{{"id", c.subject}});
    } else {
      data = c.data;
    }
    // Like every response (Api::finish), an event never carries ill-formed UTF-8, whatever its record held.
    if (!core::is_valid_utf8(data)) data = core::to_valid_utf8(data);
    co_return fmt::format("event: {}\nid: {}\ndata: {}\n\n", store::to_string(c.type), c.seq, data);
  }

  void cancel() override { subscription_->cancel(); }

 private:
  std::shared_ptr<dtif::StreamSubscription> subscription_;
  bool diff_;
};

// A Server-Sent Events stream of the changes of `types`, that belongs to the caller's credential: it ends
// with a stream_closed event when the credential expires or loses the permission `needs` (see
// dtif::StreamHub). ?diff=true asks for the detailed payloads; Last-Event-ID resumes after that event.
HandlerResult stream_events(ApiServices& s, std::set<store::ChangeType> types, const RequestContext& ctx,
                            const Request& req, core::Permission needs) {
  auto params = parse_query(req.query);
  if (!params) co_return std::unexpected(params.error());
  bool diff = false;
  for (const auto& [k, v] : *params) {
    if (k == "diff" && (v == "true" || v == "false")) {
      diff = v == "true";
    } else {
      co_return core::fail_in(
          Errc::bad_request, core::FieldIn::query, k,
          k == "diff" ? "diff must be true or false" : fmt::format("unknown query parameter '{}'", k));
    }
  }
  std::optional<std::int64_t> last;
  if (!req.last_event_id.empty()) {
    auto n = integer_param("Last-Event-ID", req.last_event_id, 0, INT64_MAX);
    if (!n) {
      co_return core::fail_in(Errc::bad_request, core::FieldIn::header, "Last-Event-ID",
                              "must be the id of an event this server sent");
    }
    last = *n;
  }
  auto executor = co_await boost::asio::this_coro::executor;
  Response r;
  r.content_type = "text/event-stream";
  dtif::StreamOwner owner{ctx.caller->principal.id, ctx.caller->credential, needs, std::nullopt};
  if (ctx.caller->expires) {
    // On the steady clock, so that the stream's timer ends it on time whatever the wall clock does.
    owner.expires = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::max(*ctx.caller->expires - s.clock.now(), std::chrono::microseconds(0)));
  }
  r.stream = std::make_shared<SseStream>(
      s.streams.subscribe(executor, std::move(types), last, std::move(owner)), diff);
  co_return r;
}

}  // namespace

void add_event_routes(Router& router, ApiServices& s) {
  using store::ChangeType;
  const std::set<ChangeType> directory{ChangeType::thing_created, ChangeType::thing_updated,
                                       ChangeType::thing_deleted};
  router.add({Method::get, "/events", Auth::required, core::Permission::registry_read,
              [&s, directory](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto types = directory;
                co_return co_await stream_events(s, std::move(types), ctx, req,
                                                 core::Permission::registry_read);
              }});
  for (const auto type : directory) {
    router.add({Method::get, "/events/" + std::string(store::to_string(type)), Auth::required,
                core::Permission::registry_read,
                [&s, type](RequestContext& ctx, const Request& req) -> HandlerResult {
                  std::set<store::ChangeType> types{type};
                  co_return co_await stream_events(s, std::move(types), ctx, req,
                                                   core::Permission::registry_read);
                }});
  }
  router.add({Method::get, "/v1/system-events", Auth::required, core::Permission::registry_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                std::set<store::ChangeType> types{store::ChangeType::status_changed};
                co_return co_await stream_events(s, std::move(types), ctx, req,
                                                 core::Permission::registry_read);
              }});
}

}  // namespace twinbridge::http
