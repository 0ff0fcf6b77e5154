#include "support/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <cctype>
#include <sstream>
#include <stdexcept>

namespace twinbridge::testing {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string HttpResponse::header(const std::string& name) const {
  auto it = headers.find(lower(name));
  return it == headers.end() ? std::string() : it->second;
}

boost::json::value HttpResponse::json() const {
  return boost::json::parse(body);
}

Connection::Connection(std::uint16_t port, std::chrono::milliseconds timeout) : timeout_(timeout) {
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) throw std::runtime_error("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error("connect() failed");
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

Connection::~Connection() {
  if (fd_ >= 0) ::close(fd_);
}

bool Connection::send(const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

bool Connection::fill() {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout_.count())) <= 0) return false;
  char chunk[65536];
  const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n <= 0) return false;
  buffer_.append(chunk, static_cast<std::size_t>(n));
  return true;
}

std::optional<HttpResponse> Connection::read_response(bool head_request) {
  std::size_t head_end;
  while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return std::nullopt;
  }
  HttpResponse r;
  const std::string head = buffer_.substr(0, head_end);
  std::size_t line_end = head.find("\r\n");
  const std::string status_line = head.substr(0, line_end);
  if (status_line.size() < 12) return std::nullopt;
  r.status = std::stoi(status_line.substr(9, 3));
  std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
  while (pos < head.size()) {
    auto end = head.find("\r\n", pos);
    if (end == std::string::npos) end = head.size();
    const auto line = head.substr(pos, end - pos);
    const auto colon = line.find(':');
    if (colon != std::string::npos) {
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[lower(line.substr(0, colon))] = value;
    }
    pos = end + 2;
  }
  buffer_.erase(0, head_end + 4);
  std::size_t length = 0;
  if (auto it = r.headers.find("content-length"); it != r.headers.end()) length = std::stoul(it->second);
  if (head_request || r.status == 204 || r.status == 304) length = 0;
  while (buffer_.size() < length) {
    if (!fill()) return std::nullopt;
  }
  r.body = buffer_.substr(0, length);
  buffer_.erase(0, length);
  return r;
}

std::optional<std::string> Connection::read_until(const std::string& delimiter) {
  std::size_t end;
  while ((end = buffer_.find(delimiter)) == std::string::npos) {
    if (!fill()) return std::nullopt;
  }
  auto out = buffer_.substr(0, end + delimiter.size());
  buffer_.erase(0, end + delimiter.size());
  return out;
}

bool Connection::closed_by_peer(std::chrono::milliseconds within) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd_, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) continue;
    char chunk[4096];
    const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return true;
  }
  return false;
}

std::string serialize(const Request& request) {
  std::string out = request.method + " " + request.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  bool has_length = false;
  for (const auto& [k, v] : request.headers) {
    out += k + ": " + v + "\r\n";
    if (lower(k) == "content-length") has_length = true;
  }
  if (!has_length && (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
                      request.method == "PATCH")) {
    out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  out += "\r\n" + request.body;
  return out;
}

HttpResponse fetch(std::uint16_t port, const Request& request) {
  Connection c(port);
  if (!c.send(serialize(request))) throw std::runtime_error("send failed");
  auto r = c.read_response();
  if (!r) throw std::runtime_error("no response to " + request.method + " " + request.path);
  return *r;
}

HttpResponse call(std::uint16_t port, const std::string& method, const std::string& path,
                  const std::string& token, const std::string& body,
                  const std::vector<std::pair<std::string, std::string>>& headers) {
  Request r{method, path, body, headers};
  if (!token.empty()) r.headers.emplace_back("Authorization", "Bearer " + token);
  if (!body.empty()) {
    bool has_type = false;
    for (const auto& [k, v] : headers) has_type = has_type || lower(k) == "content-type";
    if (!has_type) r.headers.emplace_back("Content-Type", "application/json");
  }
  return fetch(port, r);
}

std::unique_ptr<Connection> open_events(std::uint16_t port, const std::string& path, const std::string& token,
                                        const std::string& last_event_id) {
  auto c = std::make_unique<Connection>(port);
  std::vector<std::pair<std::string, std::string>> headers = {{"Authorization", "Bearer " + token}};
  if (!last_event_id.empty()) headers.emplace_back("Last-Event-ID", last_event_id);
  c->send(serialize({"GET", path, "", headers}));
  auto head = c->read_response();
  if (!head || head->status != 200 || head->header("Content-Type") != "text/event-stream") {
    throw std::runtime_error("GET " + path + " did not open an event stream");
  }
  return c;
}

std::optional<Event> next_event(Connection& c) {
  for (;;) {
    auto frame = c.read_until("\n\n");
    if (!frame) return std::nullopt;
    if (frame->starts_with(":")) continue;
    Event e;
    std::istringstream lines(*frame);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.starts_with("event: ")) e.type = line.substr(7);
      if (line.starts_with("id: ")) e.id = line.substr(4);
      if (line.starts_with("data: ")) e.data = boost::json::parse(line.substr(6));
    }
    return e;
  }
}

}  // namespace twinbridge::testing
