#pragma once
// twinbridge's HTTP server inside the test process: the real pipeline (http::Api: routing, authentication,
// authorization, problem details, metrics, with every product route) over a SQLite store in a temporary
// directory, served by http::HttpServer on 127.0.0.1 with I/O threads of its own. A test adds routes of its
// own before start() (a WebSocket echo, which the product does not have), and stop() shuts down in the order
// src/http/server.hpp documents (and src/app/serve.cpp follows), so that ASan and TSan see that order too.
// Tests of the product itself start the real process instead (server_process.hpp).
//
// The admin token is kAdminToken unless the options say otherwise. Not thread-safe: one test thread drives
// it.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "http/api.hpp"
#include "http/server.hpp"

namespace twinbridge::testing {

inline const std::string kAdminToken = "in-process-admin-token-0123456789";

struct InProcessOptions {
  http::ServerLimits limits;
  unsigned threads = 2;
  std::string admin_token = kAdminToken;
};

class InProcessServer {
 public:
  // Opens the store and builds the pipeline; throws std::runtime_error when that fails.
  explicit InProcessServer(InProcessOptions options = {});
  // Stops the server if it still runs.
  ~InProcessServer();
  InProcessServer(const InProcessServer&) = delete;
  InProcessServer& operator=(const InProcessServer&) = delete;

  // The route table, to add a test's routes before start().
  http::Router& router();
  // Listens on a free port of 127.0.0.1 and runs the I/O threads.
  void start();
  std::uint16_t port() const;

  // Graceful shutdown (HttpServer::shutdown with `grace`), then: release the loops, join the threads, destroy
  // the server, then its io_contexts. True when the server drained and every loop returned within `grace`
  // and 10 s more (otherwise the loops are stopped and the io_contexts left alone, as serve.cpp does).
  bool stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // The Prometheus text of the server's metrics.
  std::string metrics() const;
  std::size_t open_connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace twinbridge::testing
