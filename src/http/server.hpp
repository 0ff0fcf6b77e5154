#pragma once
// The HTTP/1.1 server, thread per core: the app runs one single-threaded io_context per core; the server
// opens one acceptor per io_context on the same port (SO_REUSEPORT, so the kernel spreads connections) and
// serves each connection with one coroutine on the io_context that accepted it, so a connection never needs a
// lock or a strand. Threads meet only where a request's work leaves its I/O thread: store writes (the store's
// writer thread) and long work (the API's worker pool) post their completion back to the request's I/O
// thread, and shutdown posts to every loop. The only part of twinbridge that includes Beast.
//
// Limits (ServerLimits): request head size (431), body size (413, checked from Content-Length before the body
// is read), a deadline for a whole request once its first byte arrived (slow clients are cut off), an idle
// timeout between keep-alive requests, a write timeout, a cap on open connections (further ones are closed at
// once) and on requests per connection. Requests on one connection, pipelined or not, are handled one at a
// time in order, and the read buffer is bounded, so a pipelining client cannot queue unbounded work.
//
// WebSocket (RFC 6455): when a route answers a valid WebSocket handshake with Response::websocket, the
// server completes the handshake (101, echoing the subprotocol twinbridge.v1 when offered, and no other) on
// the same socket and runs the route's WebSocketSession with a WebSocketChannel (message.hpp) until it
// returns. Text messages only; permessage-deflate is off. Limits: an incoming message of at most
// max_ws_message_bytes (1009 beyond); text that is not UTF-8 is 1007, a binary message 1003; at most
// max_ws_queue_bytes queued for sending (the channel closes with 1008 "client too slow" beyond); every
// write of outgoing messages and the closing handshake must be done within write_timeout, or the connection
// is dropped; the opening handshake too. An idle connection is pinged (Beast's suggested server timeouts: a
// ping after 150 s without anything received, dropped when nothing arrived for 300 s). One reader (the
// session's read()) and one writer (the server's write loop, which sends the queue in order, every queued
// message in one gathered write of frames (frame_gate.hpp), and then the close frame) work on the
// connection's thread; other threads only queue messages and post a wake-up.
//
// shutdown(): stops accepting, closes idle connections, lets every in-flight request finish and answer (with
// Connection: close), closes every WebSocket with 1001 (going away) after the messages already queued, then
// calls `drained`; connections still busy after the grace period are closed.
//
// While a request is handled, the session watches its connection: when the client closes it, the request's
// `client_gone` flag is set, and long work for it (a query under a QueryBudget) stops. A client that
// half-closes its side after sending a request counts as gone.
//
// Lifetime, in one order (src/app/serve.cpp does it): shutdown(); when `drained` runs, release whatever keeps
// the io_contexts running, so that each run() returns once every operation of the server's coroutines has
// completed; join the threads; destroy the HttpServer while its io_contexts still exist; destroy the
// io_contexts last. The coroutines hold the server's state, so destroying an io_context with operations still
// pending would destroy that state inside the io_context's own destructor: never do that. A WebSocketChannel
// may outlive all of it (a session or another thread still holds it): once its connection has ended it holds
// no I/O object and posts nothing, so it may be destroyed anywhere, at any time.

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "http/api.hpp"

namespace twinbridge::http {

struct ServerLimits {
  std::size_t max_body_bytes = 1024 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::chrono::milliseconds read_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};
  std::chrono::milliseconds write_timeout{10'000};
  std::size_t max_connections = 10'000;
  std::size_t max_requests_per_connection = 100'000;
  std::size_t max_ws_message_bytes = 64 * 1024;      // largest incoming WebSocket message (1009 beyond)
  std::size_t max_ws_queue_bytes = 4 * 1024 * 1024;  // outgoing bytes queued per WebSocket (1008 beyond)
};

class HttpServer {
 public:
  // `contexts`: one io_context per I/O thread, each run by exactly one thread; they must outlive the server.
  HttpServer(std::vector<boost::asio::io_context*> contexts, Api& api, Metrics& metrics, ServerLimits limits);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens; port 0 picks a free port. Returns the bound "host:port".
  core::Result<std::string> listen(const std::string& host, std::uint16_t port);
  void start();
  void shutdown(std::chrono::milliseconds grace, std::function<void()> drained);
  std::size_t open_connections() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace twinbridge::http
