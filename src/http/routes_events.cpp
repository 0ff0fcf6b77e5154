// W3C WoT Discovery notifications: /events (all), /events/thing_created, /events/thing_updated,
// /events/thing_deleted as Server-Sent Events; ?diff=true adds the TD (created) or the merge patch (updated);
// Last-Event-ID resumes after the given event while the hub still keeps it. Also the single place where twin
// writes are audited, stored and announced.

#include <fmt/format.h>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>

#include "core/merge_patch.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

void publish_twin_deleted(ApiServices& s, const std::string& id) {
  auto plain = boost::json::serialize(boost::json::object{{"id", id}});
  s.events.publish("thing_deleted", plain, plain);
}

void publish_twin_event(ApiServices& s, const core::TwinRecord* before, const core::TwinRecord* after) {
  if (after == nullptr) {
    publish_twin_deleted(s, before->id);
    return;
  }
  const auto& id = after->id;
  const boost::json::object plain{{"id", id}};
  std::string type;
  boost::json::value diff;
  if (before == nullptr) {
    type = "thing_created";
    diff = core::to_json(*after);
  } else {
    type = "thing_updated";
    diff = core::merge_diff(core::to_json(*before), core::to_json(*after));
    diff.as_object()["id"] = id;
  }
  s.events.publish(std::move(type), boost::json::serialize(plain), boost::json::serialize(diff));
}

boost::asio::awaitable<core::Result<core::TwinRecord>> store_new_twin(ApiServices& s,
                                                                      const RequestContext& ctx,
                                                                      core::TwinRecord twin,
                                                                      const boost::json::object& detail) {
  auto audit = audit_entry(ctx, s.clock, "twin.create", "twin", twin.id, detail);
  auto stored = co_await await_write<core::TwinRecord>(
      [&](auto done) { s.store.create_twin(std::move(twin), std::move(audit), std::move(done)); });
  if (stored) publish_twin_event(s, nullptr, &*stored);
  co_return stored;
}

boost::asio::awaitable<core::Result<core::TwinRecord>> store_changed_twin(
    ApiServices& s, const RequestContext& ctx, const Request& req, const core::TwinRecord& current,
    core::TwinRecord twin, std::string_view action, const boost::json::object& detail) {
  auto audit = audit_entry(ctx, s.clock, std::string(action), "twin", current.id, detail);
  auto stored = co_await await_write<core::TwinRecord>([&](auto done) {
    s.store.update_twin(std::move(twin), current.version, std::move(audit), std::move(done));
  });
  if (!stored) co_return std::unexpected(concurrent_change(stored.error(), req));
  publish_twin_event(s, &current, &*stored);
  co_return stored;
}

boost::asio::awaitable<core::Result<void>> remove_twin(ApiServices& s, const RequestContext& ctx,
                                                       const Request& req, const core::TwinRecord& current,
                                                       const boost::json::object& detail) {
  auto audit = audit_entry(ctx, s.clock, "twin.delete", "twin", current.id, detail);
  auto done = co_await await_write<void>(
      [&](auto cb) { s.store.delete_twin(current.id, current.version, std::move(audit), std::move(cb)); });
  if (!done) co_return std::unexpected(concurrent_change(done.error(), req));
  publish_twin_event(s, &current, nullptr);
  co_return done;
}

namespace {

// A Server-Sent Events stream of `hub`, of `type` (every type when empty), that belongs to the caller's
// credential: it ends with a stream_closed event when the credential expires or loses the permission
// `needs` (see EventHub). ?diff=true asks for the detailed payloads; Last-Event-ID resumes after that event
// while the hub still keeps it.
HandlerResult stream_events(ApiServices& s, EventHub& hub, std::string type, const RequestContext& ctx,
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
  std::optional<std::uint64_t> last;
  if (!req.last_event_id.empty()) {
    std::uint64_t n = 0;
    const auto& text = req.last_event_id;
    auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || p != text.data() + text.size()) {
      co_return core::fail_in(Errc::bad_request, core::FieldIn::header, "Last-Event-ID",
                              "must be the id of an event this server sent");
    }
    last = n;
  }
  auto executor = co_await boost::asio::this_coro::executor;
  std::set<std::string> types;
  if (!type.empty()) types.insert(std::move(type));
  Response r;
  r.content_type = "text/event-stream";
  StreamOwner owner{ctx.caller->principal.id, ctx.caller->credential, needs, std::nullopt};
  if (ctx.caller->expires) {
    // On the steady clock, so that the stream's timer ends it on time whatever the wall clock does.
    owner.expires = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::max(*ctx.caller->expires - s.clock.now(), std::chrono::microseconds(0)));
  }
  r.stream = hub.subscribe(executor, std::move(types), diff, last, std::move(owner));
  co_return r;
}

}  // namespace

void publish_status_event(ApiServices& s, core::SystemKind kind, const std::string& id,
                          const core::StatusChange& change) {
  const boost::json::object data{{"kind", core::to_string(kind)},
                                 {"id", id},
                                 {"from", core::to_string(change.from)},
                                 {"to", core::to_string(change.to)},
                                 {"reason", change.reason},
                                 {"at", core::format_rfc3339(change.at)}};
  auto text = boost::json::serialize(data);
  s.system_events.publish("status_changed", text, text);
}

void add_event_routes(Router& router, ApiServices& s) {
  for (const std::string type : {"", "thing_created", "thing_updated", "thing_deleted"}) {
    router.add({Method::get, type.empty() ? "/events" : "/events/" + type, Auth::required,
                core::Permission::registry_read,
                [&s, type](RequestContext& ctx, const Request& req) -> HandlerResult {
                  co_return co_await stream_events(s, s.events, type, ctx, req,
                                                   core::Permission::registry_read);
                }});
  }
  router.add({Method::get, "/v1/system-events", Auth::required, core::Permission::registry_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                co_return co_await stream_events(s, s.system_events, "", ctx, req,
                                                 core::Permission::registry_read);
              }});
}

}  // namespace twinbridge::http
