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
// shutdown(): stops accepting, closes idle connections, lets every in-flight request finish and answer (with
// Connection: close), then calls `drained`; connections still busy after the grace period are closed.
//
// While a request is handled, the session watches its connection: when the client closes it, the request's
// `client_gone` flag is set, and long work for it (a query under a QueryBudget) stops. A client that
// half-closes its side after sending a request counts as gone.
//
// Lifetime, in one order (src/app/serve.cpp does it): shutdown(); when `drained` runs, release whatever keeps
// the io_contexts running, so that each run() returns once every operation of the server's coroutines has
// completed; join the threads; destroy the HttpServer while its io_contexts still exist; destroy the
// io_contexts last. The coroutines hold the server's state, so destroying an io_context with operations still
// pending would destroy that state inside the io_context's own destructor: never do that.

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
