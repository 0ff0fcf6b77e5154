#include "http/server.hpp"

#include <fmt/format.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "core/utf8.hpp"
#include "http/frame_gate.hpp"

namespace twinbridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using asio::awaitable;
using asio::ip::tcp;
using core::Errc;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kLingerBytes = 64 * 1024 * 1024;
constexpr std::chrono::seconds kLingerTime{2};
constexpr std::size_t kMaxCloseReason = 123;  // a close frame's payload is 125 bytes at most, 2 for the code

// Why a WebSocket connection ended: the label of twinbridge_websocket_closes_total{reason}.
enum class WsEnd {
  peer,             // the peer closed (its close frame), whatever its code
  session,          // the route's session closed it or returned
  shutdown,         // the server's graceful shutdown (1001)
  too_slow,         // the outgoing queue overflowed (1008), or a write took longer than write_timeout
  message_too_big,  // an incoming message over max_ws_message_bytes (1009)
  invalid_utf8,     // a text message that is not UTF-8 (1007)
  binary_message,   // a binary message (1003)
  protocol_error,   // a frame that breaks RFC 6455 (1002)
  timeout,          // no answer to pings, or a closing handshake that did not finish in time
  connection_lost,  // the network failed under the connection
};
constexpr std::array kWsEnds = {WsEnd::peer,           WsEnd::session,         WsEnd::shutdown,
                                WsEnd::too_slow,       WsEnd::message_too_big, WsEnd::invalid_utf8,
                                WsEnd::binary_message, WsEnd::protocol_error,  WsEnd::timeout,
                                WsEnd::connection_lost};

std::string_view to_string(WsEnd e) {
  switch (e) {
    case WsEnd::peer:
      return "peer";
    case WsEnd::session:
      return "session";
    case WsEnd::shutdown:
      return "shutdown";
    case WsEnd::too_slow:
      return "too_slow";
    case WsEnd::message_too_big:
      return "message_too_big";
    case WsEnd::invalid_utf8:
      return "invalid_utf8";
    case WsEnd::binary_message:
      return "binary_message";
    case WsEnd::protocol_error:
      return "protocol_error";
    case WsEnd::timeout:
      return "timeout";
    case WsEnd::connection_lost:
      return "connection_lost";
  }
  return "connection_lost";
}

// The WebSocket families of the server's metrics (Metrics::registry()); prometheus-cpp's series are
// thread-safe.
struct WsMetrics {
  explicit WsMetrics(prometheus::Registry& registry) {
    open = &prometheus::BuildGauge()
                .Name("twinbridge_websocket_connections")
                .Help("WebSocket connections open now (handshake done, not yet closed)")
                .Register(registry)
                .Add({});
    auto& messages = prometheus::BuildCounter()
                         .Name("twinbridge_websocket_messages_total")
                         .Help("WebSocket text messages received (direction=in) and sent (direction=out)")
                         .Register(registry);
    in = &messages.Add({{"direction", "in"}});
    out = &messages.Add({{"direction", "out"}});
    auto& ends = prometheus::BuildCounter()
                     .Name("twinbridge_websocket_closes_total")
                     .Help(
                         "WebSocket connections ended, by why: peer, session, shutdown, too_slow, "
                         "message_too_big, invalid_utf8, binary_message, protocol_error, timeout, "
                         "connection_lost")
                     .Register(registry);
    for (const auto e : kWsEnds) {
      closes[static_cast<std::size_t>(e)] = &ends.Add({{"reason", std::string(to_string(e))}});
    }
  }
  prometheus::Gauge* open;
  prometheus::Counter* in;
  prometheus::Counter* out;
  std::array<prometheus::Counter*, kWsEnds.size()> closes{};
};

// A close code the server may send (RFC 6455 7.4.1 and the IANA registry); others become 1011.
std::uint16_t sendable_close_code(int code) {
  const bool ok =
      (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1013) || (code >= 3000 && code <= 4999);
  return static_cast<std::uint16_t>(ok ? code : 1011);
}

// `reason` as UTF-8 of at most 123 bytes, cut at a character boundary.
std::string close_reason_text(std::string reason) {
  if (!core::is_valid_utf8(reason)) reason = core::to_valid_utf8(reason);
  if (reason.size() > kMaxCloseReason) {
    std::size_t end = kMaxCloseReason;
    while (end > 0 && (static_cast<unsigned char>(reason[end]) & 0xC0) == 0x80) --end;
    reason.resize(end);
  }
  return reason;
}

