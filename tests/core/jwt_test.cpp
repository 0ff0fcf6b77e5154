#include "core/jwt.hpp"
#include "core/openssl_ptr.hpp"

#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <boost/json/serialize.hpp>

#include "core/base64url.hpp"

namespace twinbridge::core {
namespace {

constexpr std::int64_t kNow = 1'700'000'000;
constexpr std::string_view kIssuer = "https://issuer.example";
constexpr std::string_view kAudience = "twinbridge";

using core::openssl::BignumPtr;
using core::openssl::BioPtr;
using core::openssl::EcdsaSigPtr;
using core::openssl::MdCtxPtr;
using core::openssl::PkeyPtr;

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

PkeyPtr generate_rsa(std::size_t bits) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
  if (!key) throw std::runtime_error("RSA key generation failed");
  return key;
}

PkeyPtr generate_ec(const char* curve) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
  if (!key) throw std::runtime_error("EC key generation failed");
  return key;
}

std::string public_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1)
    throw std::runtime_error("PEM_write_bio_PUBKEY failed");
  char* data = nullptr;
  const long len = BIO_ctrl(bio.get(), BIO_CTRL_INFO, 0, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// --- A test-only signer: the verifier under test never signs. ---

using Signer = std::function<std::string(std::string_view signing_input)>;

Signer hs256_signer(std::string secret) {
  return [secret = std::move(secret)](std::string_view input) {
    std::string mac(EVP_MAX_MD_SIZE, '\0');
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), bytes_of(input), input.size(),
         reinterpret_cast<unsigned char*>(mac.data()), &len);
    mac.resize(len);
    return mac;
  };
}

// What EVP_DigestSign produces: PKCS#1 v1.5 for RSA, DER ECDSA-Sig-Value for EC.
std::string digest_sign_sha256(EVP_PKEY* key, std::string_view input) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, bytes_of(input), input.size()) != 1) {
    throw std::runtime_error("EVP_DigestSign setup failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, bytes_of(input),
                     input.size()) != 1) {
    throw std::runtime_error("EVP_DigestSign failed");
  }
  sig.resize(len);
  return sig;
}

Signer rs256_signer(EVP_PKEY* key) {
  return [key](std::string_view input) { return digest_sign_sha256(key, input); };
}

Signer es256_der_signer(EVP_PKEY* key) {
  return [key](std::string_view input) { return digest_sign_sha256(key, input); };
}

// JWS form of an ECDSA signature: R || S, 32 bytes each.
Signer es256_signer(EVP_PKEY* key) {
  return [key](std::string_view input) {
    const std::string der = digest_sign_sha256(key, input);
    const unsigned char* p = bytes_of(der);
    EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
    if (!sig) throw std::runtime_error("d2i_ECDSA_SIG failed");
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    return raw;
  };
}

Signer no_signature() {
  return [](std::string_view) { return std::string(); };
}

std::string encode_json(const boost::json::object& o) {
  return base64url_encode(boost::json::serialize(o));
}

// header.payload.signature from already-encoded parts, signing exactly the text given.
std::string raw_token(std::string_view encoded_header, std::string_view encoded_payload, const Signer& sign) {
  const std::string input = std::string(encoded_header) + "." + std::string(encoded_payload);
  return input + "." + base64url_encode(sign(input));
}

std::string make_token(const boost::json::object& header, const boost::json::object& claims,
                       const Signer& sign) {
  return raw_token(encode_json(header), encode_json(claims), sign);
}

struct TestKeys {
  std::string hs_secret = "0123456789abcdef0123456789abcdef-hs256";
  PkeyPtr rsa = generate_rsa(2048);
  std::string rsa_pem = public_pem(rsa.get());
  PkeyPtr ec = generate_ec("P-256");
  std::string ec_pem = public_pem(ec.get());
};

// Key generation is the slow part; every test shares one set.
const TestKeys& keys() {
  static const TestKeys k;
  return k;
}

JwtPolicy default_policy() {
  return JwtPolicy{
      .issuer = std::string(kIssuer), .audience = std::string(kAudience), .leeway = std::chrono::seconds(60)};
}

boost::json::object valid_claims() {
  return {{"sub", "alice"}, {"iss", kIssuer}, {"aud", kAudience}, {"exp", kNow + 600}, {"iat", kNow - 10}};
}

