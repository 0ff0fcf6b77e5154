#pragma once
// HTTP messages as the routes see them: plain structs with no Beast types, so that route code compiles
// without the network headers. The session (server.cpp) converts between these and Beast messages.

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/actor.hpp"
#include "core/principal.hpp"
#include "core/time.hpp"

namespace twinbridge::http {

enum class Method { get, head, post, put, patch, delete_, options, other };

std::string_view to_string(Method m);

struct Request {
  Method method = Method::get;
  std::string method_text;
  std::string target;  // as received: path and query
  std::string path;    // the path as received (still percent-encoded); the router decodes each segment
  std::string query;   // raw query string, without '?'
  std::string body;
  // The headers routes use; the session copies them.
  std::string content_type;
  std::string authorization;
  std::string if_match;
  std::string if_none_match;
  std::string accept;
  std::string request_id;  // X-Request-Id as sent by the client (may be empty)
  std::string last_event_id;
  std::string remote_address;
  // Set (from the connection's thread) when the client goes away before the answer is written: long work
  // for the request (a query) stops. Null when nobody watches the connection.
  std::shared_ptr<std::atomic<bool>> client_gone;
};

// A response body that goes on after the head (Server-Sent Events): the session writes the head, then every
// chunk next() yields, until next() yields nothing (the stream ended), the client goes away, or the server
// shuts down (the session then calls cancel(), from the stream's own thread).
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  virtual boost::asio::awaitable<std::optional<std::string>> next() = 0;
  virtual void cancel() = 0;
};

struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;                      // close the connection after this response
  std::shared_ptr<ResponseStream> stream;  // set for streamed bodies: `body` is then ignored

  Response& header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

// Who is calling, and on which credential. The admin token yields a synthetic operator principal whose id is
// kAdminTokenPrincipal (an id no stored principal can have: the "twinbridge:" prefix is reserved).
// The authenticated caller of a request: the domain's actor (core/actor.hpp), on the http channel.
using Caller = core::Actor;

inline constexpr std::string_view kAdminTokenPrincipal = "twinbridge:admin-token";

// Travels with one request through the pipeline: no request state lives in globals or thread-locals.
struct RequestContext {
  std::string request_id;
  std::optional<Caller> caller;
  std::vector<std::pair<std::string, std::string>> path_params;
  std::chrono::steady_clock::time_point received;
  std::shared_ptr<const std::atomic<bool>> client_gone;  // see Request::client_gone
  std::string_view
      route;  // the matched route pattern (owned by the router) or a constant, for logs and metrics

  std::string_view param(std::string_view name) const {
    for (const auto& [k, v] : path_params) {
      if (k == name) return v;
    }
    return {};
  }
};

}  // namespace twinbridge::http
