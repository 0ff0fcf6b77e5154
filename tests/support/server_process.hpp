#pragma once
// Starts the real twinbridge executable (TWINBRIDGE_BIN, or the one this build made) as
// `twinbridge serve --listen 127.0.0.1:0 --data <dir> --outbound-allow loopback` (test upstreams listen on
// loopback; a test that passes its own --outbound-allow replaces it, e.g. with "" for the default, nothing)
// and learns its port from the "listening on" log line.
// Its stderr is captured for assertions. The destructor kills a server that is still running.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace twinbridge::testing {

// A fresh directory under the system temp directory, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class ServerProcess {
 public:
  // Starts the server and waits (up to 30 s) for it to listen; throws std::runtime_error with its log
  // otherwise.
  ServerProcess(const std::filesystem::path& data_dir, std::vector<std::string> extra_args = {},
                std::map<std::string, std::string> env = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

  // Sends `signal` and waits for the exit; returns the exit code (or 128 + signal number when killed).
  int stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool running();
  std::string log() const;
  // Waits until the log contains `text`; false on timeout or when the server exits first.
  bool wait_for_log(const std::string& text, std::chrono::milliseconds timeout) const;

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::uint16_t port_ = 0;
  int stderr_fd_ = -1;
  std::thread reader_;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::string log_;
  bool eof_ = false;  // the server closed its stderr (it exited)
};

// The path of the twinbridge executable under test.
std::string twinbridge_binary();

}  // namespace twinbridge::testing
