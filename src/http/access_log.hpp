#pragma once
// The access log: one JSON object per request, appended to a buffer that the log's own writer thread writes
// to a file descriptor (stderr by default) every `interval` (200 ms), or sooner when the buffer holds
// `flush_bytes` (64 KiB). A request thread only appends under a short lock (and wakes the writer at most once
// per `flush_bytes`); it never writes to the descriptor, so a slow or blocked stderr never holds up an event
// loop. Should the descriptor block for long, at most `max_buffer_bytes` (16 MiB) wait; further lines are
// dropped and counted (dropped()), rather than growing without bound. A kill -9 loses at most the last
// `interval` of access lines (never a write: those are durable before they are acknowledged). The
// destructor writes what is left. Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace twinbridge::http {

class AccessLog {
 public:
  explicit AccessLog(int fd, std::size_t flush_bytes = 64 * 1024,
                     std::chrono::milliseconds interval = std::chrono::milliseconds(200),
                     std::size_t max_buffer_bytes = 16 * 1024 * 1024);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Appends one line (a newline is added).
  void write(std::string_view line);
  // Writes what is buffered now, on the calling thread (for tests and for the end of the process).
  void flush();
  // Lines dropped because the buffer was full.
  std::uint64_t dropped() const;

 private:
  void run();
  void write_out(const std::string& data);

  int fd_;
  std::size_t flush_bytes_;
  std::chrono::milliseconds interval_;
  std::size_t max_buffer_bytes_;
  mutable std::mutex buffer_mutex_;
  std::condition_variable wake_;
  std::string buffer_;
  bool woken_ = false;  // the writer was asked to write before its interval is up
  bool stopping_ = false;
  std::uint64_t dropped_ = 0;
  std::mutex fd_mutex_;  // keeps whole buffers in order on the descriptor
  std::thread writer_;
};

}  // namespace twinbridge::http