// What a failed read or write of a WebSocket stands for.
WsEnd ws_end_of(const beast::error_code& ec) {
  if (ec == websocket::error::closed) return WsEnd::peer;
  if (ec == websocket::error::message_too_big) return WsEnd::message_too_big;
  if (ec == websocket::error::bad_frame_payload) return WsEnd::invalid_utf8;
  if (ec == beast::error::timeout) return WsEnd::timeout;
  if (ec.category() == websocket::make_error_code(websocket::error::closed).category()) {
    return WsEnd::protocol_error;
  }
  return WsEnd::connection_lost;
}

// The I/O objects of one WebSocket connection. Touched only on the connection's thread; held by the channel
// while the connection lives and by the coroutines reading and writing it, so that it goes (on that thread)
// when the last of them is done.
struct WsIo {
  explicit WsIo(beast::tcp_stream&& stream)
      : ws(std::move(stream)), wakeup(ws.get_executor()), deadline(ws.get_executor()) {}
  websocket::stream<FrameGate> ws;  // messages are written by the write loop through the gate, in batches
  asio::steady_timer wakeup;        // the write loop waits on it for work
  asio::steady_timer deadline;      // bounds one write, or the closing handshake
  std::uint64_t deadline_armed = 0;

  // Drops the connection: every pending operation completes with an error.
  void drop() { beast::get_lowest_layer(ws).close(); }
};

// The server's WebSocketChannel. Its queue and state are under a mutex (send() and close() come from any
// thread); its I/O objects (WsIo) only on the connection's thread, where read(), the write loop and finish()
// run. Other threads reach that thread by posting a wake-up, and only while the channel is open: once the
// connection has ended the channel holds no I/O object and posts nothing, so it may outlive the server.
class WsChannel final : public WebSocketChannel, public std::enable_shared_from_this<WsChannel> {
 public:
  WsChannel(asio::any_io_executor executor, std::shared_ptr<WsIo> io, const ServerLimits& limits,
            WsMetrics& metrics)
      : executor_(std::move(executor)),
        io_(std::move(io)),
        max_queue_(limits.max_ws_queue_bytes),
        write_timeout_(limits.write_timeout),
        metrics_(metrics) {}

  awaitable<std::optional<std::string>> read() override;
  bool send(std::shared_ptr<const std::string> text) override;
  void close(int code, std::string reason) override {
    std::lock_guard lock(mutex_);
    close_locked(code, std::move(reason), WsEnd::session);
  }
  std::size_t queued_bytes() const override { return queued_published_.load(std::memory_order_relaxed); }
  bool is_open() const override {
    std::lock_guard lock(mutex_);
    return state_ == State::open;
  }

  // The server's side, on the connection's thread.
  void begin_close(int code, std::string reason, WsEnd why) {
    std::lock_guard lock(mutex_);
    close_locked(code, std::move(reason), why);
  }
  // Drops the connection at once (the grace period of a shutdown is over).
  void abort(WsEnd why);
  // Writes the queue in order, then the close frame once a close was asked for; ends when the connection
  // does.
  awaitable<void> write_loop();
  // After the session and the write loop are done: frees the I/O objects; returns why the connection ended.
  WsEnd finish();

 private:
  enum class State { open, closing, ended };
  // A batch takes every queued message, up to these bounds (at least one message).
  static constexpr std::size_t kBatchMessages = 256;
  static constexpr std::size_t kBatchBytes = 512 * 1024;
  struct Step {
    enum { write, close, wait, done } kind = done;
    std::size_t bytes = 0;  // of the messages moved to batch_
    std::uint16_t code = 0;
    std::string reason;
  };

  void close_locked(int code, std::string reason, WsEnd why);
  void end_locked(WsEnd why);
  void wake_locked();
  void set_queued_locked(std::size_t bytes) {
    queued_ = bytes;
    queued_published_.store(bytes, std::memory_order_relaxed);
  }
  Step next_step();
  void arm_deadline(WsIo& io, WsEnd why);

  const asio::any_io_executor executor_;
  std::shared_ptr<WsIo> io_;  // the connection's thread only; null once finished
  const std::size_t max_queue_;
  const std::chrono::milliseconds write_timeout_;
  WsMetrics& metrics_;
  bool reading_ = false;  // the connection's thread only
  // The batch being written, its frame headers and buffers: the write loop's, kept for their capacity.
  std::vector<std::shared_ptr<const std::string>> batch_;
  std::vector<FrameGate::FrameHeader> headers_;
  std::vector<asio::const_buffer> buffers_;

