// Selections of twins and their acquisition (FGMV-29 8.3.3 DTIA; flow 9.2 steps 6 to 12): thin adapters onto
// dtif::Selections and dtif::Acquisition, which decide everything.
//   POST   /v1/selections                  create a selection (the caller's; its id is the caller's choice)
//   GET    /v1/selections                  the caller's selections
//   GET    /v1/selections/{id}             one (ETag); PUT replaces it (If-Match), DELETE removes it
//   GET    /v1/selections/{id}/twins       the twins it selects now (paged; a filter runs on the workers)
//   POST   /v1/selections/{id}/acquire     acquires the properties and permissions of its twins
//   POST   /v1/twins/{id}/acquire          the same for one twin

#include <fmt/format.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

Response selection_response(int status, const store::SelectionRecord& r) {
  auto out = json_response(status, dtif::to_json(r));
  out.header("ETag", etag(r.version));
  return out;
}

core::Result<void> configured(const ApiServices& s) {
  if (s.dtia.selections == nullptr || s.dtia.acquisition == nullptr) {
    return core::fail(Errc::unavailable, "selections and acquisition are not set up in this server");
  }
  return {};
}

// The caller's selection {id} that a PUT or DELETE changes, once If-Match holds.
core::Result<store::SelectionRecord> selection_to_change(const ApiServices& s, const RequestContext& ctx,
                                                         const Request& req) {
  if (auto ok = configured(s); !ok) return std::unexpected(ok.error());
  auto current = s.dtia.selections->find(*ctx.caller, std::string(ctx.param("id")));
  if (!current) return current;
  if (auto ok = check_if_match(req.if_match, current->version); !ok) return std::unexpected(ok.error());
  return current;
}

// A request that takes no body must come without one.
core::Result<void> no_body(const Request& req) {
  if (req.body.empty()) return {};
  return core::fail_at(Errc::bad_request, "", "this request takes no body");
}

// The time and origin members of an acquisition item: {"at", "from", "operation", "urls"}.
boost::json::object acquired_json(core::Timestamp at, const boost::json::object& from) {
  boost::json::object out{{"at", core::format_rfc3339(at)}};
  for (const auto& [key, value] : from) out[key] = value;
  return out;
}

boost::json::value problem_json(const core::Error& e, const Request& req, const RequestContext& ctx) {
  return boost::json::parse(problem_response(e, req.path, ctx.request_id).body);
}

// {"twins": [{id, state, permissions, acquired | problem (+ last_acquired), permission_answer?,
// permissions_problem?}]}
Response acquisition_response(const std::vector<dtif::AcquiredTwin>& twins, const Request& req,
                              const RequestContext& ctx) {
  boost::json::array items;
  for (const auto& t : twins) {
    boost::json::object item{{"id", t.id}};
    item["state"] = t.state ? boost::json::value(*t.state) : boost::json::value(nullptr);
    item["permissions"] = t.permissions;
    if (t.acquired_at) item["acquired"] = acquired_json(*t.acquired_at, t.acquired_from);
    if (t.problem) item["problem"] = problem_json(*t.problem, req, ctx);
    if (t.last_acquired_at) item["last_acquired"] = acquired_json(*t.last_acquired_at, t.last_acquired_from);
    if (t.permissions_at) {
      item["permission_answer"] = boost::json::object{{"at", core::format_rfc3339(*t.permissions_at)},
                                                      {"from", t.permissions_from},
                                                      {"seeded_policy", t.policy_seeded}};
    }
    if (t.permissions_problem) item["permissions_problem"] = problem_json(*t.permissions_problem, req, ctx);
    items.push_back(std::move(item));
  }
  return json_response(200, boost::json::object{{"twins", std::move(items)}});
}

boost::asio::awaitable<core::Result<std::vector<dtif::AcquiredTwin>>> acquire(ApiServices& s,
                                                                              const RequestContext& ctx,
                                                                              std::vector<std::string> ids) {
  co_return co_await await_write<std::vector<dtif::AcquiredTwin>>(
      [&](auto done) { s.dtia.acquisition->acquire(*ctx.caller, std::move(ids), std::move(done)); });
}

// The ids of the twins `selection` selects now: its list as given, or what its filter finds (at most
// max_twins + 1, so that a selection over the limit is told so), under the caller's query budget on the
// workers.
boost::asio::awaitable<core::Result<std::vector<std::string>>> selected_ids(
    ApiServices& s, const RequestContext& ctx, const store::SelectionRecord& selection) {
  std::vector<std::string> ids;
  if (const auto* list = selection.document.if_contains("twins"); list != nullptr && list->is_array()) {
    for (const auto& id : list->get_array()) {
      if (id.is_string()) ids.emplace_back(id.get_string());
    }
    co_return ids;
  }
  auto budget = query_budget(s, ctx);
  const auto limit = s.dtia.acquisition->settings().max_twins + 1;
  auto work = [&s, &selection, &budget, limit]() -> core::Result<std::vector<std::string>> {
    auto page = s.dtia.selections->resolve(selection, "", limit, &budget);
    if (!page) return std::unexpected(page.error());
    std::vector<std::string> out;
    for (const auto& t : page->items) out.push_back(t->id());
    if (page->next_after) out.push_back(*page->next_after);  // one more than fits: refused by acquire()
    return out;
  };
  co_return co_await offload(s, ctx, work);
}

}  // namespace

