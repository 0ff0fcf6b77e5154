#include "core/utf8.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace twinbridge::core {
namespace {

constexpr auto npos = std::string_view::npos;
const std::string kReplacement = "\xEF\xBF\xBD";

TEST(Utf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ASCII, long enough to take the eight-byte path: 0123456789"));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9"));                // U+00E9
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC"));               // U+20AC
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));               // U+D7FF, just below the surrogates
  EXPECT_TRUE(is_valid_utf8("\xEE\x80\x80"));               // U+E000, just above them
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80"));           // U+1F600
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));           // U+10FFFF, the last code point
  EXPECT_TRUE(is_valid_utf8(std::string_view("a\0b", 3)));  // NUL is well-formed (ids refuse it)
}

TEST(Utf8Test, FindsTheFirstIllFormedSequence) {
  EXPECT_EQ(invalid_utf8_offset("urn:probe:\xFF\xFE"), 10u);
  EXPECT_EQ(invalid_utf8_offset("0123456789abcdef\x80"), 16u);  // a lone continuation byte after 16 ASCII
  EXPECT_EQ(invalid_utf8_offset("ok"), npos);
}

TEST(Utf8Test, RefusesOverlongEncodings) {
  EXPECT_EQ(invalid_utf8_offset("\xC0\xAF"), 0u);  // '/' in two bytes
  EXPECT_EQ(invalid_utf8_offset("\xC1\xBF"), 0u);
  EXPECT_EQ(invalid_utf8_offset("\xE0\x80\xAF"), 0u);      // '/' in three bytes
  EXPECT_EQ(invalid_utf8_offset("\xE0\x9F\xBF"), 0u);      // U+07FF in three bytes
  EXPECT_EQ(invalid_utf8_offset("\xF0\x80\x80\xAF"), 0u);  // '/' in four bytes
  EXPECT_EQ(invalid_utf8_offset("\xF0\x8F\xBF\xBF"), 0u);  // U+FFFF in four bytes
}

TEST(Utf8Test, RefusesSurrogatesAndCodePointsAboveTheLast) {
  EXPECT_EQ(invalid_utf8_offset("a\xED\xA0\x80"), 1u);             // U+D800
  EXPECT_EQ(invalid_utf8_offset("a\xED\xBF\xBF"), 1u);             // U+DFFF
  EXPECT_EQ(invalid_utf8_offset("\xED\xA0\xBD\xED\xB8\x80"), 0u);  // a CESU-8 surrogate pair
  EXPECT_EQ(invalid_utf8_offset("\xF4\x90\x80\x80"), 0u);          // U+110000
  EXPECT_EQ(invalid_utf8_offset("\xF5\x80\x80\x80"), 0u);
  EXPECT_EQ(invalid_utf8_offset("\xF8\x88\x80\x80\x80"), 0u);  // the old five-byte form
}

TEST(Utf8Test, RefusesTruncatedSequences) {
  EXPECT_EQ(invalid_utf8_offset("ab\xC3"), 2u);
  EXPECT_EQ(invalid_utf8_offset("ab\xE2\x82"), 2u);
  EXPECT_EQ(invalid_utf8_offset("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(invalid_utf8_offset("\xE2\x82x"), 0u);
}

TEST(Utf8Test, RepairsEachMaximalSubpartWithOneReplacementCharacter) {
  EXPECT_EQ(to_valid_utf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(to_valid_utf8("urn:probe:\xFF\xFE"), "urn:probe:" + kReplacement + kReplacement);
  // A truncated three-byte sequence is one maximal subpart; the ASCII byte after it is kept.
  EXPECT_EQ(to_valid_utf8("a\xE2\x82z"), "a" + kReplacement + "z");
  // Overlong and surrogate forms: every byte is its own subpart (Unicode's table 3-8 examples).
  EXPECT_EQ(to_valid_utf8("\xC0\xAF"), kReplacement + kReplacement);
  EXPECT_EQ(to_valid_utf8("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);
  // JSON structure survives: the quote after a broken lead byte stays a quote.
  EXPECT_EQ(to_valid_utf8("{\"id\":\"x\xC3\"}"), "{\"id\":\"x" + kReplacement + "\"}");
  EXPECT_TRUE(is_valid_utf8(to_valid_utf8("\xF4\x90\x80\x80\xF0\x9F\x98")));
}

TEST(Utf8Test, DescribesWhatIsWrong) {
  EXPECT_EQ(describe_invalid_utf8("urn:probe:\xFF\xFE", 10),
            "byte 0xFF at offset 10 is not part of a well-formed UTF-8 sequence");
  EXPECT_EQ(describe_invalid_utf8("ab\xE2\x82", 2), "the UTF-8 sequence at offset 2 is incomplete");
}

}  // namespace
}  // namespace twinbridge::core