::testing::AssertionResult rejected_with(const Result<JwtClaims>& result, std::string_view detail) {
  if (result) return ::testing::AssertionFailure() << "token was accepted for subject " << result->subject;
  if (result.error().code != Errc::unauthenticated) {
    return ::testing::AssertionFailure()
           << "code is " << to_string(result.error().code) << ", not unauthenticated";
  }
  if (result.error().detail.find(detail) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "detail \"" << result.error().detail << "\" does not contain \"" << detail << "\"";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult create_fails_with(const Result<JwtVerifier>& result, std::string_view detail) {
  if (result) return ::testing::AssertionFailure() << "create() succeeded";
  if (result.error().code != Errc::validation_failed) {
    return ::testing::AssertionFailure()
           << "code is " << to_string(result.error().code) << ", not validation_failed";
  }
  if (result.error().detail.find(detail) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "detail \"" << result.error().detail << "\" does not contain \"" << detail << "\"";
  }
  return ::testing::AssertionSuccess();
}

class JwtVerifierTest : public ::testing::Test {
 protected:
  JwtVerifierTest() {
    auto created = JwtVerifier::create(
        {
            JwtKey{.kid = "hs", .alg = JwtAlg::hs256, .secret = keys().hs_secret, .public_key_pem = {}},
            JwtKey{.kid = "rsa", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = keys().rsa_pem},
            JwtKey{.kid = "ec", .alg = JwtAlg::es256, .secret = {}, .public_key_pem = keys().ec_pem},
        },
        default_policy());
    if (!created) throw std::runtime_error("fixture verifier: " + created.error().detail);
    verifier_ = std::move(*created);
  }

  static std::string hs_token(const boost::json::object& claims) {
    return make_token({{"alg", "HS256"}, {"typ", "JWT"}, {"kid", "hs"}}, claims,
                      hs256_signer(keys().hs_secret));
  }
  static std::string rs_token(const boost::json::object& claims) {
    return make_token({{"alg", "RS256"}, {"typ", "JWT"}, {"kid", "rsa"}}, claims,
                      rs256_signer(keys().rsa.get()));
  }
  static std::string es_token(const boost::json::object& claims) {
    return make_token({{"alg", "ES256"}, {"typ", "JWT"}, {"kid", "ec"}}, claims,
                      es256_signer(keys().ec.get()));
  }

  Result<JwtClaims> verify(std::string_view token, std::int64_t now = kNow) const {
    return verifier_.verify(token, now);
  }

  JwtVerifier verifier_;
};

// --- Algorithm names ---

TEST(JwtAlgTest, ParsesOnlyTheThreeSupportedNames) {
  EXPECT_EQ(parse_jwt_alg("HS256"), JwtAlg::hs256);
  EXPECT_EQ(parse_jwt_alg("RS256"), JwtAlg::rs256);
  EXPECT_EQ(parse_jwt_alg("ES256"), JwtAlg::es256);
  for (const char* name : {"hs256", "none", "HS384", "RS512", "PS256", "ES256K", "EdDSA", ""}) {
    EXPECT_FALSE(parse_jwt_alg(name).has_value()) << name;
  }
}

// --- Valid tokens ---

TEST_F(JwtVerifierTest, AcceptsValidHs256) {
  boost::json::object claims = valid_claims();
  claims["scope"] = "twins:read";
  const auto result = verify(hs_token(claims));
  ASSERT_TRUE(result) << result.error().detail;
  EXPECT_EQ(result->subject, "alice");
  EXPECT_EQ(result->issuer, kIssuer);
  EXPECT_EQ(result->audience, std::vector<std::string>{std::string(kAudience)});
  EXPECT_EQ(result->expires_at, kNow + 600);
  EXPECT_EQ(result->issued_at, kNow - 10);
  EXPECT_EQ(result->not_before, 0);
  EXPECT_EQ(result->key_id, "hs");
  EXPECT_EQ(result->all.at("scope").as_string(), "twins:read");
}

TEST_F(JwtVerifierTest, AcceptsValidRs256) {
  const auto result = verify(rs_token(valid_claims()));
  ASSERT_TRUE(result) << result.error().detail;
  EXPECT_EQ(result->subject, "alice");
  EXPECT_EQ(result->key_id, "rsa");
}

TEST_F(JwtVerifierTest, AcceptsValidEs256) {
  const auto result = verify(es_token(valid_claims()));
  ASSERT_TRUE(result) << result.error().detail;
  EXPECT_EQ(result->subject, "alice");
  EXPECT_EQ(result->key_id, "ec");
}

TEST_F(JwtVerifierTest, AcceptsTokenWithoutTypOrKid) {
  for (const auto& [header, signer] : std::vector<std::pair<boost::json::object, Signer>>{
           {{{"alg", "HS256"}}, hs256_signer(keys().hs_secret)},
           {{{"alg", "RS256"}}, rs256_signer(keys().rsa.get())},
           {{{"alg", "ES256"}}, es256_signer(keys().ec.get())},
       }) {
    const auto result = verify(make_token(header, valid_claims(), signer));
    ASSERT_TRUE(result) << boost::json::serialize(header) << ": " << result.error().detail;
  }
}

TEST(JwtVerifierKeysTest, WithoutKidTriesEveryKeyOfTheHeaderAlgorithm) {
  const std::string other_secret(40, 'x');
  auto verifier = JwtVerifier::create(
      {
          JwtKey{.kid = "old", .alg = JwtAlg::hs256, .secret = std::string(48, 'o'), .public_key_pem = {}},
          JwtKey{.kid = "new", .alg = JwtAlg::hs256, .secret = other_secret, .public_key_pem = {}},
      },
      default_policy());
  ASSERT_TRUE(verifier) << verifier.error().detail;
  const auto result =
      verifier->verify(make_token({{"alg", "HS256"}}, valid_claims(), hs256_signer(other_secret)), kNow);
  ASSERT_TRUE(result) << result.error().detail;
  EXPECT_EQ(result->key_id, "new");
}

TEST_F(JwtVerifierTest, AcceptsAudienceArrayContainingOurs) {
  boost::json::object claims = valid_claims();
  claims["aud"] = boost::json::array{"other", kAudience};
  const auto result = verify(rs_token(claims));
  ASSERT_TRUE(result) << result.error().detail;
  EXPECT_EQ(result->audience, (std::vector<std::string>{"other", std::string(kAudience)}));
}

// --- Time ---

TEST_F(JwtVerifierTest, RejectsExpiredToken) {
  boost::json::object claims = valid_claims();
  claims["exp"] = kNow - 3600;
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "token expired"));
}

