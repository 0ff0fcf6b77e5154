#pragma once
// A real HTTP/1.1 server on loopback for tests of twinbridge's outbound calls (health probes now, the
// gateway later): every connection is served by a thread that reads one request, asks the test's handler
// for the reply, and writes it. The handler may make the reply slow, hang until the server stops, or close
// without answering. stop() closes the listener and every connection, so the port refuses connections until
// start() listens on it again: an upstream that goes down and comes back.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace twinbridge::testing {

struct UpstreamRequest {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

struct UpstreamReply {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds delay{0};  // before the reply is written
  bool hang = false;                   // never reply; the connection stays open until stop()
  bool close_without_reply = false;
};

class UpstreamServer {
 public:
  using Handler = std::function<UpstreamReply(const UpstreamRequest&)>;

  // Listens on 127.0.0.1 (port 0: a free one) and serves with `handler`.
  explicit UpstreamServer(Handler handler, std::uint16_t port = 0);
  ~UpstreamServer();
  UpstreamServer(const UpstreamServer&) = delete;
  UpstreamServer& operator=(const UpstreamServer&) = delete;

  std::uint16_t port() const { return port_; }
  std::string url(const std::string& path) const;
  void set_handler(Handler handler);
  std::size_t requests() const { return requests_; }

  void stop();
  void start();

 private:
  void accept_loop();
  void serve(int fd);
  Handler handler() const;

  mutable std::mutex mutex_;
  std::condition_variable stopping_cv_;
  Handler handler_;
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  bool running_ = false;
  std::atomic<std::size_t> requests_{0};
  std::thread acceptor_;
  std::vector<std::thread> connections_;
  std::vector<int> open_fds_;
};

}  // namespace twinbridge::testing