  mutable std::mutex mutex_;
  State state_ = State::open;
  std::deque<std::shared_ptr<const std::string>> queue_;
  std::size_t queued_ = 0;  // the queue's bytes and the batch being written
  std::atomic<std::size_t> queued_published_{0};
  bool writer_idle_ = false;  // the write loop waits for a wake-up
  bool close_sent_ = false;
  std::uint16_t close_code_ = 1000;
  std::string close_reason_;
  std::optional<WsEnd> why_;  // the first reason given wins
};

awaitable<std::optional<std::string>> WsChannel::read() {
  auto io = io_;
  if (!io || reading_ || !is_open()) co_return std::nullopt;
  reading_ = true;
  std::optional<std::string> message;
  beast::flat_buffer buffer;
  for (;;) {
    buffer.clear();
    auto [ec, n] = co_await io->ws.async_read(buffer, kAwait);
    if (ec) {
      // Beast has already answered a close frame, or failed the connection with 1009, 1007 or 1002.
      std::lock_guard lock(mutex_);
      end_locked(ws_end_of(ec));
      break;
    }
    if (!is_open()) continue;  // closing: read on until the peer's close frame
    if (!io->ws.got_text()) {
      begin_close(1003, "twinbridge accepts text messages only", WsEnd::binary_message);
      continue;
    }
    metrics_.in->Increment();
    message = beast::buffers_to_string(buffer.data());
    break;
  }
  reading_ = false;
  co_return message;
}

bool WsChannel::send(std::shared_ptr<const std::string> text) {
  if (!text) return false;
  std::lock_guard lock(mutex_);
  if (state_ != State::open) return false;
  if (queued_ + text->size() > max_queue_) {
    // The client reads slower than the session sends: what waits is dropped, and the close frame follows the
    // message being written.
    std::size_t dropped = 0;
    for (const auto& m : queue_) dropped += m->size();
    queue_.clear();
    set_queued_locked(queued_ - dropped);
    close_locked(1008, "client too slow", WsEnd::too_slow);
    return false;
  }
  set_queued_locked(queued_ + text->size());
  queue_.push_back(std::move(text));
  wake_locked();
  return true;
}

void WsChannel::close_locked(int code, std::string reason, WsEnd why) {
  if (state_ != State::open) return;
  state_ = State::closing;
  close_code_ = sendable_close_code(code);
  close_reason_ = close_reason_text(std::move(reason));
  if (!why_) why_ = why;
  wake_locked();
}

void WsChannel::end_locked(WsEnd why) {
  if (!why_) why_ = why;
  if (state_ == State::ended) return;
  state_ = State::ended;
  queue_.clear();
  set_queued_locked(0);
  wake_locked();
}

void WsChannel::wake_locked() {
  if (!writer_idle_) return;
  writer_idle_ = false;
  // Posted under the lock while the connection lives: the connection's thread runs it before it can finish.
  asio::post(executor_, [self = shared_from_this()] {
    if (self->io_) self->io_->wakeup.cancel();
  });
}

void WsChannel::abort(WsEnd why) {
  {
    std::lock_guard lock(mutex_);
    end_locked(why);
  }
  if (io_) io_->drop();
}