TEST_F(JwtVerifierTest, HonoursLeewayOnExpiry) {
  boost::json::object claims = valid_claims();
  claims["exp"] = kNow - 59;  // expired 59 s ago, within the 60 s leeway
  EXPECT_TRUE(verify(hs_token(claims)));
  claims["exp"] = kNow - 60;  // exactly at the end of the leeway: no longer valid
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "token expired"));
}

TEST_F(JwtVerifierTest, RejectsTokenNotYetValid) {
  boost::json::object claims = valid_claims();
  claims["nbf"] = kNow + 3600;
  EXPECT_TRUE(rejected_with(verify(es_token(claims)), "token not yet valid"));
}

TEST_F(JwtVerifierTest, HonoursLeewayOnNotBefore) {
  boost::json::object claims = valid_claims();
  claims["nbf"] = kNow + 60;
  const auto result = verify(es_token(claims));
  ASSERT_TRUE(result) << result.error().detail;
  EXPECT_EQ(result->not_before, kNow + 60);
  claims["nbf"] = kNow + 61;
  EXPECT_TRUE(rejected_with(verify(es_token(claims)), "token not yet valid"));
}

TEST(JwtVerifierPolicyTest, ZeroLeewayIsExact) {
  JwtPolicy policy = default_policy();
  policy.leeway = std::chrono::seconds(0);
  auto verifier = JwtVerifier::create(
      {JwtKey{.kid = "", .alg = JwtAlg::hs256, .secret = keys().hs_secret, .public_key_pem = {}}}, policy);
  ASSERT_TRUE(verifier);
  boost::json::object claims = valid_claims();
  claims["exp"] = kNow + 1;
  const std::string token = make_token({{"alg", "HS256"}}, claims, hs256_signer(keys().hs_secret));
  EXPECT_TRUE(verifier->verify(token, kNow));
  EXPECT_TRUE(rejected_with(verifier->verify(token, kNow + 1), "token expired"));
}

TEST_F(JwtVerifierTest, RoundsFractionalDatesTowardsTheNarrowerWindow) {
  boost::json::object claims = valid_claims();
  claims["exp"] = static_cast<double>(kNow) - 60 + 0.5;  // rounds down to kNow - 60: expired
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "token expired"));
  claims["exp"] = static_cast<double>(kNow) + 0.5;
  claims["nbf"] = static_cast<double>(kNow) + 60.5;  // rounds up to kNow + 61: not yet valid
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "token not yet valid"));
}

// --- Claims ---

TEST_F(JwtVerifierTest, RejectsWrongIssuer) {
  boost::json::object claims = valid_claims();
  claims["iss"] = "https://evil.example";
  EXPECT_TRUE(rejected_with(verify(rs_token(claims)), "issuer mismatch"));
  claims["iss"] = 42;
  EXPECT_TRUE(rejected_with(verify(rs_token(claims)), "issuer (iss) is not a string"));
  claims.erase("iss");
  EXPECT_TRUE(rejected_with(verify(rs_token(claims)), "issuer (iss) missing"));
}

