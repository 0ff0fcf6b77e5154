#pragma once

// The next layer of the server's WebSocket streams: a TCP stream whose writes go through a gate, so that the
// connection's write loop can send many queued messages in one gathered write of whole frames (one sendmsg
// instead of one per message) while Beast still writes the frames it sends on its own — a pong answering a
// ping, the echo of a close, the close handshake — whole, between two batches, never inside one.
//
// Beast writes each of its frames with one composed write (asio::async_write), which issues its next
// write_some from the completion of the previous one, on the same thread. So "no write_some of Beast's is
// outstanding" means "Beast is not inside a frame", and a batch may start; while a batch is being written,
// Beast's write_some waits at the gate until it is done, and goes before the next batch. Everything here runs
// on the connection's thread (one executor per connection): no locks. Included by server.cpp only.

#include <boost/asio/async_result.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

namespace twinbridge::http {

class FrameGate {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;

  explicit FrameGate(boost::beast::tcp_stream&& stream) : stream_(std::move(stream)) {}
  FrameGate(const FrameGate&) = delete;
  FrameGate& operator=(const FrameGate&) = delete;
  ~FrameGate() {
    shared_->gone = true;
    shared_->gate.cancel();
  }

  executor_type get_executor() noexcept { return stream_.get_executor(); }
  boost::beast::tcp_stream& next_layer() noexcept { return stream_; }
  const boost::beast::tcp_stream& next_layer() const noexcept { return stream_; }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return stream_.async_read_some(buffers, std::forward<Token>(token));
  }

  // Beast's writes: at once unless a batch is being written, else when it is done.
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        GatedWrite<beast, Buffers>{this, buffers}, token, stream_);
  }

  // Writes whole frames for the write loop: waits until Beast is between frames, then writes every buffer.
  // Completes with (error_code, bytes written).
  template <class Buffers, class Token>
  auto async_write_frames(const Buffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, std::size_t)>(
        GatedWrite<batch, Buffers>{this, buffers}, token, stream_);
  }

  // The header of an unmasked (server to client), unfragmented text frame of `size` bytes (RFC 6455 5.2).
  struct FrameHeader {
    std::array<std::uint8_t, 10> bytes{};
    std::size_t size = 0;
  };
  static FrameHeader text_frame_header(std::size_t size) {
    FrameHeader h;
    h.bytes[0] = 0x81;  // FIN, opcode 1 (text)
    if (size < 126) {
      h.bytes[1] = static_cast<std::uint8_t>(size);
      h.size = 2;
    } else if (size <= 0xFFFF) {
      h.bytes[1] = 126;
      h.bytes[2] = static_cast<std::uint8_t>(size >> 8);
      h.bytes[3] = static_cast<std::uint8_t>(size);
      h.size = 4;
    } else {
      h.bytes[1] = 127;
      for (int i = 0; i < 8; ++i)
        h.bytes[2 + i] = static_cast<std::uint8_t>(std::uint64_t{size} >> (56 - 8 * i));
      h.size = 10;
    }
    return h;
  }

 private:
  // The two writers: Beast (one write_some of one of its frames) and the write loop (a whole batch).
  enum Side : std::size_t { beast = 0, batch = 1 };

  // What the gate's operations share with it: they may outlive it (a wake-up posted before it went).
  struct Shared {
    explicit Shared(const executor_type& executor) : gate(executor) {
      gate.expires_at(boost::asio::steady_timer::time_point::max());
    }
    boost::asio::steady_timer gate;        // never expires: a wait ends by cancel()
    std::array<std::size_t, 2> writing{};  // by Side: writes outstanding
    std::array<std::size_t, 2> waiting{};  // by Side: writes waiting at the gate
    bool gone = false;                     // the FrameGate was destroyed
  };

  // One write through the gate by `side`: it waits while the other side writes. A batch also waits while
  // Beast waits: Beast's frames go first, so that a pong parked behind one batch does not wait behind the
  // next (Beast's read waits for its pong, so a flood would stop the reading of the client's messages).
  template <Side side, class Buffers>
  struct GatedWrite {
    static constexpr Side other = side == beast ? batch : beast;
    FrameGate* owner;
    Buffers buffers;
    std::shared_ptr<Shared> shared = owner->shared_;
    enum { start, parked, writing } state = start;

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
      auto& s = *shared;
      switch (state) {
        case parked:
          --s.waiting[side];
          if (s.gone) return self.complete(boost::asio::error::operation_aborted, 0);
          [[fallthrough]];
        case start:
          if (s.writing[other] > 0 || (side == batch && s.waiting[beast] > 0)) {
            ++s.waiting[side];
            state = parked;
            s.gate.async_wait(std::move(self));
            return;
          }
          state = writing;
          ++s.writing[side];
          if constexpr (side == beast) {
            owner->stream_.async_write_some(buffers, std::move(self));
          } else {
            boost::asio::async_write(owner->stream_, buffers, std::move(self));
          }
          return;
        case writing:
          // Beast's composed write issues its next write_some from this completion: a batch waiting to start
          // is woken after it (the wake-up is posted) and finds Beast inside its frame, or done.
          if (--s.writing[side] == 0 && s.waiting[other] > 0) s.gate.cancel();
          self.complete(ec, n);
      }
    }
  };

  boost::beast::tcp_stream stream_;
  std::shared_ptr<Shared> shared_ = std::make_shared<Shared>(stream_.get_executor());
};

// WebSocket teardown of the gate is the TCP stream's (Beast finds these by argument-dependent lookup).
inline void teardown(boost::beast::role_type role, FrameGate& gate, boost::system::error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, gate.next_layer(), ec);
}

template <class Handler>
void async_teardown(boost::beast::role_type role, FrameGate& gate, Handler&& handler) {
  using boost::beast::websocket::async_teardown;
  async_teardown(role, gate.next_layer(), std::forward<Handler>(handler));
}

}  // namespace twinbridge::http
