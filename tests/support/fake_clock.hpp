#pragma once
// A core::Clock that tests set and advance by hand, so that expiry, throttling and TTLs are tested without
// waiting on the wall clock. Both readings (time of day and monotonic) move together by advance(); set()
// moves the time of day alone, as an operator setting the system clock would. Thread-safe: the code under
// test may read it from its own threads while the test advances it.

#include <chrono>
#include <mutex>

#include "core/time.hpp"

namespace twinbridge::testing {

class FakeClock final : public core::Clock {
 public:
  explicit FakeClock(core::Timestamp start = core::from_unix_micros(1'800'000'000'000'000)) : now_(start) {}

  core::Timestamp now() const override {
    std::lock_guard lock(mutex_);
    return now_;
  }
  std::chrono::steady_clock::time_point monotonic() const override {
    std::lock_guard lock(mutex_);
    return monotonic_;
  }

  void advance(std::chrono::microseconds by) {
    std::lock_guard lock(mutex_);
    now_ += by;
    monotonic_ += by;
  }
  void set(core::Timestamp now) {
    std::lock_guard lock(mutex_);
    now_ = now;
  }

 private:
  mutable std::mutex mutex_;
  core::Timestamp now_;
  std::chrono::steady_clock::time_point monotonic_{std::chrono::hours(1)};
};

}  // namespace twinbridge::testing