TEST_F(JwtVerifierTest, RejectsWrongAudience) {
  boost::json::object claims = valid_claims();
  claims["aud"] = "someone-else";
  EXPECT_TRUE(rejected_with(verify(rs_token(claims)), "audience mismatch"));
  claims["aud"] = boost::json::array{"a", "b"};
  EXPECT_TRUE(rejected_with(verify(rs_token(claims)), "audience mismatch"));
  claims["aud"] = boost::json::array{"a", 7};
  EXPECT_TRUE(
      rejected_with(verify(rs_token(claims)), "audience (aud) is not a string or an array of strings"));
  claims.erase("aud");
  EXPECT_TRUE(rejected_with(verify(rs_token(claims)), "audience (aud) missing"));
}

TEST_F(JwtVerifierTest, RejectsMissingOrEmptySubject) {
  boost::json::object claims = valid_claims();
  claims.erase("sub");
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "subject (sub) missing"));
  claims["sub"] = "";
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "subject (sub) is empty"));
  claims["sub"] = 12;
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "subject (sub) is not a string"));
}

TEST_F(JwtVerifierTest, RejectsMissingOrNonNumericExp) {
  boost::json::object claims = valid_claims();
  claims.erase("exp");
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "expiry (exp) missing"));
  claims["exp"] = std::to_string(kNow + 600);
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "claim exp is not a NumericDate"));
  claims["exp"] = true;
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "claim exp is not a NumericDate"));
  claims["exp"] = 1e300;
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "claim exp is not a NumericDate"));
}

TEST_F(JwtVerifierTest, RejectsNonNumericNbfAndIat) {
  boost::json::object claims = valid_claims();
  claims["nbf"] = "yesterday";
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "claim nbf is not a NumericDate"));
  claims = valid_claims();
  claims["iat"] = nullptr;
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "claim iat is not a NumericDate"));
}

TEST_F(JwtVerifierTest, SurvivesExtremeDatesWithoutOverflow) {
  boost::json::object claims = valid_claims();
  claims["exp"] = std::numeric_limits<std::int64_t>::max();
  claims["nbf"] = std::numeric_limits<std::int64_t>::min();
  EXPECT_TRUE(verify(hs_token(claims)));
  claims["exp"] = std::numeric_limits<std::uint64_t>::max();
  EXPECT_TRUE(rejected_with(verify(hs_token(claims)), "claim exp is not a NumericDate"));
}

// --- Tampering ---

TEST_F(JwtVerifierTest, RejectsTamperedPayload) {
  boost::json::object forged = valid_claims();
  forged["sub"] = "mallory";
  const std::string forged_payload = encode_json(forged);
  for (const std::string& token :
       {hs_token(valid_claims()), rs_token(valid_claims()), es_token(valid_claims())}) {
    const std::size_t first = token.find('.');
    const std::size_t second = token.find('.', first + 1);
    const std::string tampered = token.substr(0, first + 1) + forged_payload + token.substr(second);
    EXPECT_TRUE(rejected_with(verify(tampered), "signature does not verify")) << token.substr(0, first);
  }
}

TEST_F(JwtVerifierTest, RejectsTamperedSignature) {
  for (const std::string& token :
       {hs_token(valid_claims()), rs_token(valid_claims()), es_token(valid_claims())}) {
    const std::size_t last = token.rfind('.');
    std::string signature = *base64url_decode(token.substr(last + 1));
    signature[signature.size() / 2] = static_cast<char>(signature[signature.size() / 2] ^ 0x01);
    const std::string tampered = token.substr(0, last + 1) + base64url_encode(signature);
    EXPECT_TRUE(rejected_with(verify(tampered), "signature does not verify"))
        << token.substr(0, token.find('.'));
  }
}

TEST_F(JwtVerifierTest, RejectsSignatureByAnotherKey) {
  const PkeyPtr other_ec = generate_ec("P-256");
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "ES256"}, {"kid", "ec"}}, valid_claims(), es256_signer(other_ec.get()))),
      "signature does not verify"));
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "HS256"}}, valid_claims(), hs256_signer(std::string(32, 'z')))),
      "signature does not verify"));
}

TEST_F(JwtVerifierTest, RejectsDerEncodedEs256Signature) {
  const std::string token =
      make_token({{"alg", "ES256"}, {"kid", "ec"}}, valid_claims(), es256_der_signer(keys().ec.get()));
  EXPECT_TRUE(rejected_with(verify(token), "ES256 signature is not 64 bytes"));
}

