#pragma once
// The access log: one JSON object per request, appended to a buffer that is written to a file descriptor
// (stderr by default) when it holds 64 KiB or when flush() is called (the app does every 200 ms, and at
// exit). Request threads never make a system call or wake another thread to log; the price is that a kill -9
// loses at most the last 200 ms of access lines (never a write: those are durable before they are
// acknowledged). Thread-safe.

#include <mutex>
#include <string>
#include <string_view>

namespace twinbridge::http {

class AccessLog {
 public:
  explicit AccessLog(int fd, std::size_t flush_bytes = 64 * 1024) : fd_(fd), flush_bytes_(flush_bytes) {}
  ~AccessLog() { flush(); }
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Appends one line (a newline is added).
  void write(std::string_view line);
  void flush();

 private:
  void write_out(const std::string& data);

  int fd_;
  std::size_t flush_bytes_;
  std::mutex buffer_mutex_;
  std::string buffer_;
  std::mutex fd_mutex_;  // keeps whole buffers in order on the descriptor
};

}  // namespace twinbridge::http
