#include "http/access_log.hpp"

#include <unistd.h>

#include <cerrno>

namespace twinbridge::http {

AccessLog::AccessLog(int fd, std::size_t flush_bytes, std::chrono::milliseconds interval,
                     std::size_t max_buffer_bytes)
    : fd_(fd), flush_bytes_(flush_bytes), interval_(interval), max_buffer_bytes_(max_buffer_bytes) {
  writer_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(buffer_mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();
  flush();
}

void AccessLog::write(std::string_view line) {
  bool wake = false;
  {
    std::lock_guard lock(buffer_mutex_);
    if (buffer_.size() + line.size() + 1 > max_buffer_bytes_) {
      ++dropped_;
      return;
    }
    buffer_.append(line);
    buffer_.push_back('\n');
    if (buffer_.size() >= flush_bytes_ && !woken_) wake = woken_ = true;
  }
  if (wake) wake_.notify_one();
}

void AccessLog::flush() {
  std::string pending;
  {
    std::lock_guard lock(buffer_mutex_);
    pending.swap(buffer_);
  }
  if (!pending.empty()) write_out(pending);
}

std::uint64_t AccessLog::dropped() const {
  std::lock_guard lock(buffer_mutex_);
  return dropped_;
}

void AccessLog::run() {
  std::string pending;
  std::unique_lock lock(buffer_mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, interval_, [&] { return woken_ || stopping_; });
    woken_ = false;
    pending.clear();
    pending.swap(buffer_);
    lock.unlock();
    if (!pending.empty()) write_out(pending);
    lock.lock();
  }
}

void AccessLog::write_out(const std::string& data) {
  std::lock_guard lock(fd_mutex_);
  std::size_t done = 0;
  while (done < data.size()) {
    const auto n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // nowhere to log to: drop the rest
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace twinbridge::http