TEST_F(JwtVerifierTest, RejectsTruncatedSignature) {
  const auto truncate_signature = [](const std::string& token) {
    const std::size_t last = token.rfind('.');
    const std::string signature = *base64url_decode(token.substr(last + 1));
    return token.substr(0, last + 1) + base64url_encode(signature.substr(0, signature.size() - 1));
  };
  EXPECT_TRUE(
      rejected_with(verify(truncate_signature(rs_token(valid_claims()))), "signature does not verify"));
  EXPECT_TRUE(
      rejected_with(verify(truncate_signature(hs_token(valid_claims()))), "HS256 signature is not 32 bytes"));
  EXPECT_TRUE(
      rejected_with(verify(truncate_signature(es_token(valid_claims()))), "ES256 signature is not 64 bytes"));
}

// --- Algorithm attacks ---

TEST_F(JwtVerifierTest, RejectsAlgNoneWithoutSignature) {
  const std::string token = make_token({{"alg", "none"}}, valid_claims(), no_signature());
  ASSERT_EQ(token.back(), '.');
  EXPECT_TRUE(rejected_with(verify(token), "algorithm none is not accepted"));
}

TEST_F(JwtVerifierTest, RejectsAlgNoneWithSignature) {
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "none"}, {"kid", "hs"}}, valid_claims(), hs256_signer(keys().hs_secret))),
      "algorithm none is not accepted"));
}

TEST_F(JwtVerifierTest, RejectsAlgNoneInAnyCase) {
  for (const char* alg : {"nOnE", "NONE", "None"}) {
    EXPECT_TRUE(rejected_with(verify(make_token({{"alg", alg}}, valid_claims(), no_signature())),
                              "algorithm none is not accepted"))
        << alg;
  }
}

TEST_F(JwtVerifierTest, RejectsUnsupportedOrMissingAlg) {
  for (const char* alg : {"HS512", "hs256", "PS256", "EdDSA", ""}) {
    EXPECT_TRUE(
        rejected_with(verify(make_token({{"alg", alg}}, valid_claims(), hs256_signer(keys().hs_secret))),
                      "algorithm is not supported"))
        << alg;
  }
  EXPECT_TRUE(
      rejected_with(verify(make_token({{"typ", "JWT"}}, valid_claims(), hs256_signer(keys().hs_secret))),
                    "header has no alg"));
  EXPECT_TRUE(
      rejected_with(verify(make_token({{"alg", 256}}, valid_claims(), hs256_signer(keys().hs_secret))),
                    "header alg is not a string"));
}

// The classic key confusion: the attacker signs with HMAC, using the server's RSA public key PEM as the
// secret.
TEST(JwtVerifierKeysTest, RejectsHs256TokenSignedWithRsaPublicKeyPem) {
  const Signer confused = hs256_signer(keys().rsa_pem);
  auto rsa_only = JwtVerifier::create(
      {JwtKey{.kid = "rsa", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = keys().rsa_pem}},
      default_policy());
  ASSERT_TRUE(rsa_only) << rsa_only.error().detail;
  EXPECT_TRUE(rejected_with(rsa_only->verify(make_token({{"alg", "HS256"}}, valid_claims(), confused), kNow),
                            "no key for algorithm HS256"));
  EXPECT_TRUE(rejected_with(
      rsa_only->verify(make_token({{"alg", "HS256"}, {"kid", "rsa"}}, valid_claims(), confused), kNow),
      "algorithm does not match the key"));

  // With an HS256 key configured as well, the PEM is still never used as an HMAC secret.
  auto mixed = JwtVerifier::create(
      {JwtKey{.kid = "rsa", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = keys().rsa_pem},
       JwtKey{.kid = "hs", .alg = JwtAlg::hs256, .secret = keys().hs_secret, .public_key_pem = {}}},
      default_policy());
  ASSERT_TRUE(mixed) << mixed.error().detail;
  EXPECT_TRUE(rejected_with(mixed->verify(make_token({{"alg", "HS256"}}, valid_claims(), confused), kNow),
                            "signature does not verify"));
}

TEST_F(JwtVerifierTest, RejectsRs256HeaderWithKidOfHsKey) {
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "RS256"}, {"kid", "hs"}}, valid_claims(), rs256_signer(keys().rsa.get()))),
      "algorithm does not match the key"));
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "RS256"}, {"kid", "hs"}}, valid_claims(), hs256_signer(keys().hs_secret))),
      "algorithm does not match the key"));
}

TEST_F(JwtVerifierTest, RejectsUnknownKid) {
  EXPECT_TRUE(rejected_with(verify(make_token({{"alg", "HS256"}, {"kid", "retired"}}, valid_claims(),
                                              hs256_signer(keys().hs_secret))),
                            "unknown key id"));
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "HS256"}, {"kid", ""}}, valid_claims(), hs256_signer(keys().hs_secret))),
      "unknown key id"));
  EXPECT_TRUE(rejected_with(
      verify(make_token({{"alg", "HS256"}, {"kid", 1}}, valid_claims(), hs256_signer(keys().hs_secret))),
      "header kid is not a string"));
}

