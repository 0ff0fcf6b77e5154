// The id rule (core::validate_id) beyond ASCII: UTF-8, NFC and the characters no id may hold. The ASCII part
// of the rule for token ids is tested in principal_test.cpp.

#include "core/ids.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace twinbridge::core {
namespace {

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// The detail of the refusal of `id` as a twin id (IdKind::iri); empty when it is accepted.
std::string refusal(std::string_view id) {
  const auto r = validate_id(id, "/id", IdKind::iri);
  return r ? std::string() : r.error().detail;
}

TEST(IdRuleTest, AcceptsNfcTextWithLettersOfAnyScript) {
  EXPECT_EQ(refusal("urn:probe:caf\xC3\xA9"), "");                             // café, NFC
  EXPECT_EQ(refusal("urn:dev:\xE6\x9D\xB1\xE4\xBA\xAC-1"), "");                // 東京
  EXPECT_EQ(refusal("urn:dev:\xD0\xBB\xD0\xB0\xD0\xBC\xD0\xBF\xD0\xB0"), "");  // лампа
  EXPECT_EQ(refusal("urn:dev:\xF0\x9F\x92\xA1"), "");  // U+1F4A1, a symbol outside the BMP
  EXPECT_EQ(refusal("urn:dev:ops:lamp-1"), "");
  EXPECT_EQ(refusal(std::string(kMaxIdBytes, 'a')), "");
}

TEST(IdRuleTest, RefusesIllFormedUtf8WithTheOffset) {
  const auto r = validate_id("urn:probe:\xFF\xFE", "/id", IdKind::iri);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::validation_failed);
  ASSERT_EQ(r.error().fields.size(), 1u);
  EXPECT_EQ(r.error().fields[0].pointer, "/id");
  EXPECT_TRUE(contains(r.error().detail, "not valid UTF-8: byte 0xFF at offset 10")) << r.error().detail;
  // Token ids (principals, systems) say the same, not merely "non-ASCII".
  EXPECT_TRUE(contains(validate_id("p\xFF", "/id").error().detail, "not valid UTF-8"));
}

TEST(IdRuleTest, RefusesOverlongEncodingsAndSurrogates) {
  // An overlong '/' must never pass as something else (the classic path traversal spelling).
  EXPECT_TRUE(contains(refusal("urn:a:\xC0\xAF"), "not valid UTF-8"));
  EXPECT_TRUE(contains(refusal("urn:a:\xE0\x80\xAF"), "not valid UTF-8"));
  EXPECT_TRUE(contains(refusal("urn:a:\xF0\x80\x80\xAF"), "not valid UTF-8"));
  EXPECT_TRUE(contains(refusal("urn:a:\xED\xA0\x80"), "not valid UTF-8"));              // U+D800
  EXPECT_TRUE(contains(refusal("urn:a:\xED\xA0\xBD\xED\xB8\x80"), "not valid UTF-8"));  // CESU-8
  EXPECT_TRUE(contains(refusal("urn:a:\xF4\x90\x80\x80"), "not valid UTF-8"));          // above U+10FFFF
  EXPECT_TRUE(contains(refusal("urn:a:\xE2\x82"), "incomplete"));
}

TEST(IdRuleTest, RefusesNfdAndGivesTheNfcForm) {
  // "café" with e + U+0301 COMBINING ACUTE ACCENT looks like the NFC one but is other bytes.
  const auto r = validate_id("urn:probe:cafe\xCC\x81", "/id", IdKind::iri);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().detail, "not in Unicode Normalization Form C (NFC)")) << r.error().detail;
  EXPECT_TRUE(contains(r.error().detail, "its NFC form is 'urn:probe:caf\xC3\xA9'")) << r.error().detail;
  EXPECT_TRUE(contains(r.error().detail, "urn:probe:caf%C3%A9 in a URL path")) << r.error().detail;
  // Other non-NFC spellings: Å as A + ring, and the singleton U+212B ANGSTROM SIGN (NFC: U+00C5).
  EXPECT_TRUE(contains(refusal("urn:x:A\xCC\x8A"), "NFC"));
  EXPECT_TRUE(contains(refusal("urn:x:\xE2\x84\xAB"), "NFC"));
  EXPECT_EQ(refusal("urn:x:\xC3\x85"), "");
  // Hangul jamo that compose to one syllable.
  EXPECT_TRUE(contains(refusal("urn:x:\xE1\x84\x80\xE1\x85\xA1"), "NFC"));
}

