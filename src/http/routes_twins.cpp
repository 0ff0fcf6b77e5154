// Twins of digital twin systems (FGMV-29 8.3.1 DTSR "list of twins", 8.3.2 DTSD): a twin system adds,
// replaces and removes its twins one by one under /v1/twin-systems/{id}/twins; everyone with registry:read
// discovers twins at /v1/twins (by owning system, and with an RFC 9535 JSONPath filter over the Thing
// Descriptions).

#include <fmt/format.h>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include "http/routes.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

Response twin_response(int status, const core::TwinRecord& t) {
  auto r = json_response(status, core::to_json(t));
  r.content_type = "application/td+json";
  r.header("ETag", etag(t.version));
  return r;
}

// The twin `twin_id` of system `system_id`; not_found when either is missing or the twin belongs elsewhere.
core::Result<core::TwinRecord> twin_of(const dtif::TwinRegistry& twins, const std::string& system_id,
                                       const std::string& twin_id) {
  auto twin = twins.find(twin_id);
  if (!twin) return twin;
  if (twin->system_id != system_id) {
    return core::fail(Errc::not_found, fmt::format("twin system '{}' has no twin '{}'", system_id, twin_id));
  }
  return twin;
}

core::Result<dtif::TwinDiscoveryQuery> twin_query(const Request& req, const ApiServices& s) {
  auto params = parse_query(req.query);
  if (!params) return std::unexpected(params.error());
  auto page = page_params(*params, s);
  if (!page) return std::unexpected(page.error());
  dtif::TwinDiscoveryQuery q;
  q.after = page->after;
  q.limit = page->limit;
  for (const auto& [name, value] : *params) {
    if (name == "system") {
      q.system_id = value;
    } else if (name == "filter") {
      auto path = query::JsonPath::parse(value);
      if (!path) return core::fail_in(Errc::bad_request, core::FieldIn::query, "filter", path.error().detail);
      q.filter = std::move(*path);
    } else if (name == "sort") {
      auto sort = sort_param(value, dtif::parse_twin_sort, "id, title, created or modified");
      if (!sort) return std::unexpected(sort.error());
      std::tie(q.sort, q.descending) = *sort;
    } else if (name != "limit" && name != "cursor") {
      return unknown_parameter(name);
    }
  }
  return q;
}

// A page whose TDs take more memory than this is serialized on the query workers, not on the I/O thread.
constexpr std::size_t kInlinePageBytes = 256 * 1024;

// Discovery under the caller's query budget. With a filter or another order than id it examines every
// twin: on the worker pool, which also serializes the page. By system or id alone it is a short walk, and
// only a large page is serialized on the worker pool.
boost::asio::awaitable<core::Result<SerializedPage>> discover_twins(ApiServices& s, const RequestContext& ctx,
                                                                    const dtif::TwinRegistry& twins,
                                                                    dtif::TwinDiscoveryQuery& q) {
  auto budget = query_budget(s, ctx);
  q.budget = &budget;
  if (!q.filter && q.sort == dtif::TwinSort::id && !q.descending) {
    const auto page = twins.discover(q);
    if (!budget.ok()) co_return std::unexpected(budget.error("filter"));
    std::size_t bytes = 0;
    for (const auto& t : page.items) bytes += t->bytes();
    if (bytes <= kInlinePageBytes) co_return serialize_twins(page, budget);
    auto serialize = [&page, &budget] { return serialize_twins(page, budget); };
    co_return co_await offload(s, ctx, serialize);
  }
  auto work = [&twins, &q, &budget]() -> core::Result<SerializedPage> {
    auto page = twins.discover(q);
    if (!budget.ok()) return std::unexpected(budget.error("filter"));
    return serialize_twins(page, budget);
  };
  co_return co_await offload(s, ctx, work);
}

}  // namespace