// --- Header rules ---

TEST_F(JwtVerifierTest, RejectsCritHeader) {
  EXPECT_TRUE(
      rejected_with(verify(make_token({{"alg", "HS256"}, {"crit", boost::json::array{"exp"}}, {"exp", 1}},
                                      valid_claims(), hs256_signer(keys().hs_secret))),
                    "crit"));
}

TEST_F(JwtVerifierTest, RejectsTypOtherThanJwt) {
  EXPECT_TRUE(rejected_with(verify(make_token({{"alg", "HS256"}, {"typ", "at+jwt"}}, valid_claims(),
                                              hs256_signer(keys().hs_secret))),
                            "token type (typ) is not JWT"));
  EXPECT_TRUE(
      verify(make_token({{"alg", "HS256"}, {"typ", "jwt"}}, valid_claims(), hs256_signer(keys().hs_secret))));
}

// --- Encoding and structure ---

TEST_F(JwtVerifierTest, RejectsBadBase64) {
  const std::string token = hs_token(valid_claims());
  const std::size_t first = token.find('.');
  const std::size_t last = token.rfind('.');
  const std::string header = token.substr(0, first);
  const std::string payload = token.substr(first + 1, last - first - 1);
  const Signer sign = hs256_signer(keys().hs_secret);

  EXPECT_TRUE(rejected_with(verify(raw_token(header + "=", payload, sign)), "header is not valid base64url"));
  EXPECT_TRUE(rejected_with(verify(raw_token("+" + header.substr(1), payload, sign)),
                            "header is not valid base64url"));
  EXPECT_TRUE(rejected_with(verify(raw_token(header + " ", payload, sign)), "header is not valid base64url"));
  // The signature covers the encoded text, so a bad payload encoding is caught after the signature verifies.
  EXPECT_TRUE(
      rejected_with(verify(raw_token(header, payload + "*", sign)), "payload is not valid base64url"));
  EXPECT_TRUE(rejected_with(verify(raw_token(header, "/" + payload.substr(1), sign)),
                            "payload is not valid base64url"));
  EXPECT_TRUE(rejected_with(verify(token + "="), "signature is not valid base64url"));
  EXPECT_TRUE(rejected_with(verify(token.substr(0, last + 1) + "a+b/"), "signature is not valid base64url"));
}

TEST_F(JwtVerifierTest, RejectsHeaderOrPayloadThatIsNotAJsonObject) {
  const Signer sign = hs256_signer(keys().hs_secret);
  const std::string header = encode_json({{"alg", "HS256"}});
  const std::string payload = encode_json(valid_claims());
  EXPECT_TRUE(rejected_with(verify(raw_token(base64url_encode("[\"HS256\"]"), payload, sign)),
                            "header is not a JSON object"));
  EXPECT_TRUE(rejected_with(verify(raw_token(base64url_encode("{\"alg\":"), payload, sign)),
                            "header is not valid JSON"));
  EXPECT_TRUE(rejected_with(verify(raw_token("", payload, sign)), "header is not valid JSON"));
  EXPECT_TRUE(rejected_with(verify(raw_token(header, base64url_encode("\"alice\""), sign)),
                            "payload is not a JSON object"));
  EXPECT_TRUE(rejected_with(verify(raw_token(header, base64url_encode("{\"sub\":\"alice\",}"), sign)),
                            "payload is not valid JSON"));
}

TEST_F(JwtVerifierTest, RejectsPayloadNestedDeeperThan32) {
  const Signer sign = hs256_signer(keys().hs_secret);
  const std::string header = encode_json({{"alg", "HS256"}});
  const auto with_depth = [](int depth) {
    // An object holding `depth - 1` nested arrays: depth 1 is the payload object itself.
    std::string json = R"({"sub":"alice","iss":"https://issuer.example","aud":"twinbridge","exp":)" +
                       std::to_string(kNow + 600) + R"(,"deep":)";
    json += std::string(static_cast<std::size_t>(depth - 1), '[') +
            std::string(static_cast<std::size_t>(depth - 1), ']');
    return json + "}";
  };
  EXPECT_TRUE(verify(raw_token(header, base64url_encode(with_depth(32)), sign)));
  EXPECT_TRUE(rejected_with(verify(raw_token(header, base64url_encode(with_depth(33)), sign)),
                            "payload is not valid JSON"));
}

