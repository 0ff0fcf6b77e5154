#include "support/ws_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include <cctype>
#include <stdexcept>

namespace twinbridge::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using asio::ip::tcp;

std::vector<std::pair<std::string, std::string>> bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

struct WsClient::Impl {
  explicit Impl(WsOptions o) : options(std::move(o)) {}

  asio::io_context io{1};
  websocket::stream<tcp::socket> ws{io};
  WsOptions options;
  HttpResponse answer;
  bool accepted = false;
  bool closed = false;
  std::optional<int> code;
  std::string reason;
  std::size_t dropped = 0;
  std::vector<std::string> pongs;
  // The read in progress: started by read(), finished by its handler, picked up by the next read().
  bool read_pending = false;
  bool read_done = false;
  beast::error_code read_error;
  beast::flat_buffer buffer;

  // Runs the event loop until `done()` holds; false when the deadline passes first or nothing is left to
  // run.
  template <class Done>
  bool run_until(Done done, std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (!done()) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return false;
      if (io.stopped()) io.restart();
      if (io.run_one_for(deadline - now) == 0 && io.stopped() && !done()) {
        if (std::chrono::steady_clock::now() < deadline) return false;  // no work left: it cannot happen
      }
    }
    return true;
  }

  // The connection is over; a close frame received (even if answering it failed) says how.
  void ended(const beast::error_code& ec) {
    closed = true;
    const auto& r = ws.reason();
    if (r.code != websocket::close_code::none) {
      code = static_cast<int>(r.code);
      reason = std::string(r.reason.data(), r.reason.size());
    } else if (ec == websocket::error::closed) {
      code = 1005;
    }
  }

  void start_read() {
    if (read_pending || read_done || closed) return;
    read_pending = true;
    buffer.clear();
    ws.async_read(buffer, [this](const beast::error_code& ec, std::size_t) {
      read_pending = false;
      read_done = true;
      read_error = ec;
    });
  }

  std::optional<std::string> read(std::chrono::milliseconds within) {
    if (closed) return std::nullopt;
    start_read();
    if (!run_until([&] { return read_done; }, within)) return std::nullopt;
    read_done = false;
    if (read_error) {
      ended(read_error);
      return std::nullopt;
    }
    return beast::buffers_to_string(buffer.data());
  }

  // Runs the write that `start` begins with the handler it is given, within the deadline.
  template <class Start>
  bool run_write(Start start) {
    if (closed || !accepted) return false;
    bool done = false;
    beast::error_code error;
    start([&](const beast::error_code& ec, auto&&...) {
      error = ec;
      done = true;
    });
    if (!run_until([&] { return done; }, options.timeout)) {
      drop();
      run_until([&] { return done; }, std::chrono::seconds(5));
      return false;
    }
    return !error;
  }

  bool write(const std::string& data, bool text) {
    ws.text(text);
    return run_write([&](auto handler) { ws.async_write(asio::buffer(data), std::move(handler)); });
  }

  void drop() {
    beast::error_code ignored;
    ws.next_layer().close(ignored);
    closed = true;
  }
};

WsClient::WsClient(std::uint16_t port, const std::string& target, WsOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  auto& d = *impl_;
  auto& socket = d.ws.next_layer();
  socket.open(tcp::v4());
  if (d.options.receive_buffer_bytes > 0) {
    socket.set_option(asio::socket_base::receive_buffer_size(d.options.receive_buffer_bytes));
  }
  beast::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port), ec);
  if (ec) throw std::runtime_error("WebSocket client: cannot connect: " + ec.message());
  d.ws.read_message_max(d.options.read_message_max);
  d.ws.control_callback([&d](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::pong) d.pongs.emplace_back(payload);
  });
  d.ws.set_option(websocket::stream_base::decorator(
      [headers = d.options.headers, protocols = d.options.protocols](websocket::request_type& req) {
        for (const auto& [name, value] : headers) req.insert(name, value);
        std::string offered;
        for (const auto& p : protocols) offered += (offered.empty() ? "" : ", ") + p;
        if (!offered.empty()) req.set(beast::http::field::sec_websocket_protocol, offered);
      }));
  websocket::response_type res;
  bool done = false;
  d.ws.async_handshake(res, "127.0.0.1:" + std::to_string(port), target, [&](const beast::error_code& e) {
    ec = e;
    done = true;
  });
  if (!d.run_until([&] { return done; }, d.options.timeout)) {
    d.drop();
    d.run_until([&] { return done; }, std::chrono::seconds(5));
    throw std::runtime_error("WebSocket client: no answer to the handshake for " + target);
  }
  if (ec && ec != websocket::error::upgrade_declined) {
    throw std::runtime_error("WebSocket client: the handshake for " + target + " failed: " + ec.message());
  }
  d.answer.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    d.answer.headers[name] = std::string(field.value());
  }
  d.answer.body = res.body();
  d.accepted = !ec;
  if (!d.accepted) d.drop();
}

WsClient::~WsClient() {
  auto& d = *impl_;
  d.drop();
  // Lets the operations still pending (a read) complete, as they refer to this client.
  d.io.restart();
  d.io.run_for(std::chrono::seconds(5));
}

bool WsClient::accepted() const {
  return impl_->accepted;
}

const HttpResponse& WsClient::handshake() const {
  return impl_->answer;
}

bool WsClient::send(const std::string& text) {
  return impl_->write(text, true);
}

bool WsClient::send_binary(const std::string& bytes) {
  return impl_->write(bytes, false);
}

bool WsClient::ping(const std::string& payload) {
  auto& d = *impl_;
  if (payload.size() > websocket::ping_data::static_capacity) return false;
  const websocket::ping_data data(payload.data(), payload.size());
  return d.run_write([&](auto handler) { d.ws.async_ping(data, std::move(handler)); });
}

const std::vector<std::string>& WsClient::pongs() const {
  return impl_->pongs;
}

std::optional<std::string> WsClient::read() {
  return impl_->read(impl_->options.timeout);
}

std::optional<std::string> WsClient::read(std::chrono::milliseconds within) {
  return impl_->read(within);
}

std::optional<int> WsClient::wait_close(std::chrono::milliseconds within) {
  auto& d = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!d.closed) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    if (d.read(left)) ++d.dropped;
  }
  return d.code;
}

std::size_t WsClient::dropped() const {
  return impl_->dropped;
}

bool WsClient::close(int code) {
  auto& d = *impl_;
  if (d.closed || !d.accepted) return false;
  bool done = false;
  beast::error_code error;
  d.ws.async_close(websocket::close_reason(static_cast<std::uint16_t>(code)),
                   [&](const beast::error_code& ec) {
                     error = ec;
                     done = true;
                   });
  // A pending read ends with the server's close frame too.
  const bool finished = d.run_until([&] { return done && !d.read_pending; }, d.options.timeout);
  if (d.read_done) d.read_done = false;
  d.closed = true;
  if (!finished) {
    d.drop();
    d.run_until([&] { return done && !d.read_pending; }, std::chrono::seconds(5));
    return false;
  }
  d.ended(error ? error : beast::error_code(websocket::error::closed));
  return !error;
}

bool WsClient::closed() const {
  return impl_->closed;
}

std::optional<int> WsClient::close_code() const {
  return impl_->code;
}

std::string WsClient::close_reason() const {
  return impl_->reason;
}

}  // namespace twinbridge::testing