void add_twin_routes(Router& router, ApiServices& s, registry::SystemRegistry& systems) {
  const auto& twins = s.twins.registry();
  const std::string list = "/v1/twin-systems/{id}/twins";
  const std::string item = list + "/{twin}";

  router.add({Method::get, list, Auth::required, core::Permission::registry_read,
              [&s, &systems, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                const std::string system_id(ctx.param("id"));
                if (auto system = s.store.system(systems.kind(), system_id); !system) {
                  co_return std::unexpected(system.error());
                }
                auto q = twin_query(req, s);
                if (!q) co_return std::unexpected(q.error());
                q->system_id = system_id;
                auto page = co_await discover_twins(s, ctx, twins, *q);
                if (!page) co_return std::unexpected(page.error());
                co_return list_response(req, std::move(*page));
              }});

  router.add({Method::post, list, Auth::required, core::Permission::twins_publish,
              [&s, &systems](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto system = s.store.system(systems.kind(), std::string(ctx.param("id")));
                if (!system) co_return std::unexpected(system.error());
                auto body = td_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                auto stored = co_await await_write<core::TwinRecord>(
                    [&](auto done) { s.twins.create(*ctx.caller, &*system, *body, {}, std::move(done)); });
                if (!stored) co_return std::unexpected(stored.error());
                auto r = twin_response(201, *stored);
                r.header("Location",
                         fmt::format("/v1/twin-systems/{}/twins/{}", percent_encode_segment(system->id),
                                     percent_encode_segment(stored->id)));
                co_return r;
              }});

  router.add({Method::get, item, Auth::required, core::Permission::registry_read,
              [&twins](RequestContext& ctx, const Request&) -> HandlerResult {
                auto twin = twin_of(twins, std::string(ctx.param("id")), std::string(ctx.param("twin")));
                if (!twin) co_return std::unexpected(twin.error());
                co_return twin_response(200, *twin);
              }});

  router.add({Method::put, item, Auth::required, core::Permission::twins_publish,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto current = twin_of(twins, std::string(ctx.param("id")), std::string(ctx.param("twin")));
                if (!current) co_return std::unexpected(current.error());
                if (auto ok = twins.may_publish(ctx.caller->principal, *current); !ok)
                  co_return std::unexpected(ok.error());
                if (auto ok = check_if_match(req.if_match, current->version); !ok)
                  co_return std::unexpected(ok.error());
                auto body = td_body(req, s);
                if (!body) co_return std::unexpected(body.error());
                auto stored = co_await await_write<core::TwinRecord>([&](auto done) {
                  s.twins.replace(*ctx.caller, *current, *body, "twin.replace", {}, std::move(done));
                });
                if (!stored) co_return std::unexpected(concurrent_change(stored.error(), req));
                co_return twin_response(200, *stored);
              }});

  router.add({Method::delete_, item, Auth::required, core::Permission::twins_publish,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto current = twin_of(twins, std::string(ctx.param("id")), std::string(ctx.param("twin")));
                if (!current) co_return std::unexpected(current.error());
                if (auto ok = twins.may_publish(ctx.caller->principal, *current); !ok)
                  co_return std::unexpected(ok.error());
                if (auto ok = check_if_match(req.if_match, current->version); !ok)
                  co_return std::unexpected(ok.error());
                auto done = co_await await_write<void>(
                    [&](auto cb) { s.twins.remove(*ctx.caller, *current, {}, std::move(cb)); });
                if (!done) co_return std::unexpected(concurrent_change(done.error(), req));
                Response r;
                r.status = 204;
                co_return r;
              }});

  router.add({Method::get, "/v1/twins", Auth::required, core::Permission::registry_read,
              [&s, &twins](RequestContext& ctx, const Request& req) -> HandlerResult {
                auto q = twin_query(req, s);
                if (!q) co_return std::unexpected(q.error());
                auto page = co_await discover_twins(s, ctx, twins, *q);
                if (!page) co_return std::unexpected(page.error());
                co_return list_response(req, std::move(*page));
              }});

  router.add({Method::get, "/v1/twins/{id}", Auth::required, core::Permission::registry_read,
              [&twins](RequestContext& ctx, const Request&) -> HandlerResult {
                auto twin = twins.find(std::string(ctx.param("id")));
                if (!twin) co_return std::unexpected(twin.error());
                co_return twin_response(200, *twin);
              }});
}

}  // namespace twinbridge::http
