#pragma once
// A blocking WebSocket client (Beast) for integration tests: it connects to 127.0.0.1:port, sends the opening
// handshake for a target with the headers and subprotocols a test chooses, and then sends and reads text
// messages. Every call has a deadline, so a test never hangs; a read that times out leaves its read pending,
// so the next read() picks up where it stopped. A handshake the server refuses is no error: accepted() is
// false and handshake() holds the server's answer (status, headers, problem body). Not thread-safe: one
// thread uses one client.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "support/http_client.hpp"

namespace twinbridge::testing {

struct WsOptions {
  std::vector<std::pair<std::string, std::string>> headers;  // added to the handshake request
  std::vector<std::string> protocols;                        // Sec-WebSocket-Protocol, offered in order
  std::chrono::milliseconds timeout{10'000};                 // each call's deadline unless it takes one
  int receive_buffer_bytes = 0;  // SO_RCVBUF set before connecting (a slow reader); 0: the system's
  std::size_t read_message_max = std::size_t{64} << 20;
};

// The Authorization header of a bearer token, for WsOptions::headers.
std::vector<std::pair<std::string, std::string>> bearer(const std::string& token);

class WsClient {
 public:
  // Connects and sends the handshake for `target` ("/path?query"). Throws std::runtime_error when the TCP
  // connection or the exchange itself fails (not when the server answers something other than 101).
  WsClient(std::uint16_t port, const std::string& target, WsOptions options = {});
  ~WsClient();
  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  // Whether the server answered 101 and the connection is a WebSocket.
  bool accepted() const;
  // The server's answer to the handshake: 101 with its headers, or the refusal with its body.
  const HttpResponse& handshake() const;

  // Sends a text message (or the bytes as a binary message); false when the connection is closed or the
  // deadline passed. A text message is sent as given, valid UTF-8 or not.
  bool send(const std::string& text);
  bool send_binary(const std::string& bytes);
  // Sends a ping with `payload`; false when the connection is closed or the deadline passed. The pongs
  // that come back are read with the messages (by read() and wait_close()) and listed by pongs().
  bool ping(const std::string& payload);
  const std::vector<std::string>& pongs() const;

  // The next message; nullopt when none arrived within the deadline (the read stays pending) or the
  // connection closed (then closed() is true, and close_code() tells how).
  std::optional<std::string> read();
  std::optional<std::string> read(std::chrono::milliseconds within);

  // Reads and drops messages until the server closes the connection; its close code (1005 for a close frame
  // without one), or nullopt when the connection did not close within `within` or closed without a close
  // frame.
  std::optional<int> wait_close(std::chrono::milliseconds within);
  // The number of messages wait_close() dropped.
  std::size_t dropped() const;

  // Closes with `code` and waits (within the deadline) for the server's close frame; false when it did not
  // come.
  bool close(int code = 1000);

  bool closed() const;
  // The code and reason of the close frame received, once closed() (nullopt: closed without a close frame).
  std::optional<int> close_code() const;
  std::string close_reason() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace twinbridge::testing
