#pragma once
// Handing memory back to the system after a burst of large work (a JSONPath search over the whole directory,
// a large answer). glibc keeps freed memory in its arenas (one per thread that allocated) and returns only
// the top of the main heap by itself, so after a burst of large queries on the worker threads the idle
// process would keep its peak size. MemoryReleaser::release() asks glibc to give every arena's free pages
// back (malloc_trim); that takes the allocator's locks for a moment, so it runs at most once per `interval`
// however often it is called, and is meant for the end of large jobs, on a worker thread (never an I/O
// thread). Elsewhere than glibc it does nothing. Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace twinbridge::core {

class MemoryReleaser {
 public:
  explicit MemoryReleaser(std::chrono::milliseconds interval = std::chrono::seconds(1))
      : interval_(interval) {}

  // Returns whether it released (false: it did so less than `interval` ago).
  bool release();

 private:
  std::chrono::milliseconds interval_;
  std::atomic<std::int64_t> last_ms_{-1'000'000'000};
};

}  // namespace twinbridge::core
