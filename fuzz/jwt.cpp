// JWT bearer tokens as the authenticator verifies them (core::JwtVerifier with one HS256, one RS256 and one
// ES256 key, an issuer, the audience "twinbridge" and 60 s of leeway, at a fixed time). The first input byte
// chooses how the rest is used:
// - even: the rest is a compact token, verified as it comes;
// - odd: the rest is a JOSE header and a claims set separated by byte 0x1E; the target encodes both and signs
//   them with the HS256 key, so that the claim checks behind the signature are reached too.
//
// Checks: an accepted token has a subject, is within its validity window, names the audience and issuer, and
// was verified by a configured key; changing one byte of its signature makes it rejected; every rejection is
// unauthenticated.

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "core/base64url.hpp"
#include "core/jwt.hpp"
#include "fuzz.hpp"

namespace {

using namespace twinbridge;

constexpr std::int64_t kNow = 1'800'000'000;
constexpr std::string_view kIssuer = "https://issuer.example";
constexpr std::string_view kAudience = "twinbridge";
const std::string kSecret = "fuzzing-secret-of-at-least-thirty-two-bytes";

constexpr std::string_view kRsaPublicKey = R"(-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4WlbjFzJFNVfvqOVPqrj
/9PGq2/nqREmv4ZEGwoViVNIsgoXIbh1oSKdxf33xTzoN9e8RZhxp9a1Jl01GxZ2
VUVJAi5VFs/CZxdlsetMIe+arPey+No6f94uoEYZii8SWjeP88eCvod+t16yCzMh
20pTKI+ujjscq+KlqS+YMON82TyBNmLRIY6OsIeZNBaRYsbZuK5fOtbMOHyjp0iM
JCCKIcQHBLUFXLwv2NFTDZg9+Nq8I87v+qfVQjb4TIzSH3uCgIcGZWM2eonDUhes
rFm/xuHz1Rl4P1/4C1v1iyD5KMvGaU2Lf2kkYqmmiwX/U7uVh+Y/Jg+1PnkQKhaI
+wIDAQAB
-----END PUBLIC KEY-----
)";

constexpr std::string_view kEcPublicKey = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6UM3clvZwUQ83gzz4oPNUaed/bfd
d1XDrfU+afrihq/L7Q4M69y9lS/llen4MVpDB6MY/E/KL1nG8caqenwhhQ==
-----END PUBLIC KEY-----
)";

const core::JwtVerifier& verifier() {
  static const core::JwtVerifier v = [] {
    std::vector<core::JwtKey> keys;
    keys.push_back({"hs", core::JwtAlg::hs256, kSecret, ""});
    keys.push_back({"rs", core::JwtAlg::rs256, "", std::string(kRsaPublicKey)});
    keys.push_back({"es", core::JwtAlg::es256, "", std::string(kEcPublicKey)});
    core::JwtPolicy policy;
    policy.issuer = kIssuer;
    policy.audience = kAudience;
    auto created = core::JwtVerifier::create(std::move(keys), policy);
    if (!created) fuzz::check_failed("the fuzzing keys are accepted", __FILE__, __LINE__);
    return std::move(*created);
  }();
  return v;
}

std::string hs256_signed(std::string_view header, std::string_view claims) {
  std::string token = core::base64url_encode(header) + "." + core::base64url_encode(claims);
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(token.data()), token.size(), mac.data(), &mac_len);
  token += "." + core::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac.data()), mac_len));
  return token;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto rest = fuzz::as_text(data + 1, size - 1);
  std::string token;
  if (data[0] % 2 == 0) {
    token = std::string(rest);
  } else {
    const auto separator = rest.find('\x1e');
    if (separator == std::string_view::npos) return 0;
    token = hs256_signed(rest.substr(0, separator), rest.substr(separator + 1));
  }
  const auto claims = verifier().verify(token, kNow);
  if (!claims) {
    TB_FUZZ_CHECK(claims.error().code == core::Errc::unauthenticated);
    return 0;
  }
  TB_FUZZ_CHECK(!claims->subject.empty());
  TB_FUZZ_CHECK(claims->issuer == kIssuer);
  TB_FUZZ_CHECK(std::ranges::find(claims->audience, kAudience) != claims->audience.end());
  TB_FUZZ_CHECK(kNow - 60 < claims->expires_at);
  TB_FUZZ_CHECK(claims->not_before <= kNow + 60);
  TB_FUZZ_CHECK(claims->key_id == "hs" || claims->key_id == "rs" || claims->key_id == "es");

  const auto signature = token.rfind('.');
  TB_FUZZ_CHECK(signature != std::string::npos && signature + 1 < token.size());
  std::string forged = token;
  forged[signature + 1] = forged[signature + 1] == 'A' ? 'B' : 'A';
  TB_FUZZ_CHECK(!verifier().verify(forged, kNow).has_value());
  return 0;
}
