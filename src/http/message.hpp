#pragma once
// HTTP messages as the routes see them: plain structs with no Beast types, so that route code compiles
// without the network headers. The session (server.cpp) converts between these and Beast messages, and
// implements the WebSocket transport (WebSocketChannel) a route's WebSocketSession runs on.

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
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

// The WebSocket subprotocol of twinbridge: the server echoes it in the handshake when the client offers it,
// and echoes no other. A browser, which cannot set Authorization on a WebSocket, offers it together with its
// credential as a second subprotocol, kWebSocketBearerPrefix + token (see src/http/README.md).
inline constexpr std::string_view kWebSocketProtocol = "twinbridge.v1";
inline constexpr std::string_view kWebSocketBearerPrefix = "bearer.";

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
  // A valid WebSocket opening handshake (RFC 6455 4.2.1): GET, HTTP/1.1, Upgrade: websocket, Connection:
  // Upgrade, a Sec-WebSocket-Key and Sec-WebSocket-Version: 13. Only then may a route's WebSocketSession run.
  bool websocket_upgrade = false;
  // The subprotocols of Sec-WebSocket-Protocol, in the client's order (set with websocket_upgrade). The
  // pipeline takes a credential ("bearer.<token>") out of it before routing: routes never see one here.
  std::vector<std::string> websocket_protocols;
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

// A WebSocket connection (RFC 6455) as a route's WebSocketSession sees it: text messages in and out. The
// server (server.cpp) implements it over Beast on the connection's I/O thread.
//
// Threads: send(), close(), queued_bytes() and is_open() may be called from any thread, never block, and stay
// safe after the connection has ended (they then do nothing). read() is awaited by the session's run()
// coroutine only, one call at a time.
//
// Outgoing messages go out in the order send() queued them. The queue is bounded (limits.max_ws_queue_bytes):
// a send() that would take it over the bound drops what waits and closes the connection with 1008 "client
// too slow". A stream that would rather conflate watches queued_bytes() and sends less before that.
// Incoming messages are bounded too (limits.max_ws_message_bytes): a larger one closes with 1009; a text
// message that is not UTF-8 closes with 1007; a binary message with 1003.
class WebSocketChannel {
 public:
  virtual ~WebSocketChannel() = default;

  // The next text message from the peer; nullopt once the connection is closing or gone, whoever ended it
  // (the peer, close(), a limit, the server's shutdown, a network failure). Messages that arrive after the
  // closing handshake began are dropped.
  virtual boost::asio::awaitable<std::optional<std::string>> read() = 0;

  // Queues a text message, which must be valid UTF-8 (the server does not check what the application
  // sends). The shared_ptr lets one serialized message go to many channels without copies; it is held until
  // written. False when the message was not queued: the channel is closing or gone, or the message took the
  // queue over its bound (the channel is then closing with 1008).
  virtual bool send(std::shared_ptr<const std::string> text) = 0;

  // Begins the closing handshake with `code` (RFC 6455 7.4.1: 1000 normal, 1001 going away, 1008 policy
  // violation, 1011 internal error, 4000..4999 for the application) and `reason` (cut to 123 bytes), once the
  // messages already queued are written. Only the first close counts. A code that may not be sent (RFC
  // 6455 7.4: 1004..1006, 1014..2999, or outside 1000..4999) is sent as 1011.
  virtual void close(int code, std::string reason) = 0;

  // Bytes queued and not yet written (the message being written included).
  virtual std::size_t queued_bytes() const = 0;

  // Whether send() would still queue a message (not closing, not gone).
  virtual bool is_open() const = 0;
};

// What a route returns, in Response::websocket, to accept a WebSocket handshake. The session holds what the
// handler set it up with (a subscription, the caller's identity); the request's RequestContext and Request
// are gone when run() begins.
class WebSocketSession {
 public:
  virtual ~WebSocketSession() = default;

  // Runs on the connection's I/O thread once the handshake is done (101 sent). When it returns, the messages
  // still queued are written and the connection is closed with 1000 (unless it was closed otherwise); an
  // exception closes it with 1011. What the peer sends besides messages (pongs to the server's keep-alive
  // pings, its own pings, its close frame) is processed only while a read() is pending, so a session keeps
  // one pending all along, even one that only sends (otherwise the idle timeout ends the connection). It
  // should return soon after read() yields nullopt: the server's graceful shutdown waits for it.
  virtual boost::asio::awaitable<void> run(std::shared_ptr<WebSocketChannel> channel) = 0;
};

struct Response {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
  // The body is known to be well-formed UTF-8: a worker that serialized it checked it (SerializedPage), so
  // that the pipeline's last check (Api::finish) does not scan a large body again on the I/O thread.
  bool utf8_checked = false;
  std::shared_ptr<ResponseStream> stream;  // set for streamed bodies: `body` is then ignored
  // Set by a route that serves a WebSocket: the server answers 101 Switching Protocols (with the headers
  // above) and runs the session. To a request that is no valid WebSocket handshake the pipeline answers 426
  // instead. `status`, `content_type` and `body` are then ignored.
  std::shared_ptr<WebSocketSession> websocket;

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
