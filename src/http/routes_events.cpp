// W3C WoT Discovery notifications: /events (all), /events/thing_created, /events/thing_updated,
// /events/thing_deleted as Server-Sent Events; ?diff=true adds the TD (created) or the merge patch (updated);
// Last-Event-ID resumes after the given event while the hub still keeps it.

#include <fmt/format.h>
#include <boost/asio/this_coro.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>

#include "core/merge_patch.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

void publish_twin_event(ApiServices& s, const core::TwinRecord* before, const core::TwinRecord* after) {
  const auto& id = after != nullptr ? after->id : before->id;
  const boost::json::object plain{{"id", id}};
  std::string type;
  boost::json::value diff;
  if (before == nullptr) {
    type = "thing_created";
    diff = core::to_json(*after);
  } else if (after == nullptr) {
    type = "thing_deleted";
    diff = plain;
  } else {
    type = "thing_updated";
    diff = core::merge_diff(core::to_json(*before), core::to_json(*after));
    diff.as_object()["id"] = id;
  }
  s.events.publish(std::move(type), boost::json::serialize(plain), boost::json::serialize(diff));
}

void add_event_routes(Router& router, ApiServices& s) {
  for (const std::string type : {"", "thing_created", "thing_updated", "thing_deleted"}) {
    router.add({Method::get, type.empty() ? "/events" : "/events/" + type, Auth::required,
                core::Permission::registry_read,
                [&s, type](RequestContext&, const Request& req) -> HandlerResult {
                  auto params = parse_query(req.query);
                  if (!params) co_return std::unexpected(params.error());
                  bool diff = false;
                  for (const auto& [k, v] : *params) {
                    if (k == "diff" && (v == "true" || v == "false")) {
                      diff = v == "true";
                    } else {
                      co_return core::fail_in(Errc::bad_request, core::FieldIn::query, k,
                                              k == "diff" ? "diff must be true or false"
                                                          : fmt::format("unknown query parameter '{}'", k));
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
                  if (!type.empty()) types.insert(type);
                  Response r;
                  r.content_type = "text/event-stream";
                  r.stream = s.events.subscribe(executor, std::move(types), diff, last);
                  co_return r;
                }});
  }
}

}  // namespace twinbridge::http