void add_selection_routes(Router& router, ApiServices& s) {
  const std::string list = "/v1/selections";
  const std::string item = list + "/{id}";

  router.add({Method::post, list, Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                if (auto ok = configured(s); !ok) co_return std::unexpected(ok.error());
                auto body = json_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                auto stored = co_await await_write<store::SelectionRecord>(
                    [&](auto done) { s.dtia.selections->create(*ctx.caller, *body, std::move(done)); });
                if (!stored) co_return std::unexpected(stored.error());
                auto r = selection_response(201, *stored);
                r.header("Location", "/v1/selections/" + percent_encode_segment(stored->id));
                co_return r;
              }});

  router.add({Method::get, list, Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                if (auto ok = configured(s); !ok) co_return std::unexpected(ok.error());
                auto params = parse_query(req.query);
                if (!params) co_return std::unexpected(params.error());
                for (const auto& [name, value] : *params) {
                  if (name != "limit" && name != "cursor") co_return unknown_parameter(name);
                }
                auto page = page_params(*params, s);
                if (!page) co_return std::unexpected(page.error());
                auto found = s.dtia.selections->list(*ctx.caller, {page->after, page->limit});
                if (!found) co_return std::unexpected(found.error());
                boost::json::array items;
                for (const auto& r : found->items) items.push_back(dtif::to_json(r));
                co_return list_response(req, std::move(items), found->next_after);
              }});

  router.add({Method::get, item, Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request&) -> HandlerResult {
                if (auto ok = configured(s); !ok) co_return std::unexpected(ok.error());
                auto found = s.dtia.selections->find(*ctx.caller, std::string(ctx.param("id")));
                if (!found) co_return std::unexpected(found.error());
                co_return selection_response(200, *found);
              }});

  router.add({Method::put, item, Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto current = selection_to_change(s, ctx, req);
                if (!current) co_return std::unexpected(current.error());
                auto body = json_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                auto stored = co_await await_write<store::SelectionRecord>([&](auto done) {
                  s.dtia.selections->replace(*ctx.caller, *current, *body, std::move(done));
                });
                if (!stored) co_return std::unexpected(concurrent_change(stored.error(), req));
                co_return selection_response(200, *stored);
              }});

  router.add({Method::delete_, item, Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto current = selection_to_change(s, ctx, req);
                if (!current) co_return std::unexpected(current.error());
                auto done = co_await await_write<void>(
                    [&](auto cb) { s.dtia.selections->remove(*ctx.caller, *current, std::move(cb)); });
                if (!done) co_return std::unexpected(concurrent_change(done.error(), req));
                Response r;
                r.status = 204;
                co_return r;
              }});

  // The TDs of the twins a selection selects now: discovery, so registry:read.
  router.add({Method::get, item + "/twins", Auth::required, core::Permission::registry_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                if (auto ok = configured(s); !ok) co_return std::unexpected(ok.error());
                auto params = parse_query(req.query);
                if (!params) co_return std::unexpected(params.error());
                for (const auto& [name, value] : *params) {
                  if (name != "limit" && name != "cursor") co_return unknown_parameter(name);
                }
                auto page = page_params(*params, s);
                if (!page) co_return std::unexpected(page.error());
                auto selection = s.dtia.selections->find(*ctx.caller, std::string(ctx.param("id")));
                if (!selection) co_return std::unexpected(selection.error());
                auto budget = query_budget(s, ctx);
                auto work = [&s, &selection, &page, &budget]() -> core::Result<SerializedPage> {
                  auto found = s.dtia.selections->resolve(*selection, page->after, page->limit, &budget);
                  if (!found) return std::unexpected(found.error());
                  return serialize_twins(*found, budget);
                };
                auto out = co_await offload(s, ctx, work);
                if (!out) co_return std::unexpected(out.error());
                co_return list_response(req, std::move(*out));
              }});

  router.add({Method::post, item + "/acquire", Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                if (auto ok = configured(s); !ok) co_return std::unexpected(ok.error());
                if (auto ok = no_body(req); !ok) co_return std::unexpected(ok.error());
                auto selection = s.dtia.selections->find(*ctx.caller, std::string(ctx.param("id")));
                if (!selection) co_return std::unexpected(selection.error());
                auto ids = co_await selected_ids(s, ctx, *selection);
                if (!ids) co_return std::unexpected(ids.error());
                auto twins = co_await acquire(s, ctx, std::move(*ids));
                if (!twins) co_return std::unexpected(twins.error());
                co_return acquisition_response(*twins, req, ctx);
              }});

  router.add({Method::post, "/v1/twins/{id}/acquire", Auth::required, core::Permission::twins_read,
              [&s](RequestContext& ctx, const Request& req) -> HandlerResult {
                if (auto ok = configured(s); !ok) co_return std::unexpected(ok.error());
                if (auto ok = no_body(req); !ok) co_return std::unexpected(ok.error());
                if (auto ok = s.dtia.selections->may_select(ctx.caller->principal); !ok)
                  co_return std::unexpected(ok.error());
                std::vector<std::string> ids{std::string(ctx.param("id"))};
                auto twins = co_await acquire(s, ctx, std::move(ids));
                if (!twins) co_return std::unexpected(twins.error());
                co_return acquisition_response(*twins, req, ctx);
              }});
}

}  // namespace twinbridge::http
