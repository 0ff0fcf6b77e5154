#include "http/server.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <mutex>
#include <unordered_map>

namespace twinbridge::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::ip::tcp;
using core::Errc;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kLingerBytes = 64 * 1024 * 1024;
constexpr std::chrono::seconds kLingerTime{2};

}  // namespace

// One open connection, as the server sees it for shutdown: its stream and whether a request is being handled.
// Touched only on the thread of its io_context.
struct Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  bool busy = false;
  std::shared_ptr<ResponseStream> body_stream;  // while a streamed response (SSE) is being written
};

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  Impl(std::vector<asio::io_context*> io_contexts, Api& a, Metrics& m, ServerLimits l)
      : contexts(std::move(io_contexts)), api(a), metrics(m), limits(l) {
    for (auto* io : contexts) acceptors.push_back(std::make_unique<tcp::acceptor>(*io));
  }

  std::vector<asio::io_context*> contexts;
  Api& api;
  Metrics& metrics;
  ServerLimits limits;
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
    if (ec == asio::error::operation_aborted) return;
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
    auto executor = conn->stream.get_executor();
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
  if (linger) {
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
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.close();
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

void HttpServer::Impl::close_idle(bool force) {
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard lock(connections_mutex);
    for (auto& [id, weak] : connections) {
      if (auto c = weak.lock()) live.push_back(std::move(c));
    }
  }
  for (auto& c : live) {
    asio::post(c->stream.get_executor(), [c, force] {
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
