// The W3C WoT Discovery Thing Description Directory API over the same set of twins as /v1/twins
// (FGMV-29 8.3.2): /things (listing with offset/limit pagination, POST of an anonymous TD), /things/{id} (PUT
// create-or-replace, GET, PATCH merge patch, DELETE), registration information with ttl/expires, and
// /search/jsonpath. Media types and status codes follow the Recommendation: application/td+json for one TD,
// application/ld+json for a listing, 201 with Location on creation, 204 on update and deletion, 400 for
// invalid TDs and queries (as problem details).

#include <fmt/format.h>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/object.hpp>

#include "core/access.hpp"
#include "core/merge_patch.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

constexpr std::size_t kMaxSearchTwins = 200'000;  // /search/jsonpath refuses a directory larger than this

Response td_response(const core::TwinRecord& t) {
  auto r = json_response(200, core::to_json(t));
  r.content_type = "application/td+json";
  r.header("ETag", etag(t.version));
  return r;
}

// The Recommendation answers an invalid TD with 400 (twinbridge's own API uses 422 for schema violations).
std::unexpected<core::Error> invalid_td(core::Error e) {
  if (e.code == Errc::validation_failed) e.code = Errc::bad_request;
  return std::unexpected(std::move(e));
}

Response no_content() {
  Response r;
  r.status = 204;
  return r;
}

// `found`, when the caller may publish it (dtif::TwinRegistry::may_publish: the holder of the twin, with
// twins:publish, or registry:admin) and If-Match holds; dtif::TwinService checks the first again.
core::Result<core::TwinRecord> changeable(const dtif::TwinRegistry& twins,
                                          core::Result<core::TwinRecord> found, const RequestContext& ctx,
                                          const Request& req) {
  if (!found) return found;
  if (auto ok = twins.may_publish(ctx.caller->principal, *found); !ok) return std::unexpected(ok.error());
  if (auto ok = check_if_match(req.if_match, found->version); !ok) return std::unexpected(ok.error());
  return found;
}

core::Result<std::size_t> size_param(const std::vector<std::pair<std::string, std::string>>& params,
                                     std::string_view name, std::size_t fallback, std::size_t max) {
  for (const auto& [k, v] : params) {
    if (k != name) continue;
    auto n = integer_param(name, v, 0, static_cast<std::int64_t>(max));
    if (!n) return std::unexpected(n.error());
    return static_cast<std::size_t>(*n);
  }
  return fallback;
}

}  // namespace