WsChannel::Step WsChannel::next_step() {
  std::lock_guard lock(mutex_);
  Step step;
  if (state_ == State::ended) return step;
  if (!queue_.empty()) {
    step.kind = Step::write;
    batch_.clear();
    while (!queue_.empty() && batch_.size() < kBatchMessages &&
           (batch_.empty() || step.bytes + queue_.front()->size() <= kBatchBytes)) {
      step.bytes += queue_.front()->size();
      batch_.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  } else if (state_ == State::closing) {
    if (close_sent_) return step;
    close_sent_ = true;
    step.kind = Step::close;
    step.code = close_code_;
    step.reason = close_reason_;
  } else {
    writer_idle_ = true;
    step.kind = Step::wait;
  }
  return step;
}

void WsChannel::arm_deadline(WsIo& io, WsEnd why) {
  const auto armed = ++io.deadline_armed;
  io.deadline.expires_after(write_timeout_);
  io.deadline.async_wait([weak_io = std::weak_ptr<WsIo>(io_), weak_self = weak_from_this(), armed,
                          why](const beast::error_code& ec) {
    auto live = weak_io.lock();
    if (ec || !live || live->deadline_armed != armed) return;  // disarmed, or armed again since
    if (auto self = weak_self.lock()) {
      std::lock_guard lock(self->mutex_);
      self->end_locked(why);
    }
    live->drop();
  });
}

awaitable<void> WsChannel::write_loop() {
  auto io = io_;
  if (!io) co_return;
  for (;;) {
    auto step = next_step();
    if (step.kind == Step::done) co_return;
    if (step.kind == Step::wait) {
      io->wakeup.expires_at(asio::steady_timer::time_point::max());
      co_await io->wakeup.async_wait(kAwait);
      continue;
    }
    if (step.kind == Step::close) {
      // Beast sends the close frame, reads until the peer's (handing a pending read() the end), and shuts
      // the TCP connection down. A peer that does not answer is dropped after write_timeout.
      arm_deadline(*io, WsEnd::timeout);
      co_await io->ws.async_close(
          websocket::close_reason(static_cast<websocket::close_code>(step.code), step.reason), kAwait);
      ++io->deadline_armed;
      io->deadline.cancel();
      co_return;
    }
    // Beast is closing on its own (the peer's close frame, a protocol error): no data frame may follow its
    // close frame; the read side ends the session.
    if (!io->ws.is_open()) co_return;
    headers_.clear();
    buffers_.clear();
    for (const auto& m : batch_) headers_.push_back(FrameGate::text_frame_header(m->size()));
    for (std::size_t i = 0; i < batch_.size(); ++i) {
      buffers_.emplace_back(headers_[i].bytes.data(), headers_[i].size);
      buffers_.emplace_back(batch_[i]->data(), batch_[i]->size());
    }
    // A client that does not read for write_timeout is too slow, whatever the size of the queue.
    arm_deadline(*io, WsEnd::too_slow);
    auto [ec, n] = co_await io->ws.next_layer().async_write_frames(buffers_, kAwait);
    ++io->deadline_armed;
    io->deadline.cancel();
    const auto written = batch_.size();
    batch_.clear();
    {
      std::lock_guard lock(mutex_);
      set_queued_locked(queued_ >= step.bytes ? queued_ - step.bytes : 0);
      if (ec) {
        end_locked(ws_end_of(ec));
        co_return;
      }
    }
    metrics_.out->Increment(static_cast<double>(written));
  }
}

WsEnd WsChannel::finish() {
  std::shared_ptr<WsIo> io;
  WsEnd why = WsEnd::session;
  {
    std::lock_guard lock(mutex_);
    end_locked(WsEnd::session);
    why = *why_;
    io = std::move(io_);
  }
  // Ends a read a session may have left pending; the I/O objects go when it lets go of them.
  if (io) io->drop();
  return why;
}

// A valid WebSocket opening handshake (RFC 6455 4.2.1), checked the way Beast's accept checks it and a little
// stricter (the key must be 16 bytes in base64), so that an accepted route never meets a failed handshake.
bool is_websocket_handshake(const bhttp::request<bhttp::string_body>& msg) {
  if (!websocket::is_upgrade(msg) || msg[bhttp::field::sec_websocket_version] != "13") return false;
  const auto key = msg[bhttp::field::sec_websocket_key];
  if (key.size() != 24 || !key.ends_with("==")) return false;
  return std::all_of(key.begin(), key.end() - 2, [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '/';
  });
}

// The subprotocols offered in Sec-WebSocket-Protocol (every field line, comma-separated), in order.
std::vector<std::string> offered_protocols(const bhttp::request<bhttp::string_body>& msg) {
  std::vector<std::string> out;
  const auto [first, last] = msg.equal_range(bhttp::field::sec_websocket_protocol);
  for (auto field = first; field != last; ++field) {
    std::string_view list = field->value();
    while (!list.empty()) {
      const auto comma = list.find(',');
      auto item = list.substr(0, comma);
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (!item.empty()) out.emplace_back(item);
    }
  }
  return out;
}

// Runs a route's session; when it returns (or fails), the channel closes after what it queued.
awaitable<void> run_session(std::shared_ptr<WebSocketSession> session, std::shared_ptr<WsChannel> channel) {
  try {
    co_await session->run(channel);
  } catch (const std::exception& e) {
    spdlog::error("http: a WebSocket session failed: {}", e.what());
    channel->begin_close(1011, "internal error", WsEnd::session);
  }
  channel->begin_close(1000, "", WsEnd::session);
}

}  // namespace

