// Monitoring of registered systems (FGMV-29 8.2.1 / 8.3.1 "statuses and performance"), under each system:
// GET .../status (the checks as the monitor sees them now), GET .../status-history (the kept changes of
// status, oldest first, cursor pagination), GET .../sla?window=SECONDS (service-level compliance), and
// POST .../heartbeat (the system says it is alive; refreshes its TTL).

#include <fmt/format.h>
#include <boost/json/object.hpp>

#include "core/json_reader.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

core::Result<boost::json::value> optional_json_body(const Request& req, const ApiServices& s) {
  if (req.body.empty()) return boost::json::value(boost::json::object{});
  return json_body(req, s);
}

}  // namespace

void add_monitoring_routes(Router& router, ApiServices& s, registry::SystemRegistry& registry,
                           const std::string& item) {
  const auto kind = registry.kind();

  router.add({Method::get, item + "/status", Auth::required, core::Permission::registry_read,
              [&s, kind](RequestContext& ctx, const Request&) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto state = s.monitor.status(kind, id);
                if (!state) {
                  // Not known to the monitor: not registered (the store says so), or registered a moment ago.
                  auto record = s.store.system(kind, id);
                  if (!record) co_return std::unexpected(record.error());
                  s.monitor.track(*record);
                  state = s.monitor.status(kind, id);
                }
                co_return json_response(200, registry::to_json(*state));
              }});

  router.add({Method::get, item + "/status-history", Auth::required, core::Permission::registry_read,
              [&s, kind](RequestContext& ctx, const Request& req) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto params = parse_query(req.query);
                if (!params) co_return std::unexpected(params.error());
                auto page = page_params(*params, s);
                if (!page) co_return std::unexpected(page.error());
                store::StatusHistoryQuery q;
                q.kind = kind;
                q.id = id;
                q.limit = page->limit;
                if (!page->after.empty()) {
                  auto seq = integer_param("cursor", page->after, 0, INT64_MAX);
                  if (!seq) co_return std::unexpected(seq.error());
                  q.after_seq = *seq;
                }
                for (const auto& [name, value] : *params) {
                  if (name == "since") {
                    auto since = time_param("since", value);
                    if (!since) co_return std::unexpected(since.error());
                    q.since = *since;
                  } else if (name != "limit" && name != "cursor") {
                    co_return unknown_parameter(name);
                  }
                }
                if (auto record = s.store.system(kind, id); !record)
                  co_return std::unexpected(record.error());
                auto history = s.store.status_history(q);
                if (!history) co_return std::unexpected(history.error());
                boost::json::array items;
                for (const auto& e : history->items) {
                  items.push_back({{"seq", e.seq},
                                   {"at", core::format_rfc3339(e.at)},
                                   {"state", core::to_string(e.status)},
                                   {"reason", e.reason}});
                }
                co_return list_response(req, std::move(items), history->next_after);
              }});

  router.add({Method::get, item + "/sla", Auth::required, core::Permission::registry_read,
              [&s, kind](RequestContext& ctx, const Request& req) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto params = parse_query(req.query);
                if (!params) co_return std::unexpected(params.error());
                const auto longest = s.monitor.settings().sla_window;
                std::chrono::seconds window = longest;
                for (const auto& [name, value] : *params) {
                  if (name != "window") {
                    co_return unknown_parameter(name);
                  }
                  auto n = integer_param("window", value, 1, longest.count());
                  if (!n) co_return std::unexpected(n.error());
                  window = std::chrono::seconds(*n);
                }
                if (auto record = s.store.system(kind, id); !record)
                  co_return std::unexpected(record.error());
                auto report = s.monitor.sla(kind, id, window);
                if (!report) co_return std::unexpected(report.error());
                auto body = core::to_json(*report);
                body["id"] = id;
                body["window_s"] = window.count();
                co_return json_response(200, body);
              }});

  // A heartbeat may report the system's own view: {"status": "up" | "degraded" | "down", "note": "..."};
  // an empty body means up. Only the system's owner (or registry:admin) may send it.
  router.add({Method::post, item + "/heartbeat", Auth::required, core::Permission::registry_write,
              [&s, &registry, kind](RequestContext& ctx, const Request& req) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto body = optional_json_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                std::vector<core::FieldError> errors;
                core::ObjectReader r(*body, "", errors);
                std::optional<core::SystemStatus> reported;
                if (auto text = r.string("status", false, 16)) {
                  reported = core::parse_system_status(*text);
                  if (!reported || *reported == core::SystemStatus::unknown) {
                    r.add_error("/status", "must be up, degraded or down");
                  }
                }
                auto note = r.string("note", false, 1000).value_or("");
                r.reject_unknown();
                if (auto ok = core::validation_result(std::move(errors)); !ok)
                  co_return std::unexpected(ok.error());
                auto record = s.store.system(kind, id);
                if (!record) co_return std::unexpected(record.error());
                if (auto ok = registry.may_change(ctx.caller->principal, *record); !ok) {
                  co_return std::unexpected(ok.error());
                }
                if (!s.monitor.status(kind, id)) s.monitor.track(*record);
                auto state = co_await await_write<registry::MonitoredSystem>([&](auto done) {
                  s.monitor.heartbeat(kind, id, reported, std::move(note), std::move(done));
                });
                if (!state) co_return std::unexpected(state.error());
                co_return json_response(200, registry::to_json(*state));
              }});
}

}  // namespace twinbridge::http
