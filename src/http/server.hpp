#pragma once
// The HTTP/1.1 server, thread per core: the app runs one single-threaded io_context per core; the server
// opens one acceptor per io_context on the same port (SO_REUSEPORT, so the kernel spreads connections) and
// serves each connection with one coroutine on the io_context that accepted it, so a connection never needs a
// lock or a strand and threads never wake each other. The only part of twinbridge that includes Beast.
//
// Limits (ServerLimits): request head size (431), body size (413, checked from Content-Length before the body
// is read), a deadline for a whole request once its first byte arrived (slow clients are cut off), an idle
// timeout between keep-alive requests, a write timeout, a cap on open connections (further ones are closed at
// once) and on requests per connection. Requests on one connection, pipelined or not, are handled one at a
// time in order, and the read buffer is bounded, so a pipelining client cannot queue unbounded work.
//
// shutdown(): stops accepting, closes idle connections, lets every in-flight request finish and answer (with
// Connection: close), then calls `drained`; connections still busy after the grace period are closed.

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