// One open connection, as the server sees it for shutdown: its stream and whether a request is being handled.
// Touched only on the thread of its io_context.
struct Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)), executor(stream.get_executor()) {}
  beast::tcp_stream stream;  // moved into the WebSocket stream on an upgrade (`websocket` is then set)
  asio::any_io_executor executor;
  bool busy = false;
  std::shared_ptr<ResponseStream> body_stream;  // while a streamed response (SSE) is being written
  std::shared_ptr<WsChannel> websocket;         // once the connection is a WebSocket
};

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(std::vector<asio::io_context*> io_contexts, Api& a, Metrics& m, ServerLimits l)
      : contexts(std::move(io_contexts)), api(a), metrics(m), limits(l), ws_metrics(m.registry()) {
    for (auto* io : contexts) acceptors.push_back(std::make_unique<tcp::acceptor>(*io));
  }

  std::vector<asio::io_context*> contexts;
  Api& api;
  Metrics& metrics;
  ServerLimits limits;
  WsMetrics ws_metrics;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;  // acceptors[i] lives on contexts[i]
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> open{0};
  std::mutex connections_mutex;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;
  std::uint64_t next_id = 0;

  awaitable<void> accept_loop(tcp::acceptor& acceptor);
  awaitable<void> serve(std::shared_ptr<Connection> conn, std::uint64_t id);
  awaitable<void> drain(std::chrono::milliseconds grace, std::function<void()> drained);
  awaitable<void> write_stream(Connection& conn, Response response, unsigned version);
  awaitable<void> run_websocket(const std::shared_ptr<Connection>& conn,
                                const bhttp::request<bhttp::string_body>& handshake, Response response);
  void close_idle(bool force);
};

namespace {

// Whether the peer has closed its side: readable with nothing to read, or an error.
bool peer_closed(tcp::socket& socket) {
  char byte = 0;
  const auto n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

// Sets `gone` when the client closes the connection while its request is being handled. Readable with data (a
// pipelined request) ends the watch without a verdict. Ended by cancelling the socket's operations. The
// reactor reports readiness as edges: the watch is armed first, then the socket is looked at once, so that a
// close that arrived before the watch began is seen too.
void watch_client(const std::shared_ptr<Connection>& conn, const std::shared_ptr<std::atomic<bool>>& gone) {
  conn->stream.socket().async_wait(tcp::socket::wait_read, [conn, gone](const beast::error_code& ec) {
    if (ec == asio::error::operation_aborted || conn->websocket) return;  // the stream is no longer there
    if (ec || peer_closed(conn->stream.socket())) gone->store(true);
  });
  if (peer_closed(conn->stream.socket())) gone->store(true);
}

Request to_request(bhttp::request<bhttp::string_body>& msg, const std::string& remote) {
  Request r;
  r.method_text = std::string(msg.method_string());
  r.method = parse_method(r.method_text);
  r.target = std::string(msg.target());
  const auto q = r.target.find('?');
  r.path = r.target.substr(0, q);
  if (q != std::string::npos) r.query = r.target.substr(q + 1);
  auto get = [&](bhttp::field f) { return std::string(msg[f]); };
  r.content_type = get(bhttp::field::content_type);
  r.authorization = get(bhttp::field::authorization);
  r.if_match = get(bhttp::field::if_match);
  r.if_none_match = get(bhttp::field::if_none_match);
  r.accept = get(bhttp::field::accept);
  r.request_id = std::string(msg["X-Request-Id"]);
  r.last_event_id = std::string(msg["Last-Event-ID"]);
  r.remote_address = remote;
  r.websocket_upgrade = is_websocket_handshake(msg);
  if (r.websocket_upgrade) r.websocket_protocols = offered_protocols(msg);
  r.body = std::move(msg.body());
  return r;
}

bhttp::response<bhttp::string_body> to_message(Response&& res, unsigned version, bool keep_alive, bool head) {
  bhttp::response<bhttp::string_body> msg{static_cast<bhttp::status>(res.status), version};
  msg.set(bhttp::field::server, "twinbridge");
  if (!res.content_type.empty()) msg.set(bhttp::field::content_type, res.content_type);
  for (auto& [name, value] : res.headers) msg.insert(name, value);
  msg.keep_alive(keep_alive);
  const bool no_body = res.status == 204 || res.status == 304 || (res.status >= 100 && res.status < 200);
  if (no_body) {
    msg.body().clear();
  } else {
    msg.content_length(res.body.size());
    if (!head) msg.body() = std::move(res.body);
  }
  return msg;
}

// The error a failed parse of the request head or body stands for; nullopt when the connection is just gone.
std::optional<core::Error> parse_error(const beast::error_code& ec, const ServerLimits& limits) {
  if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::operation_aborted || ec == beast::error::timeout || ec == asio::error::broken_pipe) {
    return std::nullopt;
  }
  if (ec == bhttp::error::header_limit) {
    return core::Error(Errc::header_too_large,
                       fmt::format("the request head is larger than {} bytes", limits.max_header_bytes));
  }
  if (ec == bhttp::error::body_limit) {
    return core::Error(Errc::payload_too_large,
                       fmt::format("the request body is larger than {} bytes", limits.max_body_bytes));
  }
  return core::Error(Errc::bad_request, fmt::format("malformed HTTP request: {}", ec.message()));
}

}  // namespace

