#pragma once
// Shared by the route files of src/http: registration functions and the small helpers every handler uses
// (JSON bodies, JSON responses, ETags, pagination, awaiting a store write). Not used outside src/http.

#include <fmt/format.h>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value.hpp>

#include <boost/asio/executor_work_guard.hpp>

#include <optional>
#include <string>

#include "core/audit.hpp"
#include "dtif/twin_registry.hpp"
#include "http/api.hpp"

namespace twinbridge::http {

void add_operations_routes(Router& router, ApiServices& services);
void add_principal_routes(Router& router, ApiServices& services);
void add_audit_routes(Router& router, ApiServices& services);
// `twins` is given for twin systems: their registration may carry the initial list of twins.
void add_system_routes(Router& router, ApiServices& services, registry::SystemRegistry& registry,
                       const std::string& collection, const dtif::TwinRegistry* twins);
// Under each system of `registry`: status, status history, SLA report, heartbeat.
void add_monitoring_routes(Router& router, ApiServices& services, registry::SystemRegistry& registry,
                           const std::string& item);
void add_event_routes(Router& router, ApiServices& services);
void add_things_routes(Router& router, ApiServices& services);
void add_twin_routes(Router& router, ApiServices& services, registry::SystemRegistry& twin_systems);
// Twin state, policies and access checks (routes_state.cpp).
void add_state_routes(Router& router, ApiServices& services);
// Selections of twins and their acquisition from the DT systems (routes_selections.cpp).
void add_selection_routes(Router& router, ApiServices& services);
// The live stream of twins: /v1/stream (WebSocket) and /v1/stream/events (SSE) (routes_stream.cpp).
void add_stream_routes(Router& router, ApiServices& services);

// A store precondition failure becomes 409 when the client sent no If-Match: it asked for no condition, the
// resource changed between our read and our write, and a retry will do.
core::Error concurrent_change(core::Error e, const Request& req);

// The request body as JSON. Checks the Content-Type against `media_type` (415), parses with the configured
// depth limit (400 with the byte offset of the syntax error; invalid UTF-8 is a syntax error).
core::Result<boost::json::value> json_body(const Request& request, const ApiServices& services,
                                           std::string_view media_type = "application/json");

// A Thing Description body: application/td+json (W3C WoT) or application/json.
core::Result<boost::json::value> td_body(const Request& request, const ApiServices& services);

Response json_response(int status, const boost::json::value& body);

// ETag of a versioned resource: a strong validator "\"<version>\"".
std::string etag(std::int64_t version);

// True when the comma-separated entity-tag list (If-Match, If-None-Match) is "*" or names `etag`. With
// `weak`, a "W/" prefix is ignored (RFC 9110 weak comparison, for If-None-Match); otherwise it never matches
// (strong).
bool etag_in_list(std::string_view list, std::string_view etag, bool weak);

// Compares an If-Match header with the current version: empty header → ok; "*" → ok; a list of ETags → ok
// when one matches; otherwise precondition_failed. Weak validators never match (RFC 9110 13.1.1 strong
// comparison).
core::Result<void> check_if_match(std::string_view if_match, std::int64_t version);

// A system's representation carries its status, which twinbridge changes without a new registration
// version; its ETag is "<version>.<status stamp>" so that a cached copy is never revalidated over a changed
// status. If-Match on a system compares the version part only: a client's write cannot change the status,
// so a status change in between must not fail it.
std::string system_etag(const core::SystemRecord& record);
core::Result<void> check_system_if_match(std::string_view if_match, const core::SystemRecord& record);

// The `sort` query parameter: "member" ascending, "-member" descending; `parse` maps a member name to the
// order (nullopt: not sortable), `allowed` lists the names for the error.
template <class Parse>
auto sort_param(std::string_view value, Parse parse, std::string_view allowed)
    -> core::Result<std::pair<typename std::invoke_result_t<Parse, std::string_view>::value_type, bool>> {
  const bool descending = value.starts_with('-');
  auto sort = parse(descending ? value.substr(1) : value);
  if (!sort) {
    return core::fail_in(
        core::Errc::bad_request, core::FieldIn::query, "sort",
        fmt::format("cannot sort by '{}'; use {}, with a leading '-' for descending order", value, allowed));
  }
  return std::pair(*sort, descending);
}

// 400 for a query parameter the route does not take.
std::unexpected<core::Error> unknown_parameter(std::string_view name);
// An integer query parameter from min to max; 400 naming it otherwise.
core::Result<std::int64_t> integer_param(std::string_view name, std::string_view value, std::int64_t min,
                                         std::int64_t max);
// An RFC 3339 date-time query parameter; 400 naming it otherwise.
core::Result<core::Timestamp> time_param(std::string_view name, std::string_view value);

struct PageParams {
  std::string after;
  std::size_t limit = 100;
};
// Reads `limit` and `cursor` (opaque; produced by list_response) and rejects unknown parameters not in
// `extra`.
core::Result<PageParams> page_params(const std::vector<std::pair<std::string, std::string>>& query,
                                     const ApiServices& services);
// {"items": [...], "next_cursor": "..."} with a Link: <...>; rel="next" header when there is a next page.
Response list_response(const Request& request, boost::json::array items,
                       const std::optional<std::string>& next_after);
// The same with the items already serialized as one JSON array.
Response list_response(const Request& request, std::string items_json,
                       const std::optional<std::string>& next_after);

// A page of items serialized as one JSON array, by a worker when it is large (see offload()).
struct SerializedPage {
  std::string items;
  std::optional<std::string> next_after;
  bool utf8_checked = false;  // the text is well-formed UTF-8 (check_utf8() found it so)
  // Checks the text on the calling thread (the worker's), so that the answer's last check skips it.
  void check_utf8();
};
Response list_response(const Request& request, SerializedPage page);

// A page of twins as the JSON array of their TDs, written straight from the shared views (no copy into a
// response document) and checked for UTF-8 where it is written. Every TD is charged to the budget's output
// bytes: a page of large TDs over the limit is refused (a smaller `limit` answers it).
core::Result<SerializedPage> serialize_twins(const store::Page<std::shared_ptr<const core::TwinView>>& page,
                                             query::QueryBudget& budget);

// An audit entry for a change made by the caller of `ctx`.
core::AuditEntry audit_entry(const RequestContext& ctx, const core::Clock& clock, std::string action,
                             std::string target_type, std::string target_id, boost::json::object detail = {});

// The JSON array of a query's nodelist, serialized while charging every byte to budget.output(); nullopt once
// the budget is exhausted (the answer would have been too large), having built at most one chunk more.
std::optional<std::string> serialize_nodelist(const std::vector<const boost::json::value*>& nodes,
                                              query::QueryBudget& budget);

// The budget of one query of the caller (query/budget.hpp): the configured limits, stopped when the client
// goes away.
query::QueryBudget query_budget(const ApiServices& services, const RequestContext& ctx);

template <class T>
struct AsResult {
  using type = core::Result<T>;
};
template <class T>
struct AsResult<core::Result<T>> {
  using type = core::Result<T>;
};

// The completion of an awaiting coroutine's `handler`: called once, from any thread, with the result, it
// resumes the coroutine on its own executor. The executor's io_context counts it as outstanding work until
// then, so a graceful stop waits for it.
template <class R, class Handler>
auto resume_on_executor(Handler handler) {
  auto guard = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
  return [handler = std::move(handler), guard = std::move(guard)](R result) mutable {
    auto executor = guard.get_executor();
    boost::asio::post(executor, [handler = std::move(handler), result = std::move(result),
                                 guard = std::move(guard)]() mutable {
      guard.reset();
      std::move(handler)(std::move(result));
    });
  };
}

// Why a worker pool did not run a job (`fate` is not JobFate::run): 429 "too many of your <waiting>; wait for
// their answers" (Retry-After 1) when the principal has too many jobs waiting, 503 when the pool stops.
core::Error refusal(core::JobFate fate, std::string_view waiting);

// Runs work() on the API's worker pool and resumes the coroutine on its own executor with the result. For
// work that takes milliseconds or more (a JSONPath filter over every twin, a large answer): it does not hold
// up the other connections of the I/O thread, and the pool shares its workers fairly between principals
// (core/fair_pool.hpp): when the caller already has settings.max_queued_queries jobs waiting, the answer is
// 429 without running work. The executor's io_context counts the job as outstanding work until it resumes,
// so a graceful stop waits for it. `work` must be a named local of the awaiting coroutine (GCC 12 destroys
// non-trivial temporaries of a co_await expression twice).
template <class F>
boost::asio::awaitable<typename AsResult<std::invoke_result_t<F&>>::type> offload(ApiServices& services,
                                                                                  const RequestContext& ctx,
                                                                                  F& work) {
  using R = typename AsResult<std::invoke_result_t<F&>>::type;
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(R)>(
      [&services, &ctx, &work](auto handler) {
        auto job = [&work, complete = resume_on_executor<R>(std::move(handler))](core::JobFate fate) mutable {
          if (fate != core::JobFate::run) {
            return complete(std::unexpected(refusal(fate, "queries are waiting for a worker")));
          }
          R result = core::fail(core::Errc::internal, "the work failed unexpectedly");
          try {
            result = work();
          } catch (const std::exception&) {
            // a bug: answered 500
          }
          complete(std::move(result));
        };
        services.workers.post(ctx.caller ? ctx.caller->principal.id.str() : std::string("anonymous"),
                              std::move(job));
      },
      boost::asio::use_awaitable);
}

// Awaits a store write started by `start(completion)`; the coroutine resumes on its own executor.
// `completion` must be called exactly once (the store's contract).
template <class T, class Start>
boost::asio::awaitable<core::Result<T>> await_write(Start start) {
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(core::Result<T>)>(
      [&start](auto handler) mutable { start(resume_on_executor<core::Result<T>>(std::move(handler))); },
      boost::asio::use_awaitable);
}

// Awaits a store write started by `start(completion)` on a worker of `pool` (under `key`, the principal that
// asked) rather than on the I/O thread; the coroutine resumes on its own executor. A pool that refuses the
// job completes it with the refusal (see refusal()).
template <class T, class Start>
boost::asio::awaitable<core::Result<T>> await_write_on(core::FairPool& pool, const std::string& key,
                                                       Start start) {
  co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(core::Result<T>)>(
      [&start, &pool, &key](auto handler) mutable {
        pool.post(key, [start = std::move(start), complete = resume_on_executor<core::Result<T>>(
                                                      std::move(handler))](core::JobFate fate) mutable {
          if (fate == core::JobFate::run) return start(std::move(complete));
          complete(std::unexpected(refusal(fate, "state batches are waiting to be applied")));
        });
      },
      boost::asio::use_awaitable);
}

}  // namespace twinbridge::http
