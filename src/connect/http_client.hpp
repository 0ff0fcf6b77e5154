#pragma once
// HttpClient: twinbridge's outbound HTTP/1.1 client (http and https), for calls twinbridge makes to other
// systems: health probes now, the gateway later. Every call is bounded: one deadline covers name resolution,
// connect, TLS handshake, writing and reading; the response head and body have size limits, and a larger
// response fails the call instead of being buffered.
//
// Each call opens its own connection and closes it afterwards (a health probe must see a fresh connect);
// a pooled mode for the gateway comes with it. https verifies the peer against the system's trust store (or
// `ca_file`) and the URL's host name.
//
// Every call passes the outbound guard (options.outbound): the URL first, then every address its host
// resolved to, before any connection is made; the call connects only to the addresses it checked.
// Redirects are never followed: a 3xx is returned as it came.
//
// Thread-safety: send() may be called from any thread; the call runs on the io_context given at
// construction and `done` runs there. Errors: bad_request for a URL that cannot be called (syntax, scheme,
// userinfo, host spelling); forbidden for a destination the outbound guard refuses (the detail starts with
// "refused by the outbound policy"); unavailable for everything the network or the peer causes, with a
// detail naming it ("connection refused", "timed out after 500 ms", "response body larger than 65536
// bytes", ...).

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "connect/outbound_guard.hpp"
#include "core/error.hpp"

namespace boost::asio {
class io_context;
}

namespace twinbridge::connect {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
  std::chrono::milliseconds timeout{5'000};
  std::size_t max_response_body = 64 * 1024;
};

struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;
  std::chrono::microseconds elapsed{0};  // from the start of the call to the last byte of the response

  // The first header of that name (case-insensitive), or empty.
  std::string_view header(std::string_view name) const;
};

struct HttpClientOptions {
  std::string ca_file;  // PEM bundle for https; empty: the system's trust store
  std::string user_agent = "twinbridge";
  std::size_t max_response_head = 16 * 1024;
  OutboundGuard outbound;  // default: every refused range stays refused
};

class HttpClient {
 public:
  using Done = std::move_only_function<void(core::Result<HttpResponse>)>;

  // Throws on an unusable ca_file (start-up configuration).
  HttpClient(boost::asio::io_context& io, HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  void send(HttpRequest request, Done done);

  struct Impl;  // defined in http_client.cpp only

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace twinbridge::connect