HttpServer::HttpServer(std::vector<asio::io_context*> contexts, Api& api, Metrics& metrics,
                       ServerLimits limits)
    : impl_(std::make_shared<Impl>(std::move(contexts), api, metrics, limits)) {}

HttpServer::~HttpServer() = default;

core::Result<std::string> HttpServer::listen(const std::string& host, std::uint16_t port) {
  beast::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) return core::fail(Errc::validation_failed, fmt::format("'{}' is not an IP address", host));
  tcp::endpoint endpoint(address, port);
  for (auto& a : impl_->acceptors) {
    a->open(endpoint.protocol(), ec);
    if (!ec) a->set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) a->set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
    if (!ec) a->bind(endpoint, ec);
    if (!ec) a->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return core::fail(Errc::unavailable,
                        fmt::format("cannot listen on {}:{}: {}", host, port, ec.message()));
    }
    endpoint = a->local_endpoint();  // with port 0, the others join the port the first one got
  }
  const auto bound = endpoint;
  return address.is_v6() ? fmt::format("[{}]:{}", bound.address().to_string(), bound.port())
                         : fmt::format("{}:{}", bound.address().to_string(), bound.port());
}

void HttpServer::start() {
  for (auto& a : impl_->acceptors) asio::co_spawn(a->get_executor(), impl_->accept_loop(*a), asio::detached);
}

std::size_t HttpServer::open_connections() const {
  return impl_->open.load();
}

void HttpServer::shutdown(std::chrono::milliseconds grace, std::function<void()> drained) {
  asio::co_spawn(impl_->acceptors.front()->get_executor(), impl_->drain(grace, std::move(drained)),
                 asio::detached);
}

awaitable<void> HttpServer::Impl::accept_loop(tcp::acceptor& acceptor) {
  auto self = shared_from_this();
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kAwait);
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping) co_return;
      spdlog::warn("http: accept failed: {}", ec.message());
      if (ec == asio::error::no_descriptors) {
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(50));
        co_await pause.async_wait(kAwait);
      }
      continue;
    }
    if (open.load() >= limits.max_connections) {
      metrics.connection_rejected();
      beast::error_code ignored;
      socket.close(ignored);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Connection>(std::move(socket));
    std::uint64_t id = 0;
    {
      std::lock_guard lock(connections_mutex);
      id = next_id++;
      connections.emplace(id, conn);
    }
    ++open;
    metrics.connection_opened();
    auto executor = conn->executor;
    asio::co_spawn(executor, serve(std::move(conn), id), asio::detached);
  }
}