TEST_F(JwtVerifierTest, RejectsTokensWithoutExactlyThreeParts) {
  const std::string token = hs_token(valid_claims());
  const std::size_t last = token.rfind('.');
  for (const std::string& bad : {std::string("abc"), token.substr(0, last), token + ".", token + ".e30",
                                 token + ".e30.e30", std::string("...")}) {
    EXPECT_TRUE(rejected_with(verify(bad), "three dot-separated parts")) << bad;
  }
  EXPECT_TRUE(rejected_with(verify(""), "token is empty"));
}

TEST(JwtVerifierPolicyTest, RejectsOversizedTokenBeforeDecoding) {
  JwtPolicy policy = default_policy();
  policy.max_token_bytes = 512;
  auto verifier = JwtVerifier::create(
      {JwtKey{.kid = "", .alg = JwtAlg::hs256, .secret = keys().hs_secret, .public_key_pem = {}}}, policy);
  ASSERT_TRUE(verifier);
  boost::json::object claims = valid_claims();
  claims["padding"] = std::string(600, 'p');
  const std::string big = make_token({{"alg", "HS256"}}, claims, hs256_signer(keys().hs_secret));
  EXPECT_TRUE(rejected_with(verifier->verify(big, kNow), "token is longer than 512 bytes"));
  // Garbage of the same size gets the same answer: nothing was decoded.
  EXPECT_TRUE(rejected_with(verifier->verify(std::string(513, '!'), kNow), "token is longer than 512 bytes"));
  EXPECT_TRUE(
      verifier->verify(make_token({{"alg", "HS256"}}, valid_claims(), hs256_signer(keys().hs_secret)), kNow));
}

// --- Keys and policy at create() ---

TEST(JwtVerifierCreateTest, RejectsShortHsSecret) {
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create(
          {JwtKey{
              .kid = "short", .alg = JwtAlg::hs256, .secret = std::string(31, 's'), .public_key_pem = {}}},
          default_policy()),
      "key #0 (kid 'short'): HS256 secret has 31 bytes, at least 32"));
  EXPECT_TRUE(JwtVerifier::create(
      {JwtKey{.kid = "ok", .alg = JwtAlg::hs256, .secret = std::string(32, 's'), .public_key_pem = {}}},
      default_policy()));
}

TEST(JwtVerifierCreateTest, RejectsBadPem) {
  for (const std::string& pem :
       {std::string("not a pem"), keys().rsa_pem.substr(0, keys().rsa_pem.size() / 2),
        std::string("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")}) {
    EXPECT_TRUE(create_fails_with(
        JwtVerifier::create(
            {JwtKey{.kid = "", .alg = JwtAlg::hs256, .secret = keys().hs_secret, .public_key_pem = {}},
             JwtKey{.kid = "", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = pem}},
            default_policy()),
        "key #1: public_key_pem is not a PEM public key"));
  }
}

TEST(JwtVerifierCreateTest, RejectsRsa1024Key) {
  const PkeyPtr small = generate_rsa(1024);
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create(
          {JwtKey{
              .kid = "weak", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = public_pem(small.get())}},
          default_policy()),
      "RSA key has 1024 bits, at least 2048"));
}

TEST(JwtVerifierCreateTest, RejectsKeyOfTheWrongTypeOrCurve) {
  const PkeyPtr p384 = generate_ec("P-384");
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create(
          {JwtKey{.kid = "ec", .alg = JwtAlg::es256, .secret = {}, .public_key_pem = public_pem(p384.get())}},
          default_policy()),
      "ES256 needs a key on curve P-256"));
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create(
          {JwtKey{.kid = "ec", .alg = JwtAlg::es256, .secret = {}, .public_key_pem = keys().rsa_pem}},
          default_policy()),
      "ES256 needs an EC public key"));
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create(
          {JwtKey{.kid = "rsa", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = keys().ec_pem}},
          default_policy()),
      "RS256 needs an RSA public key"));
}

TEST(JwtVerifierCreateTest, RejectsKeyMaterialOfAnotherAlgorithm) {
  EXPECT_TRUE(create_fails_with(JwtVerifier::create({JwtKey{.kid = "hs",
                                                            .alg = JwtAlg::hs256,
                                                            .secret = keys().hs_secret,
                                                            .public_key_pem = keys().rsa_pem}},
                                                    default_policy()),
                                "an HS256 key takes a secret, not public_key_pem"));
  EXPECT_TRUE(create_fails_with(JwtVerifier::create({JwtKey{.kid = "rsa",
                                                            .alg = JwtAlg::rs256,
                                                            .secret = keys().hs_secret,
                                                            .public_key_pem = keys().rsa_pem}},
                                                    default_policy()),
                                "an RS256 key takes public_key_pem, not a secret"));
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create({JwtKey{.kid = "rsa", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = {}}},
                          default_policy()),
      "RS256 needs public_key_pem"));
}

