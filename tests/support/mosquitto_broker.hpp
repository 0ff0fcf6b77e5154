#pragma once
// A real Mosquitto broker for tests: `mosquitto -c <config>` (/usr/sbin/mosquitto, or MOSQUITTO_BIN) with a
// configuration written to a fresh temp dir: one listener on 127.0.0.1 at a port picked free (a port already
// taken is detected from the broker's log and another one is tried), anonymous clients allowed, persistence
// on in the temp dir (a persistent session, its subscriptions and its queued QoS 1 messages survive
// restart()), the log in the temp dir. The constructor returns once the broker has opened its listener
// (polled, with a deadline); failures throw std::runtime_error with the broker's log. The destructor kills
// the broker.
//
// Not thread-safe: one test thread drives it.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "support/server_process.hpp"

namespace twinbridge::testing {

class MosquittoBroker {
 public:
  // `listener_options`: configuration lines for the listener, written after its `listener` line and the
  // defaults they may override (e.g. "certfile ...\nkeyfile ...\n" for TLS, "allow_anonymous false\n").
  explicit MosquittoBroker(std::string listener_options = {});
  ~MosquittoBroker();
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  std::uint16_t port() const { return port_; }
  // "mqtt://127.0.0.1:<port>" (mqtts:// when `tls`).
  std::string url(bool tls = false) const;
  const std::filesystem::path& dir() const { return dir_.path(); }

  // SIGTERM, then waits for the exit (Mosquitto writes its persistence file first). Nothing when stopped.
  void stop();
  // stop(), then starts again on the same port. With `forget_state` the persistence file is deleted in
  // between: the broker comes back without sessions, subscriptions or queued messages.
  void restart(bool forget_state = false);
  bool running();
  std::string log() const;

 private:
  void start();
  void write_config() const;

  TempDir dir_;
  std::string listener_options_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace twinbridge::testing
