#include "support/upstream_server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace twinbridge::testing {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool send_all(int fd, const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 404:
      return "Not Found";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

}  // namespace

UpstreamServer::UpstreamServer(Handler handler, std::uint16_t port)
    : handler_(std::move(handler)), port_(port) {
  start();
}

UpstreamServer::~UpstreamServer() {
  stop();
}

std::string UpstreamServer::url(const std::string& path) const {
  return "http://127.0.0.1:" + std::to_string(port_) + path;
}

void UpstreamServer::set_handler(Handler handler) {
  std::lock_guard lock(mutex_);
  handler_ = std::move(handler);
}

UpstreamServer::Handler UpstreamServer::handler() const {
  std::lock_guard lock(mutex_);
  return handler_;
}

void UpstreamServer::start() {
  std::lock_guard lock(mutex_);
  if (running_) return;
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (listen_fd_ < 0) throw std::runtime_error("socket() failed");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    throw std::runtime_error("cannot listen on 127.0.0.1:" + std::to_string(port_));
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  running_ = true;
  acceptor_ = std::thread([this] { accept_loop(); });
}

void UpstreamServer::stop() {
  std::vector<std::thread> connections;
  {
    std::lock_guard lock(mutex_);
    if (!running_) return;
    running_ = false;
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  stopping_cv_.notify_all();
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    connections.swap(connections_);
  }
  for (auto& t : connections) t.join();
  std::lock_guard lock(mutex_);
  ::close(listen_fd_);
  listen_fd_ = -1;
}

void UpstreamServer::accept_loop() {
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (!running_) return;
    }
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    std::lock_guard lock(mutex_);
    if (!running_) {
      ::close(fd);
      return;
    }
    open_fds_.push_back(fd);
    connections_.emplace_back([this, fd] { serve(fd); });
  }
}

void UpstreamServer::serve(int fd) {
  auto running = [this] {
    std::lock_guard lock(mutex_);
    return running_;
  };
  std::string buffer;
  UpstreamRequest req;
  std::size_t head_end = std::string::npos;
  std::size_t content_length = 0;
  for (;;) {
    if (head_end == std::string::npos && (head_end = buffer.find("\r\n\r\n")) != std::string::npos) {
      const auto first_end = buffer.find("\r\n");
      const auto line = buffer.substr(0, first_end);
      const auto sp1 = line.find(' ');
      const auto sp2 = line.find(' ', sp1 + 1);
      req.method = line.substr(0, sp1);
      req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
      std::size_t pos = first_end + 2;
      while (pos < head_end) {
        const auto eol = buffer.find("\r\n", pos);
        const auto h = buffer.substr(pos, eol - pos);
        const auto colon = h.find(':');
        auto value = h.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        req.headers[lower(h.substr(0, colon))] = value;
        pos = eol + 2;
      }
      if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
        content_length = std::stoul(it->second);
      }
    }
    if (head_end != std::string::npos && buffer.size() >= head_end + 4 + content_length) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) {
      if (!running()) break;
      continue;
    }
    char chunk[16384];
    const auto n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
  if (head_end != std::string::npos) {
    req.body = buffer.substr(head_end + 4, content_length);
    ++requests_;
    const auto reply = handler()(req);
    std::unique_lock lock(mutex_);
    if (reply.hang) {
      stopping_cv_.wait(lock, [this] { return !running_; });
    } else if (reply.delay.count() > 0) {
      stopping_cv_.wait_for(lock, reply.delay, [this] { return !running_; });
    }
    lock.unlock();
    if (!reply.hang && !reply.close_without_reply) {
      std::string out =
          "HTTP/1.1 " + std::to_string(reply.status) + " " + reason_phrase(reply.status) + "\r\n";
      for (const auto& [k, v] : reply.headers) out += k + ": " + v + "\r\n";
      out += "Content-Length: " + std::to_string(reply.body.size()) + "\r\nConnection: close\r\n\r\n";
      out += reply.body;
      send_all(fd, out);
    }
  }
  std::lock_guard lock(mutex_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  ::close(fd);
}

}  // namespace twinbridge::testing
