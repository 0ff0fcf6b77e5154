#include "http/access_log.hpp"

#include <unistd.h>

#include <cerrno>

namespace twinbridge::http {

void AccessLog::write(std::string_view line) {
  std::string full;
  {
    std::lock_guard lock(buffer_mutex_);
    buffer_.append(line);
    buffer_.push_back('\n');
    if (buffer_.size() < flush_bytes_) return;
    full.swap(buffer_);
    buffer_.reserve(flush_bytes_ + 1024);
  }
  write_out(full);
}

void AccessLog::flush() {
  std::string pending;
  {
    std::lock_guard lock(buffer_mutex_);
    pending.swap(buffer_);
  }
  if (!pending.empty()) write_out(pending);
}

void AccessLog::write_out(const std::string& data) {
  std::lock_guard lock(fd_mutex_);
  std::size_t done = 0;
  while (done < data.size()) {
    const auto n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log to: drop rather than block requests
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace twinbridge::http