TEST(JwtVerifierCreateTest, RejectsDuplicateKid) {
  EXPECT_TRUE(create_fails_with(
      JwtVerifier::create(
          {JwtKey{.kid = "k", .alg = JwtAlg::hs256, .secret = keys().hs_secret, .public_key_pem = {}},
           JwtKey{.kid = "k", .alg = JwtAlg::rs256, .secret = {}, .public_key_pem = keys().rsa_pem}},
          default_policy()),
      "key #1 (kid 'k'): duplicate kid"));
}

TEST(JwtVerifierCreateTest, RejectsBadPolicy) {
  JwtPolicy negative = default_policy();
  negative.leeway = std::chrono::seconds(-1);
  EXPECT_TRUE(create_fails_with(JwtVerifier::create({}, negative), "leeway must not be negative"));
  JwtPolicy zero = default_policy();
  zero.max_token_bytes = 0;
  EXPECT_TRUE(create_fails_with(JwtVerifier::create({}, zero), "max_token_bytes must be positive"));
}

// --- Lifetime and concurrency ---

TEST(JwtVerifierKeysTest, EmptyVerifierRejectsEveryToken) {
  const std::string token = make_token({{"alg", "HS256"}}, valid_claims(), hs256_signer(keys().hs_secret));
  const JwtVerifier default_constructed;
  EXPECT_TRUE(default_constructed.empty());
  EXPECT_TRUE(rejected_with(default_constructed.verify(token, kNow), "no token verification keys"));
  auto created = JwtVerifier::create({}, default_policy());
  ASSERT_TRUE(created);
  EXPECT_TRUE(created->empty());
  EXPECT_TRUE(rejected_with(created->verify(token, kNow), "no token verification keys"));
}

TEST_F(JwtVerifierTest, CopiesOutliveTheOriginalAndVerifyConcurrently) {
  std::vector<std::string> tokens;
  for (int i = 0; i < 4; ++i) {
    boost::json::object claims = valid_claims();
    claims["sub"] = "user-" + std::to_string(i);
    tokens.push_back(i % 3 == 0 ? hs_token(claims) : i % 3 == 1 ? rs_token(claims) : es_token(claims));
  }
  std::optional<JwtVerifier> copy;
  {
    const JwtVerifier original = verifier_;
    copy = original;
    verifier_ = JwtVerifier();
  }
  EXPECT_TRUE(verifier_.empty());
  ASSERT_FALSE(copy->empty());

  std::vector<int> failures(tokens.size(), 0);
  {
    std::vector<std::jthread> threads;
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      threads.emplace_back([&, t] {
        for (int round = 0; round < 25; ++round) {
          for (std::size_t i = 0; i < tokens.size(); ++i) {
            const auto result = copy->verify(tokens[(i + t) % tokens.size()], kNow);
            if (!result || result->subject != "user-" + std::to_string((i + t) % tokens.size()))
              ++failures[t];
          }
        }
      });
    }
  }
  for (std::size_t t = 0; t < failures.size(); ++t) EXPECT_EQ(failures[t], 0) << "thread " << t;
}

// --- base64url ---

TEST(Base64urlTest, EncodesWithoutPaddingUsingTheUrlAlphabet) {
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_encode("f"), "Zg");
  EXPECT_EQ(base64url_encode("fo"), "Zm8");
  EXPECT_EQ(base64url_encode("foo"), "Zm9v");
  EXPECT_EQ(base64url_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
}

TEST(Base64urlTest, DecodesWhatItEncodes) {
  std::string bytes;
  for (int i = 0; i < 300; ++i) {
    bytes.push_back(static_cast<char>(i * 37 + 11));
    const std::optional<std::string> decoded = base64url_decode(base64url_encode(bytes));
    ASSERT_TRUE(decoded) << i;
    ASSERT_EQ(*decoded, bytes) << i;
  }
}

TEST(Base64urlTest, RejectsNonCanonicalInput) {
  EXPECT_EQ(base64url_decode(""), std::optional<std::string>(""));
  EXPECT_FALSE(base64url_decode("Zg=="));    // padding
  EXPECT_FALSE(base64url_decode("Zm9v+A"));  // standard alphabet
  EXPECT_FALSE(base64url_decode("Zm9v/A"));
  EXPECT_FALSE(base64url_decode("Zm9 v"));  // whitespace
  EXPECT_FALSE(base64url_decode("Zm9vY"));  // 4n+1 characters
  EXPECT_FALSE(base64url_decode("Zh"));     // "f" with non-zero trailing bits
  EXPECT_FALSE(base64url_decode("Zm9"));    // "fo" with non-zero trailing bits
  EXPECT_FALSE(base64url_decode(std::string_view("Zm\0v", 4)));
}

}  // namespace
}  // namespace twinbridge::core
