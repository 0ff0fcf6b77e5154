#include "http/api.hpp"

#include <spdlog/spdlog.h>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <thread>

#include "core/credentials.hpp"
#include "http/problem.hpp"
#include "http/routes.hpp"

namespace twinbridge::http {

namespace {

constexpr std::string_view kUnmatchedRoute = "(unmatched)";

// A client's X-Request-Id is kept when it is short printable ASCII.
bool acceptable_request_id(std::string_view id) {
  bool ok = !id.empty() && id.size() <= 128;
  for (char c : id) ok = ok && c > 0x20 && c < 0x7f;
  return ok;
}

}  // namespace

std::string Api::request_id_for(const Request& request) {
  if (acceptable_request_id(request.request_id)) return request.request_id;
  // "<process prefix>-<counter>": unique per process start, cheap (no entropy, no formatting library).
  char digits[17];
  const auto n = next_request_.fetch_add(1, std::memory_order_relaxed);
  const auto end = std::to_chars(digits, digits + sizeof digits, n, 16).ptr;
  std::string id;
  id.reserve(request_id_prefix_.size() + 1 + static_cast<std::size_t>(end - digits));
  id.append(request_id_prefix_).push_back('-');
  id.append(digits, end);
  return id;
}

Api::Api(store::Store& store, Authenticator& authenticator, Metrics& metrics, const core::Clock& clock,
         registry::SystemMonitor& monitor, const dtif::TwinIndex& twin_index, ApiSettings settings,
         AccessLog* access_log)
    : workers_(std::max(1u, std::thread::hardware_concurrency())),
      services_{store, authenticator, metrics, clock, events_, system_events_, monitor, workers_, settings},
      third_party_systems_(store, core::SystemKind::third_party, sif::third_party_system_schema(),
                           settings.outbound),
      twin_systems_(store, core::SystemKind::twin, dtif::twin_system_schema(), settings.outbound),
      twins_(store, twin_index, clock),
      access_log_(access_log),
      request_id_prefix_(core::random_hex(6)) {
  add_operations_routes(router_, services_);
  add_principal_routes(router_, services_);
  add_audit_routes(router_, services_);
  add_system_routes(router_, services_, third_party_systems_, "third-party-systems", nullptr);
  add_system_routes(router_, services_, twin_systems_, "twin-systems", &twins_);
  add_twin_routes(router_, services_, twin_systems_, twins_);
  add_things_routes(router_, services_, twins_);
  add_event_routes(router_, services_);
  monitor.set_listener(
      [this](core::SystemKind kind, const std::string& id, const core::StatusChange& change) {
        publish_status_event(services_, kind, id, change);
      });
}

boost::asio::awaitable<Response> Api::handle(Request request) {
  RequestContext ctx;
  ctx.received = std::chrono::steady_clock::now();
  ctx.request_id = request_id_for(request);
  ctx.route = kUnmatchedRoute;

  Response response;
  std::vector<Method> allowed;
  auto match = router_.match(request.method, request.path, &allowed);
  if (!match) {
    response = problem_response(match.error(), request.path, ctx.request_id);
    if (!allowed.empty()) {
      std::string allow;
      for (auto m : allowed) {
        if (!allow.empty()) allow += ", ";
        allow += to_string(m);
      }
      response.header("Allow", allow);
    }
  } else {
    const Route& route = *match->route;
    ctx.route = route.pattern;
    ctx.path_params = std::move(match->params);
    core::Result<void> admitted;
    if (route.auth == Auth::required) {
      auto caller = services_.authenticator.authenticate(request.authorization, request.remote_address);
      if (!caller) {
        admitted = std::unexpected(caller.error());
      } else {
        ctx.caller = std::move(*caller);
        if (route.permission && !core::has_permission(ctx.caller->principal, *route.permission)) {
          admitted =
              core::fail(core::Errc::forbidden,
                         fmt::format("principal '{}' lacks the permission {} that {} {} requires",
                                     ctx.caller->principal.id.str(), core::to_string(*route.permission),
                                     to_string(route.method), route.pattern));
        }
      }
    }
    if (!admitted) {
      response = problem_response(admitted.error(), request.path, ctx.request_id);
    } else {
      try {
        auto result = co_await route.handler(ctx, request);
        response =
            result ? std::move(*result) : problem_response(result.error(), request.path, ctx.request_id);
      } catch (const std::exception& e) {
        spdlog::error("request {}: handler for {} failed: {}", ctx.request_id, route.pattern, e.what());
        response =
            problem_response(core::Error(core::Errc::internal, "an unexpected error occurred; it is logged"),
                             request.path, ctx.request_id);
      }
    }
  }
  finish(request, ctx, response);
  co_return response;
}

Response Api::reject(const Request& request, const core::Error& error) {
  RequestContext ctx;
  ctx.received = std::chrono::steady_clock::now();
  ctx.request_id = request_id_for(request);
  ctx.route = kUnmatchedRoute;
  auto response = problem_response(error, request.path.empty() ? "/" : request.path, ctx.request_id);
  response.close = true;
  finish(request, ctx, response);
  return response;
}

void Api::finish(const Request& request, const RequestContext& ctx, Response& response) {
  if (response.status == 200 && !request.if_none_match.empty() &&
      (request.method == Method::get || request.method == Method::head)) {
    for (const auto& [name, value] : response.headers) {
      if (name == "ETag" && etag_in_list(request.if_none_match, value, /*weak=*/true)) {
        response.status = 304;
        response.body.clear();
        break;
      }
    }
  }
  response.header("X-Request-Id", ctx.request_id);
  const auto latency = std::chrono::steady_clock::now() - ctx.received;
  const std::string_view route_key = ctx.route;  // stable address: the router's pattern or kUnmatchedRoute
  services_.metrics.observe_request(route_key, request.method, response.status, latency);
  if (services_.settings.access_log && access_log_ != nullptr) {
    boost::json::object line{
        {"ts", core::format_rfc3339(services_.clock.now())},
        {"level", response.status >= 500 ? "error" : "info"},
        {"event", "request"},
        {"request_id", ctx.request_id},
        {"method", request.method_text},
        {"path", request.path},
        {"route", route_key},
        {"status", response.status},
        {"latency_us", std::chrono::duration_cast<std::chrono::microseconds>(latency).count()},
        {"principal", ctx.caller ? std::string_view(ctx.caller->principal.id.str()) : std::string_view()},
        {"credential", ctx.caller ? std::string_view(ctx.caller->credential) : std::string_view()},
        {"remote", request.remote_address},
        {"bytes_in", request.body.size()},
        {"bytes_out", response.body.size()}};
    access_log_->write(boost::json::serialize(line));
  }
}

}  // namespace twinbridge::http