TEST(IdRuleTest, RefusesControlCharactersOfEveryRange) {
  EXPECT_TRUE(contains(refusal(std::string_view("urn:a:\0", 7)), "control character U+0000 at offset 6"));
  EXPECT_TRUE(contains(refusal("urn:a:\n"), "control character U+000A"));
  EXPECT_TRUE(contains(refusal("urn:a:\x7F"), "control character U+007F"));
  EXPECT_TRUE(contains(refusal("urn:a:\xC2\x85"), "control character U+0085"));  // C1 NEXT LINE
  EXPECT_TRUE(contains(refusal("urn:a:\xC2\x9F"), "control character U+009F"));
}

TEST(IdRuleTest, RefusesInvisibleAndLookAlikeCharacters) {
  EXPECT_TRUE(contains(refusal("urn:a:\xE2\x80\xAE"
                               "gnp.exe"),
                       "format character"));                                         // U+202E RLO
  EXPECT_TRUE(contains(refusal("urn:a:b\xE2\x80\x8B"), "format character U+200B"));  // zero width space
  EXPECT_TRUE(contains(refusal("urn:a:\xEF\xBB\xBF"), "format character U+FEFF"));   // BOM
  EXPECT_TRUE(contains(refusal("urn:a:\xC2\xA0"
                               "b"),
                       "space character U+00A0"));  // no-break space
  EXPECT_TRUE(contains(refusal("urn:a: b"), "space character U+0020"));
  EXPECT_TRUE(contains(refusal("urn:a:\xE2\x80\xA8"), "line or paragraph separator U+2028"));
  EXPECT_TRUE(contains(refusal("urn:a:\xEE\x80\x80"), "private-use character U+E000"));
  EXPECT_TRUE(contains(refusal("urn:a:\xEF\xBF\xBE"), "noncharacter U+FFFE"));
  EXPECT_TRUE(contains(refusal("urn:a:\xEF\xB7\x90"), "noncharacter U+FDD0"));
  EXPECT_TRUE(contains(refusal("urn:a:\xF3\xB0\x80\x80"), "U+F0000"));  // plane 15: private use
}

TEST(IdRuleTest, RefusesEmptyAndLongIdsInBytes) {
  EXPECT_TRUE(contains(refusal(""), "must not be empty"));
  // 129 two-byte letters are 258 bytes: the limit is in bytes, as stored and indexed.
  std::string long_id;
  for (int i = 0; i < 129; ++i) long_id += "\xC3\xA9";
  EXPECT_TRUE(contains(refusal(long_id), "258 bytes long; at most 256"));
}

TEST(IdRuleTest, TokenIdsStayAscii) {
  const auto r = validate_id("caf\xC3\xA9", "/id");
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error().detail, "non-ASCII character U+00E9 at offset 3")) << r.error().detail;
}

TEST(IdRuleTest, NamesTheFieldWhereTheIdCameFrom) {
  const auto r = validate_id("urn:probe:\xFF", "id", IdKind::iri, FieldIn::path);
  ASSERT_FALSE(r);
  ASSERT_EQ(r.error().fields.size(), 1u);
  EXPECT_EQ(r.error().fields[0].in, FieldIn::path);
  EXPECT_EQ(r.error().fields[0].pointer, "id");
}

}  // namespace
}  // namespace twinbridge::core