awaitable<void> HttpServer::Impl::serve(std::shared_ptr<Connection> conn, std::uint64_t id) {
  auto self = shared_from_this();
  beast::tcp_stream& stream = conn->stream;
  std::string remote;
  {
    beast::error_code ec;
    auto ep = stream.socket().remote_endpoint(ec);
    if (!ec) remote = ep.address().to_string();
  }
  beast::flat_buffer buffer(limits.max_header_bytes + 64 * 1024);
  bool linger = false;
  bool upgraded = false;
  try {
    for (std::size_t served = 0; !stopping; ++served) {
      // Idle: wait for the first byte of the next request.
      if (buffer.size() == 0) {
        stream.expires_after(limits.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kAwait);
        if (ec) break;
        buffer.commit(n);
      }
      conn->busy = true;
      // From here the whole request must arrive within read_timeout.
      stream.expires_after(limits.read_timeout);
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
      parser.body_limit(limits.max_body_bytes);
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kAwait);
      beast::error_code ec = hec;
      // Beast applies header_limit to the request line and to the fields apart: the whole head (hn bytes) is
      // held to the limit here (found by fuzz/http_head).
      if (!ec && hn > limits.max_header_bytes) ec = bhttp::error::header_limit;
      if (!ec && parser.get()[bhttp::field::expect] == "100-continue" && !parser.is_done()) {
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
        co_await bhttp::async_write(stream, cont, kAwait);
      }
      if (!ec && !parser.is_done()) {
        auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, kAwait);
        ec = bec;
      }
      if (ec) {
        auto error = parse_error(ec, limits);
        if (!error) break;
        Request partial;
        if (parser.is_header_done()) {
          partial.method_text = std::string(parser.get().method_string());
          partial.method = parse_method(partial.method_text);
          partial.path = std::string(parser.get().target().substr(0, parser.get().target().find('?')));
          partial.request_id = std::string(parser.get()["X-Request-Id"]);
        }
        partial.remote_address = remote;
        auto res = to_message(api.reject(partial, *error), 11, false, false);
        stream.expires_after(limits.write_timeout);
        co_await bhttp::async_write(stream, res, kAwait);
        linger = true;
        break;
      }
      auto& msg = parser.get();
      const bool head = msg.method() == bhttp::verb::head;
      const unsigned version = msg.version();
      bool keep_alive = msg.keep_alive();
      Request req = to_request(msg, remote);
      const bool websocket_handshake = req.websocket_upgrade;
      req.client_gone = std::make_shared<std::atomic<bool>>(false);
      watch_client(conn, req.client_gone);
      stream.expires_never();
      Response response = co_await api.handle(std::move(req));
      {
        beast::error_code ignored;
        stream.socket().cancel(ignored);  // ends the watch
      }
      if (response.stream) {
        co_await write_stream(*conn, std::move(response), version);
        break;
      }
      if (response.websocket && websocket_handshake) {
        // (Api answers 426 to a WebSocket route asked for without a handshake.)
        upgraded = true;
        co_await run_websocket(conn, msg, std::move(response));
        break;
      }
      if (stopping || response.close || served + 1 >= limits.max_requests_per_connection) keep_alive = false;
      auto res = to_message(std::move(response), version, keep_alive, head);
      stream.expires_after(limits.write_timeout);
      auto [wec, wn] = co_await bhttp::async_write(stream, res, kAwait);
      conn->busy = false;
      if (wec || !keep_alive) break;
    }
  } catch (const std::exception& e) {
    spdlog::error("http: connection from {} failed: {}", remote, e.what());
  }
  beast::error_code ignored;
  if (upgraded) {
    // The WebSocket stream has the socket, and has closed it.
  } else if (linger) {
    // The client may still be sending a body we refused: read and drop it for a short while, so that it sees
    // our response instead of a connection reset.
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(kLingerTime);
    std::size_t dropped = 0;
    std::array<char, 16384> sink{};
    while (dropped < kLingerBytes) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kAwait);
      if (ec) break;
      dropped += n;
    }
  }
  if (!upgraded) {
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
  }
  {
    std::lock_guard lock(connections_mutex);
    connections.erase(id);
  }
  --open;
  metrics.connection_closed();
}

awaitable<void> HttpServer::Impl::write_stream(Connection& conn, Response response, unsigned version) {
  auto body = response.stream;
  bhttp::response<bhttp::empty_body> head{static_cast<bhttp::status>(response.status), version};
  head.set(bhttp::field::server, "twinbridge");
  head.set(bhttp::field::content_type, response.content_type);
  head.set(bhttp::field::cache_control, "no-cache");
  for (auto& [name, value] : response.headers) head.insert(name, value);
  head.keep_alive(false);  // the body ends when the connection closes
  bhttp::response_serializer<bhttp::empty_body> serializer{head};
  conn.stream.expires_after(limits.write_timeout);
  auto [hec, hn] = co_await bhttp::async_write_header(conn.stream, serializer, kAwait);
  if (!hec) {
    // From here the connection counts as idle for a graceful drain: close_idle() cancels the stream.
    conn.body_stream = body;
    conn.busy = false;
    while (!stopping) {
      conn.stream.expires_never();
      auto chunk = co_await body->next();
      if (!chunk) break;
      conn.stream.expires_after(limits.write_timeout);
      auto [wec, wn] = co_await asio::async_write(conn.stream, asio::buffer(*chunk), kAwait);
      if (wec) break;
    }
    conn.body_stream.reset();
  }
  body->cancel();
}

