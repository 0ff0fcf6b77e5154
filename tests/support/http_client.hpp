#pragma once
// A small blocking HTTP/1.1 client over a raw TCP socket, for integration tests: it sends exactly the bytes a
// test wants (pipelined requests, oversized heads, one byte at a time) and parses responses with
// Content-Length bodies. Every read has a deadline, so a test never hangs.

#include <boost/json/value.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace twinbridge::testing {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;

  std::string header(const std::string& name) const;
  boost::json::value json() const;  // parsed body; throws when it is not JSON
};

class Connection {
 public:
  explicit Connection(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Sends raw bytes; false when the peer has closed.
  bool send(const std::string& bytes);
  // Reads one response; nullopt when the connection closed (or timed out) before a whole response arrived.
  // A response to HEAD has no body whatever its Content-Length says: pass `head`.
  std::optional<HttpResponse> read_response(bool head = false);
  // Reads until `delimiter` arrives and returns everything up to and including it (for streamed bodies such
  // as Server-Sent Events); nullopt on close or timeout.
  std::optional<std::string> read_until(const std::string& delimiter);
  // True when the peer closes the connection within `within` (reads and discards anything that arrives).
  bool closed_by_peer(std::chrono::milliseconds within);
  bool is_open() const { return fd_ >= 0; }

 private:
  bool fill();
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  std::string buffer_;
};

struct Request {
  Request(std::string m = "GET", std::string p = "/", std::string b = {},
          std::vector<std::pair<std::string, std::string>> h = {})
      : method(std::move(m)), path(std::move(p)), body(std::move(b)), headers(std::move(h)) {}
  std::string method;
  std::string path;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

std::string serialize(const Request& request);

// One request on a fresh connection.
HttpResponse fetch(std::uint16_t port, const Request& request);

// Convenience: a request with a bearer token and, when a body is given, Content-Type application/json.
HttpResponse call(std::uint16_t port, const std::string& method, const std::string& path,
                  const std::string& token, const std::string& body = "",
                  const std::vector<std::pair<std::string, std::string>>& headers = {});

// Opens a Server-Sent Events stream (GET `path` with a bearer token) and returns the connection after the
// response head, which must be 200 text/event-stream.
std::unique_ptr<Connection> open_events(std::uint16_t port, const std::string& path, const std::string& token,
                                        const std::string& last_event_id = "");

struct Event {
  std::string type;
  std::string id;
  boost::json::value data;
};

// The next event of the stream, skipping heartbeat comments; nullopt on close or timeout.
std::optional<Event> next_event(Connection& c);

}  // namespace twinbridge::testing
