#include "core/credentials.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <string>

namespace twinbridge::core {
namespace {

const std::string kValidToken = "tbk_0123456789abcdef_" + std::string(64, 'a');

TEST(IssueApiKeyTest, TokenHasThePrefixTheKeyIdAndA256BitSecret) {
  const auto key = issue_api_key();
  static const std::regex kForm("tbk_[0-9a-f]{16}_[0-9a-f]{64}");
  EXPECT_TRUE(std::regex_match(key.token, kForm)) << key.token;
  EXPECT_EQ(key.token.substr(4, 16), key.key_id);
}

TEST(IssueApiKeyTest, StoresTheSha256OfTheToken) {
  const auto key = issue_api_key();
  EXPECT_EQ(key.hash, sha256_hex(key.token));
  EXPECT_EQ(key.hash.find(key.token), std::string::npos);
}

TEST(IssueApiKeyTest, TwoKeysDiffer) {
  const auto a = issue_api_key();
  const auto b = issue_api_key();
  EXPECT_NE(a.key_id, b.key_id);
  EXPECT_NE(a.token, b.token);
  EXPECT_NE(a.hash, b.hash);
  EXPECT_NE(a.token.substr(21), b.token.substr(21));
}

TEST(ApiKeyIdOfTest, AcceptsAnIssuedToken) {
  const auto key = issue_api_key();
  const auto id = api_key_id_of(key.token);
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, key.key_id);
}

TEST(ApiKeyIdOfTest, AcceptsAWellFormedToken) {
  const auto id = api_key_id_of(kValidToken);
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, "0123456789abcdef");
}

TEST(ApiKeyIdOfTest, RejectsAWrongPrefix) {
  EXPECT_FALSE(api_key_id_of("tbx_0123456789abcdef_" + std::string(64, 'a')));
  EXPECT_FALSE(api_key_id_of("TBK_0123456789abcdef_" + std::string(64, 'a')));
  EXPECT_FALSE(api_key_id_of("xtbk0123456789abcdef_" + std::string(64, 'a')));
}

TEST(ApiKeyIdOfTest, RejectsUpperCaseHex) {
  EXPECT_FALSE(api_key_id_of("tbk_0123456789ABCDEF_" + std::string(64, 'a')));
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcdef_" + std::string(63, 'a') + "A"));
}

TEST(ApiKeyIdOfTest, RejectsNonHexCharacters) {
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcdeg_" + std::string(64, 'a')));
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcdef_" + std::string(63, 'a') + "_"));
}

TEST(ApiKeyIdOfTest, RejectsWrongLengths) {
  EXPECT_FALSE(api_key_id_of(""));
  EXPECT_FALSE(api_key_id_of("tbk_"));
  EXPECT_FALSE(api_key_id_of(kValidToken.substr(0, kValidToken.size() - 1)));
  EXPECT_FALSE(api_key_id_of(kValidToken + "a"));
  // Key id one digit short and secret one digit long: same total length, separator in the wrong place.
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcde_" + std::string(65, 'a')));
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcdef0_" + std::string(63, 'a')));
}

TEST(ApiKeyIdOfTest, RejectsAMissingSeparator) {
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcdefa" + std::string(64, 'a')));
  EXPECT_FALSE(api_key_id_of("tbk_0123456789abcdef-" + std::string(64, 'a')));
}

TEST(Sha256HexTest, MatchesKnownVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(ConstantTimeEqualTest, ComparesContent) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));
  EXPECT_FALSE(constant_time_equal("secret", "Secret"));
  EXPECT_FALSE(constant_time_equal("secret", "secret2"));
  EXPECT_FALSE(constant_time_equal("secret", ""));
  EXPECT_TRUE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST(RandomHexTest, GivesTwoLowerCaseDigitsPerByte) {
  const auto hex = random_hex(20);
  static const std::regex kHex("[0-9a-f]{40}");
  EXPECT_TRUE(std::regex_match(hex, kHex)) << hex;
  EXPECT_NE(random_hex(16), random_hex(16));
}

}  // namespace
}  // namespace twinbridge::core