awaitable<void> HttpServer::Impl::run_websocket(const std::shared_ptr<Connection>& conn,
                                                const bhttp::request<bhttp::string_body>& handshake,
                                                Response response) {
  using namespace asio::experimental::awaitable_operators;
  conn->busy = false;
  // The WebSocket stream takes the socket. Bytes the client sent after its handshake, before our answer,
  // stay in serve()'s buffer and are lost: a client must not send them (RFC 6455 4.1).
  auto io = std::make_shared<WsIo>(std::move(conn->stream));
  auto channel = std::make_shared<WsChannel>(conn->executor, io, limits, ws_metrics);
  conn->websocket = channel;
  auto& ws = io->ws;
  beast::get_lowest_layer(ws).expires_never();  // the WebSocket stream has timeouts of its own
  auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::server);
  timeouts.handshake_timeout = limits.write_timeout;  // the opening and the closing handshake
  ws.set_option(timeouts);
  websocket::permessage_deflate deflate;
  deflate.server_enable = false;
  deflate.client_enable = false;
  ws.set_option(deflate);
  ws.read_message_max(limits.max_ws_message_bytes);
  const auto offered = offered_protocols(handshake);
  const bool echo = std::find(offered.begin(), offered.end(), kWebSocketProtocol) != offered.end();
  ws.set_option(websocket::stream_base::decorator(
      [headers = std::move(response.headers), echo](websocket::response_type& res) {
        res.set(bhttp::field::server, "twinbridge");
        for (const auto& [name, value] : headers) res.insert(name, value);
        if (echo) res.set(bhttp::field::sec_websocket_protocol, kWebSocketProtocol);
      }));
  auto [ec] = co_await ws.async_accept(handshake, kAwait);
  if (ec) {
    channel->finish();
    co_return;
  }
  ws_metrics.open->Increment();
  if (stopping) channel->begin_close(1001, "server shutting down", WsEnd::shutdown);
  co_await (run_session(std::move(response.websocket), channel) && channel->write_loop());
  const auto why = channel->finish();
  ws_metrics.open->Decrement();
  ws_metrics.closes[static_cast<std::size_t>(why)]->Increment();
  spdlog::debug("http: WebSocket connection ended ({})", to_string(why));
}

void HttpServer::Impl::close_idle(bool force) {
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard lock(connections_mutex);
    for (auto& [id, weak] : connections) {
      if (auto c = weak.lock()) live.push_back(std::move(c));
    }
  }
  for (auto& c : live) {
    asio::post(c->executor, [c, force] {
      if (c->websocket) {
        if (force) {
          c->websocket->abort(WsEnd::shutdown);
        } else {
          c->websocket->begin_close(1001, "server shutting down", WsEnd::shutdown);
        }
        return;
      }
      if (force || !c->busy) {
        if (c->body_stream) c->body_stream->cancel();
        c->stream.cancel();
      }
    });
  }
}

awaitable<void> HttpServer::Impl::drain(std::chrono::milliseconds grace, std::function<void()> drained) {
  auto self = shared_from_this();
  stopping = true;
  for (auto& a : acceptors) {
    asio::post(a->get_executor(), [&a = *a] {
      beast::error_code ignored;
      a.close(ignored);
    });
  }
  const auto deadline = std::chrono::steady_clock::now() + grace;
  asio::steady_timer timer(acceptors.front()->get_executor());
  while (open.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    close_idle(false);
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(kAwait);
  }
  if (open.load() > 0) {
    spdlog::warn("http: {} connections still busy after the {} ms grace period; closing them", open.load(),
                 grace.count());
    close_idle(true);
    for (int i = 0; i < 50 && open.load() > 0; ++i) {
      timer.expires_after(std::chrono::milliseconds(20));
      co_await timer.async_wait(kAwait);
    }
  }
  drained();
}

}  // namespace twinbridge::http