void add_things_routes(Router& router, ApiServices& s) {
  const auto& twins = s.twins.registry();
  router.add({Method::get, "/things", Auth::required, core::Permission::registry_read,
              [&s, &twins](RequestContext&, const Request& req) -> HandlerResult {
                auto params = parse_query(req.query);
                if (!params) co_return std::unexpected(params.error());
                for (const auto& [k, v] : *params) {
                  if (k != "offset" && k != "limit") {
                    co_return unknown_parameter(k);
                  }
                }
                auto offset = size_param(*params, "offset", 0, 1'000'000'000);
                if (!offset) co_return std::unexpected(offset.error());
                auto limit =
                    size_param(*params, "limit", s.settings.default_page_size, s.settings.max_page_size);
                if (!limit) co_return std::unexpected(limit.error());
                dtif::TwinDiscoveryQuery q;
                q.offset = *offset;
                q.limit = std::max<std::size_t>(*limit, 1);
                const auto page = twins.discover(q);
                auto unlimited = query::QueryBudget::unlimited();  // a page: at most max_page_size TDs
                auto items = serialize_twins(page, unlimited);
                if (!items) co_return std::unexpected(items.error());
                Response r;
                r.status = 200;
                r.content_type = "application/ld+json";
                r.body = std::move(items->items);
                r.utf8_checked = items->utf8_checked;
                if (page.next_after) {
                  r.header("Link", fmt::format("</things?offset={}&limit={}>; rel=\"next\"",
                                               *offset + q.limit, q.limit));
                }
                co_return r;
              }});

  router.add({Method::post, "/things", Auth::required, core::Permission::twins_publish,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto body = td_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                if (const auto* o = body->if_object(); o != nullptr && o->contains("id")) {
                  co_return core::fail_at(
                      Errc::bad_request, "/id",
                      "POST /things registers anonymous TDs; use PUT /things/{id} for a TD with "
                      "an id");
                }
                // A TD written here belongs to no twin system: a directory twin, held by its publisher.
                auto stored = co_await await_write<core::TwinRecord>([&](auto done) {
                  s.twins.create(*ctx.caller, nullptr, *body, {{"via", "/things"}}, std::move(done));
                });
                if (!stored) co_return invalid_td(stored.error());
                Response r;
                r.status = 201;
                r.header("Location", "/things/" + percent_encode_segment(stored->id));
                co_return r;
              }});

  router.add({Method::get, "/things/{id}", Auth::required, core::Permission::registry_read,
              [&twins](RequestContext& ctx, const Request&) -> HandlerResult {
                auto twin = twins.find(std::string(ctx.param("id")));
                if (!twin) co_return invalid_td(twin.error());
                co_return td_response(*twin);
              }});

  router.add({Method::put, "/things/{id}", Auth::required, core::Permission::twins_publish,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                const std::string id(ctx.param("id"));
                auto body = td_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                if (auto* o = body->if_object()) {
                  if (const auto* given = o->if_contains("id");
                      given != nullptr && *given != boost::json::value(id)) {
                    co_return core::fail_at(Errc::bad_request, "/id", "must equal the id in the path");
                  }
                  (*o)["id"] = id;
                }
                auto current = twins.find(id);
                if (!current && current.error().code != Errc::not_found)
                  co_return std::unexpected(current.error());
                if (!current) {
                  if (auto ok = twins.may_publish_directory_twin(ctx.caller->principal); !ok) {
                    co_return std::unexpected(ok.error());
                  }
                  // The id of a new twin comes from the path here: its problems name the path parameter.
                  if (auto ok = core::validate_id(id, "id", core::IdKind::iri, core::FieldIn::path); !ok) {
                    auto e = std::move(ok.error());
                    e.code = Errc::bad_request;
                    co_return std::unexpected(std::move(e));
                  }
                  auto stored = co_await await_write<core::TwinRecord>([&](auto done) {
                    s.twins.create(*ctx.caller, nullptr, *body, {{"via", "/things"}}, std::move(done));
                  });
                  if (!stored) co_return invalid_td(stored.error());
                  Response r;
                  r.status = 201;
                  r.header("Location", "/things/" + percent_encode_segment(id));
                  co_return r;
                }
                current = changeable(twins, std::move(current), ctx, req);
                if (!current) co_return std::unexpected(current.error());
                auto stored = co_await await_write<core::TwinRecord>([&](auto done) {
                  s.twins.replace(*ctx.caller, *current, *body, "twin.replace", {{"via", "/things"}},
                                  std::move(done));
                });
                if (!stored) co_return invalid_td(concurrent_change(stored.error(), req));
                co_return no_content();
              }});

  router.add({Method::patch, "/things/{id}", Auth::required, core::Permission::twins_publish,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto patch = json_body(req, s, "application/merge-patch+json");
                if (!patch) co_return std::unexpected(patch.error());
                auto current = changeable(twins, twins.find(std::string(ctx.param("id"))), ctx, req);
                if (!current) co_return std::unexpected(current.error());
                auto merged = core::merge_patch(current->document, *patch);
                auto stored = co_await await_write<core::TwinRecord>([&](auto done) {
                  s.twins.replace(*ctx.caller, *current, merged, "twin.update",
                                  {{"via", "/things"}, {"patch", *patch}}, std::move(done));
                });
                if (!stored) co_return invalid_td(concurrent_change(stored.error(), req));
                co_return no_content();
              }});

  router.add({Method::delete_, "/things/{id}", Auth::required, core::Permission::twins_publish,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto current = changeable(twins, twins.find(std::string(ctx.param("id"))), ctx, req);
                if (!current) co_return std::unexpected(current.error());
                auto done = co_await await_write<void>([&](auto cb) {
                  s.twins.remove(*ctx.caller, *current, {{"via", "/things"}}, std::move(cb));
                });
                if (!done) co_return std::unexpected(concurrent_change(done.error(), req));
                co_return no_content();
              }});

  router.add(
      {Method::get, "/search/jsonpath", Auth::required, core::Permission::registry_read,
       [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
         auto params = parse_query(req.query);
         if (!params) co_return std::unexpected(params.error());
         std::optional<std::string> text;
         for (const auto& [k, v] : *params) {
           if (k == "query") text = v;
         }
         if (!text) {
           co_return core::fail_in(Errc::bad_request, core::FieldIn::query, "query",
                                   "the query parameter 'query' (an RFC 9535 JSONPath query) is required");
         }
         auto path = query::JsonPath::parse(*text);
         if (!path)
           co_return core::fail_in(Errc::bad_request, core::FieldIn::query, "query", path.error().detail);
         // The query runs over the array of every registered, unexpired TD, as the Recommendation says: on
         // the worker pool, under the caller's query budget, and the answer is serialized there too, as far
         // as the budget's output bytes allow.
         auto budget = query_budget(s, ctx);
         auto run = [&twins, &path, &budget]() -> core::Result<SerializedPage> {
           if (const auto n = twins.count(); n > kMaxSearchTwins) {
             return core::fail(Errc::unavailable,
                               fmt::format("the directory holds {} TDs, more than the {} /search/jsonpath "
                                           "searches; narrow the search with /v1/twins?system=...&filter=...",
                                           n, kMaxSearchTwins));
           }
           // The copies of the TDs live in one arena, freed in a few large blocks when the search ends.
           boost::json::monotonic_resource arena;
           boost::json::array all(&arena);
           dtif::TwinDiscoveryQuery q;
           q.limit = 1000;
           q.budget = &budget;
           for (;;) {
             const auto page = twins.discover(q);
             for (const auto& t : page.items) all.push_back(t->td_json(&arena));
             if (!budget.ok()) return std::unexpected(budget.error("query"));
             if (!page.next_after) break;
             q.after = *page.next_after;
           }
           const boost::json::value root(std::move(all));
           const auto selected = path->select(root, budget);
           if (!budget.ok()) return std::unexpected(budget.error("query"));
           auto out = serialize_nodelist(selected, budget);
           if (!out) return std::unexpected(budget.error("query"));
           SerializedPage body{std::move(*out), std::nullopt, false};
           body.check_utf8();
           return body;
         };
         auto search = [&s, &run]() {
           auto result = run();
           s.memory.release();  // what the search allocated goes back to the system
           return result;
         };
         auto body = co_await offload(s, ctx, search);
         if (!body) co_return std::unexpected(body.error());
         Response r;
         r.content_type = "application/json";
         r.body = std::move(body->items);
         r.utf8_checked = body->utf8_checked;
         co_return r;
       }});
}

}  // namespace twinbridge::http
