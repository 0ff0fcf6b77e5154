#pragma once
// Time in twinbridge: UTC instants with microsecond precision, written as RFC 3339
// ("2026-11-24T11:14:12.123456Z"). A Clock is passed to whatever needs "now" so that tests can use a fake
// one.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace twinbridge::core {

using Timestamp = std::chrono::sys_time<std::chrono::microseconds>;

std::string format_rfc3339(Timestamp t);
std::optional<Timestamp> parse_rfc3339(std::string_view text);
std::int64_t to_unix_micros(Timestamp t);
Timestamp from_unix_micros(std::int64_t us);

class Clock {
 public:
  virtual ~Clock() = default;
  // The time of day (UTC): for what is recorded, and for comparing with dates (expiry, TTLs in records).
  virtual Timestamp now() const = 0;
  // A reading that only moves forward, for measuring intervals (rate limits): setting the time of day does
  // not move it. Defaults to std::chrono::steady_clock.
  virtual std::chrono::steady_clock::time_point monotonic() const;
};

class SystemClock final : public Clock {
 public:
  Timestamp now() const override;
};

}  // namespace twinbridge::core
