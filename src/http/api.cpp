#include "http/api.hpp"

#include <spdlog/spdlog.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <thread>

#include "core/credentials.hpp"
#include "core/utf8.hpp"
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

// The headers that routes read or echo must hold well-formed UTF-8 (RFC 9110 leaves bytes above 0x7F opaque;
// twinbridge refuses those that are not UTF-8 rather than carry them into details, logs or data).
core::Result<void> check_header_text(const Request& request) {
  const std::pair<std::string_view, const std::string*> headers[] = {
      {"X-Request-Id", &request.request_id},   {"Last-Event-ID", &request.last_event_id},
      {"If-Match", &request.if_match},         {"If-None-Match", &request.if_none_match},
      {"Content-Type", &request.content_type}, {"Accept", &request.accept},
  };
  for (const auto& [name, value] : headers) {
    if (const auto bad = core::invalid_utf8_offset(*value); bad != std::string_view::npos) {
      return core::fail_in(
          core::Errc::bad_request, core::FieldIn::header, std::string(name),
          fmt::format("{} is not valid UTF-8: {}", name, core::describe_invalid_utf8(*value, bad)));
    }
  }
  return {};
}

// Browsers cannot set Authorization on a WebSocket; they offer the credential as a subprotocol instead,
// "bearer.<token>", beside twinbridge.v1 (the one the server echoes: never the credential). On a valid
// WebSocket handshake the credential becomes the request's Authorization and leaves the list, so that routes
// and logs never see it. Errors: bad_request when more than one credential is offered (two subprotocols, or
// one and an Authorization header) or when twinbridge.v1 is not offered beside it (the browser would refuse
// the answer: a server must echo one of the offered subprotocols).
core::Result<void> take_websocket_credential(Request& request) {
  if (!request.websocket_upgrade) return {};
  auto& offered = request.websocket_protocols;
  const auto is_credential = [](const std::string& p) { return p.starts_with(kWebSocketBearerPrefix); };
  const auto credentials = std::count_if(offered.begin(), offered.end(), is_credential);
  if (credentials == 0) return {};
  const auto refuse = [](std::string detail) {
    return core::fail_in(core::Errc::bad_request, core::FieldIn::header, "Sec-WebSocket-Protocol",
                         std::move(detail));
  };
  if (credentials > 1) return refuse("offers more than one credential (bearer.<token>)");
  if (!request.authorization.empty()) {
    return refuse("offers a credential (bearer.<token>) beside an Authorization header: send one of them");
  }
  if (std::find(offered.begin(), offered.end(), kWebSocketProtocol) == offered.end()) {
    return refuse(
        fmt::format("offers a credential (bearer.<token>) without the subprotocol {}: offer both, "
                    "and the server echoes {}",
                    kWebSocketProtocol, kWebSocketProtocol));
  }
  const auto it = std::find_if(offered.begin(), offered.end(), is_credential);
  request.authorization = "Bearer " + it->substr(kWebSocketBearerPrefix.size());
  offered.erase(it);
  return {};
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

Api::Api(store::Store& store, store::ChangeFeed& feed, dtif::StreamHub& streams, dtif::TwinService& twins,
         Authenticator& authenticator, Metrics& metrics, const core::Clock& clock,
         registry::SystemMonitor& monitor, ApiSettings settings, AccessLog* access_log, DtiaServices dtia)
    : store_(store),
      streams_(streams),
      workers_({.threads = settings.query_workers != 0 ? settings.query_workers
                                                       : std::max(1u, std::thread::hardware_concurrency()),
                .max_running_per_key = 0,
                .max_queued_per_key = settings.max_queued_queries}),
      // Every worker may run one principal's batches (a twin system pushing from many connections): the
      // principals with batches waiting take turns.
      ingest_({.threads = settings.ingest_workers != 0 ? settings.ingest_workers
                                                       : std::max(1u, std::thread::hardware_concurrency()),
               .max_running_per_key = settings.ingest_workers != 0
                                          ? settings.ingest_workers
                                          : std::max(1u, std::thread::hardware_concurrency()),
               .max_queued_per_key = settings.max_queued_batches}),
      services_{store, authenticator, metrics,  clock,   feed,    streams,
                twins, monitor,       workers_, ingest_, memory_, settings},
      third_party_systems_(store, core::SystemKind::third_party, sif::third_party_system_schema(),
                           settings.outbound),
      twin_systems_(store, core::SystemKind::twin, dtif::twin_system_schema(), settings.outbound),
      access_log_(access_log),
      request_id_prefix_(core::random_hex(6)) {
  services_.dtia = dtia;
  add_operations_routes(router_, services_);
  add_principal_routes(router_, services_);
  add_audit_routes(router_, services_);
  add_system_routes(router_, services_, third_party_systems_, "third-party-systems", nullptr);
  add_system_routes(router_, services_, twin_systems_, "twin-systems", &twins.registry());
  add_twin_routes(router_, services_, twin_systems_);
  add_things_routes(router_, services_);
  add_state_routes(router_, services_);
  add_selection_routes(router_, services_);
  add_event_routes(router_, services_);
  add_stream_routes(router_, services_);
  auto& gauge = prometheus::BuildGauge()
                    .Name("twinbridge_streams")
                    .Help("Subscriptions to the change feed open now (Server-Sent Events and WebSocket)")
                    .Register(metrics.registry());
  streams_.set_gauge(&gauge.Add({}));
}

Api::~Api() {
  workers_.stop();
  ingest_.stop();
  streams_.set_gauge(nullptr);
}

boost::asio::awaitable<Response> Api::handle(Request request) {
  RequestContext ctx;
  ctx.received = std::chrono::steady_clock::now();
  ctx.request_id = request_id_for(request);
  ctx.route = kUnmatchedRoute;
  ctx.client_gone = request.client_gone;

  Response response;
  std::vector<Method> allowed;
  auto match = router_.match(request.method, request.path, &allowed);
  if (auto headers = check_header_text(request); !headers) {
    response = problem_response(headers.error(), request.path, ctx.request_id);
  } else if (auto credential = take_websocket_credential(request); !credential) {
    response = problem_response(credential.error(), request.path, ctx.request_id);
  } else if (!match) {
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
        ctx.caller->request_id = ctx.request_id;
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
        if (!result && !result.error().log_detail.empty()) {
          spdlog::error("request {}: {} {}: {}", ctx.request_id, to_string(route.method), route.pattern,
                        result.error().log_detail);
        }
        response =
            result ? std::move(*result) : problem_response(result.error(), request.path, ctx.request_id);
        if (response.websocket && !request.websocket_upgrade) {
          // A WebSocket endpoint asked for without a (valid) WebSocket handshake: RFC 6455 4.2.2 and RFC
          // 9110 15.5.22 name the protocol and version the client should ask for.
          response = problem_response(
              core::Error(core::Errc::upgrade_required,
                          fmt::format("{} is a WebSocket endpoint: open it with a WebSocket handshake (GET "
                                      "with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key and "
                                      "Sec-WebSocket-Version: 13)",
                                      route.pattern)),
              request.path, ctx.request_id);
          response.header("Upgrade", "websocket").header("Sec-WebSocket-Version", "13");
        } else if (response.websocket) {
          response.status = 101;  // the server completes the handshake
        }
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
  // The last line of defence: whatever a route built from stored or echoed text, no response carries
  // ill-formed UTF-8 (every body twinbridge serves is JSON or text). Input is refused before it gets here, so
  // this is a bug or a row from an older binary: logged, and answered with U+FFFD in place of the bad bytes.
  if (!response.stream && !response.utf8_checked) {
    if (const auto bad = core::invalid_utf8_offset(response.body); bad != std::string_view::npos) {
      spdlog::error("request {}: the response of {} held ill-formed UTF-8 at byte {}; answered with U+FFFD",
                    ctx.request_id, ctx.route, bad);
      response.body = core::to_valid_utf8(response.body);
    }
  }
  const auto latency = std::chrono::steady_clock::now() - ctx.received;
  const std::string_view route_key = ctx.route;  // stable address: the router's pattern or kUnmatchedRoute
  services_.metrics.observe_request(route_key, request.method, response.status, latency);
  if (services_.settings.access_log && access_log_ != nullptr) {
    boost::json::object line{
        {"ts", core::format_rfc3339(services_.clock.now())},
        {"level", response.status >= 500 ? "error" : "info"},
        {"event", "request"},
        {"request_id", ctx.request_id},
        {"method", core::is_valid_utf8(request.method_text) ? request.method_text
                                                            : core::to_valid_utf8(request.method_text)},
        {"path", core::is_valid_utf8(request.path) ? request.path : core::to_valid_utf8(request.path)},
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
