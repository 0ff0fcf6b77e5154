// Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI and AsyncAPI documents. None
// needs credentials, so that probes and scrapers work without secrets; none reveals data.

#include <boost/json/object.hpp>

#include "http/asyncapi.hpp"
#include "http/openapi.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

using boost::asio::awaitable;

void add_operations_routes(Router& router, ApiServices& services) {
  router.add({Method::get, "/healthz", Auth::none, std::nullopt,
              [](RequestContext&, const Request&) -> HandlerResult {
                co_return json_response(200, boost::json::object{{"status", "ok"}});
              }});

  router.add(
      {Method::get, "/readyz", Auth::none, std::nullopt,
       [&services](RequestContext&, const Request&) -> HandlerResult {
         if (services.shutting_down) {
           co_return std::unexpected(core::Error(core::Errc::unavailable, "the server is shutting down"));
         }
         const auto start = std::chrono::steady_clock::now();
         auto ping = services.store.ping();
         if (!ping) {
           co_return std::unexpected(
               core::Error(core::Errc::unavailable, "the store is not reachable: " + ping.error().detail));
         }
         const auto us =
             std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)
                 .count();
         co_return json_response(
             200, boost::json::object{
                      {"status", "ready"},
                      {"checks", boost::json::object{
                                     {"store", boost::json::object{{"status", "ok"}, {"latency_us", us}}}}}});
       }});

  router.add({Method::get, "/metrics", Auth::none, std::nullopt,
              [&services](RequestContext&, const Request&) -> HandlerResult {
                Response r;
                r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                services.metrics.query_jobs(services.workers.running(), services.workers.queued());
                r.body = services.metrics.render();
                co_return r;
              }});

  router.add({Method::get, "/openapi.json", Auth::none, std::nullopt,
              [](RequestContext&, const Request&) -> HandlerResult {
                Response r;
                r.content_type = "application/json";
                r.body = std::string(openapi_document());
                co_return r;
              }});

  router.add({Method::get, "/asyncapi.json", Auth::none, std::nullopt,
              [](RequestContext&, const Request&) -> HandlerResult {
                Response r;
                r.content_type = "application/json";
                r.body = std::string(asyncapi_document());
                co_return r;
              }});
}

}  // namespace twinbridge::http
