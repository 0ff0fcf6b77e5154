#include "core/time.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace twinbridge::core {
namespace {

using namespace std::chrono_literals;

Timestamp at(std::chrono::year_month_day day, std::chrono::microseconds time_of_day) {
  return Timestamp{std::chrono::sys_days{day}} + time_of_day;
}

const Timestamp kExample = at(2026y / 11 / 24, 11h + 14min + 12s + 123456us);

TEST(FormatRfc3339Test, WritesUtcWithSixFractionDigits) {
  EXPECT_EQ(format_rfc3339(kExample), "2026-11-24T11:14:12.123456Z");
  EXPECT_EQ(format_rfc3339(from_unix_micros(0)), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_rfc3339(at(2024y / 2 / 29, 23h + 59min + 59s + 999999us)), "2024-02-29T23:59:59.999999Z");
}

TEST(FormatRfc3339Test, WritesInstantsBeforeTheEpoch) {
  EXPECT_EQ(format_rfc3339(from_unix_micros(-1)), "1969-12-31T23:59:59.999999Z");
}

TEST(ParseRfc3339Test, RoundTripsWithMicroseconds) {
  const auto parsed = parse_rfc3339("2026-11-24T11:14:12.123456Z");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, kExample);
  EXPECT_EQ(format_rfc3339(*parsed), "2026-11-24T11:14:12.123456Z");

  for (const auto t : {from_unix_micros(0), from_unix_micros(1), from_unix_micros(1'780'000'000'000'001),
                       from_unix_micros(-1'000'000), kExample}) {
    const auto back = parse_rfc3339(format_rfc3339(t));
    ASSERT_TRUE(back.has_value()) << format_rfc3339(t);
    EXPECT_EQ(*back, t) << format_rfc3339(t);
  }
}

TEST(ParseRfc3339Test, AcceptsAnyNumberOfFractionDigits) {
  EXPECT_EQ(parse_rfc3339("2026-11-24T11:14:12Z"), kExample - 123456us);
  EXPECT_EQ(parse_rfc3339("2026-11-24T11:14:12.5Z"), kExample - 123456us + 500000us);
  // Digits beyond the microsecond are dropped.
  EXPECT_EQ(parse_rfc3339("2026-11-24T11:14:12.123456789Z"), kExample);
}

TEST(ParseRfc3339Test, AppliesOffsets) {
  EXPECT_EQ(parse_rfc3339("2026-11-24T13:14:12.123456+02:00"), kExample);
  EXPECT_EQ(parse_rfc3339("2026-11-24T05:44:12.123456-05:30"), kExample);
  EXPECT_EQ(parse_rfc3339("2026-11-24T11:14:12.123456+00:00"), kExample);
  EXPECT_EQ(parse_rfc3339("2026-11-24T11:14:12.123456-00:00"), kExample);
  // An offset that moves the instant to another day.
  EXPECT_EQ(parse_rfc3339("2026-11-25T01:00:00+02:00"), at(2026y / 11 / 24, 23h));
}

TEST(ParseRfc3339Test, AcceptsLowerCaseTAndZ) {
  EXPECT_EQ(parse_rfc3339("2026-11-24t11:14:12.123456z"), kExample);
  EXPECT_EQ(parse_rfc3339("2026-11-24t11:14:12.123456Z"), kExample);
  EXPECT_EQ(parse_rfc3339("2026-11-24T11:14:12.123456z"), kExample);
}

TEST(ParseRfc3339Test, RejectsDatesThatDoNotExist) {
  EXPECT_FALSE(parse_rfc3339("2026-02-30T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2025-02-29T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-00-10T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-04-31T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-04-00T00:00:00Z"));
  EXPECT_TRUE(parse_rfc3339("2024-02-29T00:00:00Z"));
}

TEST(ParseRfc3339Test, RejectsTimesThatDoNotExist) {
  EXPECT_FALSE(parse_rfc3339("2026-11-24T24:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T25:14:12Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:60:12Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:61Z"));
}

TEST(ParseRfc3339Test, RequiresAZone) {
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12.123456"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24"));
}

TEST(ParseRfc3339Test, RejectsTrailingGarbage) {
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12Zx"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12Z "));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12+02:00:00"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12.123456ZZ"));
}

TEST(ParseRfc3339Test, RejectsMalformedText) {
  EXPECT_FALSE(parse_rfc3339(""));
  EXPECT_FALSE(parse_rfc3339("not a time"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24X11:14:12Z"));
  EXPECT_FALSE(parse_rfc3339("2026/11/24T11:14:12Z"));
  EXPECT_FALSE(parse_rfc3339("26-11-24T11:14:12Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12.Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T1:14:12Z"));
  EXPECT_FALSE(parse_rfc3339("+026-11-24T11:14:12Z"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12+2:00"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12+0200"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12+02"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12+24:00"));
  EXPECT_FALSE(parse_rfc3339("2026-11-24T11:14:12+02:60"));
}

TEST(UnixMicrosTest, RoundTrips) {
  EXPECT_EQ(to_unix_micros(from_unix_micros(1'780'000'000'123'456)), 1'780'000'000'123'456);
  EXPECT_EQ(to_unix_micros(kExample), 1'795'518'852'123'456);
}

TEST(SystemClockTest, IsCloseToTheSystemClock) {
  const SystemClock clock;
  const auto before = std::chrono::system_clock::now();
  const auto now = clock.now();
  const auto after = std::chrono::system_clock::now();
  EXPECT_GE(now, std::chrono::floor<std::chrono::microseconds>(before));
  EXPECT_LE(now, std::chrono::ceil<std::chrono::microseconds>(after));
}

}  // namespace
}  // namespace twinbridge::core
