#include "core/jwt.hpp"
#include "core/openssl_ptr.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <boost/json/parse.hpp>
#include <boost/json/parse_options.hpp>
#include <boost/json/value.hpp>

#include "core/base64url.hpp"

namespace twinbridge::core {

namespace {

using openssl::BignumPtr;
using openssl::BioPtr;
using openssl::EcdsaSigPtr;
using openssl::MdCtxPtr;
using openssl::PkeyPtr;

constexpr std::size_t kMinHmacSecretBytes = 32;
constexpr int kMinRsaBits = 2048;
constexpr std::size_t kHs256SignatureBytes = 32;
constexpr std::size_t kEs256CoordinateBytes = 32;
constexpr std::size_t kEs256SignatureBytes = 2 * kEs256CoordinateBytes;
constexpr std::size_t kMaxJsonDepth = 32;
constexpr std::size_t kMaxPemBytes = 64 * 1024;
constexpr std::string_view kP256GroupName = "prime256v1";

// OpenSSL reports failures on a thread-local queue; whatever a check leaves there is dropped when it returns,
// so a rejected key or token never leaks stale errors into unrelated OpenSSL users on the same thread.
class OpensslErrorScope {
 public:
  OpensslErrorScope() = default;
  OpensslErrorScope(const OpensslErrorScope&) = delete;
  OpensslErrorScope& operator=(const OpensslErrorScope&) = delete;
  ~OpensslErrorScope() { ERR_clear_error(); }
};

std::unexpected<Error> reject(std::string detail) {
  return fail(Errc::unauthenticated, std::move(detail));
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return lower(x) == lower(y);
  });
}

const unsigned char* bytes_of(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// Public keys are never encrypted; refusing a passphrase keeps OpenSSL from prompting on the terminal.
int refuse_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*user*/) {
  return -1;
}

std::string describe_key(const JwtKey& key, std::size_t index) {
  std::string who = "key #" + std::to_string(index);
  if (!key.kid.empty()) who += " (kid '" + key.kid + "')";
  return who;
}

Result<PkeyPtr> load_public_key(const JwtKey& key, const std::string& who) {
  OpensslErrorScope errors;
  const std::string_view alg = to_string(key.alg);
  if (key.public_key_pem.empty()) {
    return fail(Errc::validation_failed, who + ": " + std::string(alg) + " needs public_key_pem");
  }
  if (key.public_key_pem.size() > kMaxPemBytes) {
    return fail(Errc::validation_failed, who + ": public_key_pem is too long");
  }
  BioPtr bio(BIO_new_mem_buf(key.public_key_pem.data(), static_cast<int>(key.public_key_pem.size())));
  if (!bio) return fail(Errc::internal, who + ": cannot allocate a BIO");
  PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, refuse_passphrase, nullptr));
  if (!pkey) {
    return fail(Errc::validation_failed,
                who + ": public_key_pem is not a PEM public key (\"BEGIN PUBLIC KEY\", SPKI)");
  }
  switch (key.alg) {
    case JwtAlg::rs256: {
      if (EVP_PKEY_is_a(pkey.get(), "RSA") != 1) {
        return fail(Errc::validation_failed, who + ": RS256 needs an RSA public key");
      }
      const int bits = EVP_PKEY_get_bits(pkey.get());
      if (bits < kMinRsaBits) {
        return fail(Errc::validation_failed, who + ": RSA key has " + std::to_string(bits) +
                                                 " bits, at least " + std::to_string(kMinRsaBits) +
                                                 " are required");
      }
      return pkey;
    }
    case JwtAlg::es256: {
      if (EVP_PKEY_is_a(pkey.get(), "EC") != 1) {
        return fail(Errc::validation_failed, who + ": ES256 needs an EC public key");
      }
      std::array<char, 64> group{};
      std::size_t group_len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey.get(), OSSL_PKEY_PARAM_GROUP_NAME, group.data(), group.size(),
                                         &group_len) != 1 ||
          std::string_view(group.data(), group_len) != kP256GroupName) {
        return fail(Errc::validation_failed, who + ": ES256 needs a key on curve P-256");
      }
      return pkey;
    }
    case JwtAlg::hs256:
      break;
  }
  return fail(Errc::validation_failed, who + ": " + std::string(alg) + " does not take a public key");
}

// A JSON object from one base64url part of the token; `what` names the part in the error detail.
Result<boost::json::object> decode_json_object(std::string_view encoded, const std::string& what) {
  const std::optional<std::string> text = base64url_decode(encoded);
  if (!text) return reject(what + " is not valid base64url");
  boost::json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  boost::json::error_code ec;
  boost::json::value value = boost::json::parse(*text, ec, {}, options);
  if (ec) return reject(what + " is not valid JSON");
  if (!value.is_object()) return reject(what + " is not a JSON object");
  return std::move(value.as_object());
}

enum class Rounding { down, up };

// A NumericDate (RFC 7519 §2): a JSON number of seconds, possibly fractional, that fits in int64.
std::optional<std::int64_t> numeric_date(const boost::json::value& v, Rounding rounding) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return std::nullopt;
    return static_cast<std::int64_t>(v.get_uint64());
  }
  if (v.is_double()) {
    const double d = rounding == Rounding::down ? std::floor(v.get_double()) : std::ceil(v.get_double());
    // 2^63 is exactly representable; every finite double below it and at or above -2^63 converts without UB.
    constexpr double kLimit = 9223372036854775808.0;
    if (!std::isfinite(d) || d < -kLimit || d >= kLimit) return std::nullopt;
    return static_cast<std::int64_t>(d);
  }
  return std::nullopt;
}

std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  std::int64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return b > 0 ? std::numeric_limits<std::int64_t>::max() : std::numeric_limits<std::int64_t>::min();
  }
  return sum;
}

// Reads an optional NumericDate claim into `out`; absent leaves it unchanged.
Result<void> read_date(const boost::json::object& payload, std::string_view name, Rounding rounding,
                       std::int64_t& out) {
  const boost::json::value* v = payload.if_contains(name);
  if (v == nullptr) return {};
  const std::optional<std::int64_t> date = numeric_date(*v, rounding);
  if (!date) return reject("claim " + std::string(name) + " is not a NumericDate");
  out = *date;
  return {};
}

Result<JwtClaims> check_claims(boost::json::object payload, const JwtPolicy& policy, std::int64_t now) {
  JwtClaims claims;

  const boost::json::value* sub = payload.if_contains("sub");
  if (sub == nullptr) return reject("subject (sub) missing");
  if (!sub->is_string()) return reject("subject (sub) is not a string");
  if (sub->get_string().empty()) return reject("subject (sub) is empty");
  claims.subject = sub->get_string();

  if (const boost::json::value* iss = payload.if_contains("iss")) {
    if (!iss->is_string()) return reject("issuer (iss) is not a string");
    claims.issuer = iss->get_string();
  }
  if (!policy.issuer.empty() && claims.issuer != policy.issuer) {
    return reject(payload.contains("iss") ? "issuer mismatch" : "issuer (iss) missing");
  }

  if (const boost::json::value* aud = payload.if_contains("aud")) {
    if (aud->is_string()) {
      claims.audience.emplace_back(aud->get_string());
    } else if (aud->is_array()) {
      for (const boost::json::value& entry : aud->get_array()) {
        if (!entry.is_string()) return reject("audience (aud) is not a string or an array of strings");
        claims.audience.emplace_back(entry.get_string());
      }
    } else {
      return reject("audience (aud) is not a string or an array of strings");
    }
  }
  if (!policy.audience.empty() &&
      std::ranges::find(claims.audience, policy.audience) == claims.audience.end()) {
    return reject(payload.contains("aud") ? "audience mismatch" : "audience (aud) missing");
  }

  if (!payload.contains("exp")) return reject("expiry (exp) missing");
  // Rounding exp down and nbf up never widens the validity window of a fractional date.
  if (auto r = read_date(payload, "exp", Rounding::down, claims.expires_at); !r)
    return std::unexpected(r.error());
  if (auto r = read_date(payload, "nbf", Rounding::up, claims.not_before); !r)
    return std::unexpected(r.error());
  if (auto r = read_date(payload, "iat", Rounding::down, claims.issued_at); !r)
    return std::unexpected(r.error());

  const std::int64_t leeway = policy.leeway.count();
  if (now >= saturating_add(claims.expires_at, leeway)) return reject("token expired");
  if (payload.contains("nbf") && saturating_add(now, leeway) < claims.not_before) {
    return reject("token not yet valid");
  }

  claims.all = std::move(payload);
  return claims;
}

bool digest_verify_sha256(EVP_PKEY* key, std::string_view signing_input, const unsigned char* signature,
                          std::size_t signature_len) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  if (EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) != 1)
    return false;
  return EVP_DigestVerify(ctx.get(), signature, signature_len, bytes_of(signing_input),
                          signing_input.size()) == 1;
}

// JWS carries ECDSA signatures as the fixed-width big-endian R || S (RFC 7518 §3.4); OpenSSL verifies DER.
std::optional<std::vector<unsigned char>> es256_signature_to_der(std::string_view raw) {
  BignumPtr r(BN_bin2bn(bytes_of(raw), static_cast<int>(kEs256CoordinateBytes), nullptr));
  BignumPtr s(
      BN_bin2bn(bytes_of(raw) + kEs256CoordinateBytes, static_cast<int>(kEs256CoordinateBytes), nullptr));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  if (!r || !s || !sig) return std::nullopt;
  if (ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) return std::nullopt;
  // The signature owns r and s from here on.
  static_cast<void>(r.release());
  static_cast<void>(s.release());
  const int len = i2d_ECDSA_SIG(sig.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::vector<unsigned char> der(static_cast<std::size_t>(len));
  unsigned char* out = der.data();
  if (i2d_ECDSA_SIG(sig.get(), &out) != len) return std::nullopt;
  return der;
}

}  // namespace

struct JwtVerifier::KeySet {
  struct Key {
    std::string kid;
    JwtAlg alg = JwtAlg::hs256;
    std::string secret;  // HS256 only
    PkeyPtr public_key;  // RS256 and ES256 only; never modified after create()
  };

  KeySet() = default;
  KeySet(const KeySet&) = delete;
  KeySet& operator=(const KeySet&) = delete;
  ~KeySet() {
    for (Key& key : keys) OPENSSL_cleanse(key.secret.data(), key.secret.size());
  }

  // Whether `signature` over `signing_input` verifies with `key`. Touches no shared mutable state.
  static bool verifies(const Key& key, std::string_view signing_input, std::string_view signature);

  std::vector<Key> keys;
};

bool JwtVerifier::KeySet::verifies(const Key& key, std::string_view signing_input,
                                   std::string_view signature) {
  OpensslErrorScope errors;
  switch (key.alg) {
    case JwtAlg::hs256: {
      if (signature.size() != kHs256SignatureBytes) return false;
      std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
      unsigned int mac_len = 0;
      if (HMAC(EVP_sha256(), key.secret.data(), static_cast<int>(key.secret.size()), bytes_of(signing_input),
               signing_input.size(), mac.data(), &mac_len) == nullptr ||
          mac_len != kHs256SignatureBytes) {
        return false;
      }
      return CRYPTO_memcmp(mac.data(), signature.data(), kHs256SignatureBytes) == 0;
    }
    case JwtAlg::rs256: {
      if (signature.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key.public_key.get()))) return false;
      return digest_verify_sha256(key.public_key.get(), signing_input, bytes_of(signature), signature.size());
    }
    case JwtAlg::es256: {
      if (signature.size() != kEs256SignatureBytes) return false;
      const std::optional<std::vector<unsigned char>> der = es256_signature_to_der(signature);
      if (!der) return false;
      return digest_verify_sha256(key.public_key.get(), signing_input, der->data(), der->size());
    }
  }
  return false;
}

std::optional<JwtAlg> parse_jwt_alg(std::string_view name) {
  if (name == "HS256") return JwtAlg::hs256;
  if (name == "RS256") return JwtAlg::rs256;
  if (name == "ES256") return JwtAlg::es256;
  return std::nullopt;
}

std::string_view to_string(JwtAlg alg) {
  switch (alg) {
    case JwtAlg::hs256:
      return "HS256";
    case JwtAlg::rs256:
      return "RS256";
    case JwtAlg::es256:
      return "ES256";
  }
  return "unknown";
}

JwtVerifier::JwtVerifier(std::shared_ptr<const KeySet> keys, JwtPolicy policy)
    : keys_(std::move(keys)), policy_(std::move(policy)) {}

bool JwtVerifier::empty() const {
  return !keys_ || keys_->keys.empty();
}

Result<JwtVerifier> JwtVerifier::create(std::vector<JwtKey> keys, JwtPolicy policy) {
  if (policy.leeway.count() < 0) return fail(Errc::validation_failed, "JWT leeway must not be negative");
  if (policy.max_token_bytes == 0)
    return fail(Errc::validation_failed, "JWT max_token_bytes must be positive");

  auto set = std::make_shared<KeySet>();
  set->keys.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    JwtKey& key = keys[i];
    const std::string who = describe_key(key, i);
    if (!key.kid.empty() &&
        std::ranges::any_of(set->keys, [&](const KeySet::Key& k) { return k.kid == key.kid; })) {
      return fail(Errc::validation_failed, who + ": duplicate kid");
    }
    KeySet::Key parsed{.kid = key.kid, .alg = key.alg, .secret = {}, .public_key = nullptr};
    switch (key.alg) {
      case JwtAlg::hs256:
        if (!key.public_key_pem.empty()) {
          return fail(Errc::validation_failed, who + ": an HS256 key takes a secret, not public_key_pem");
        }
        if (key.secret.size() < kMinHmacSecretBytes) {
          return fail(Errc::validation_failed, who + ": HS256 secret has " +
                                                   std::to_string(key.secret.size()) + " bytes, at least " +
                                                   std::to_string(kMinHmacSecretBytes) + " are required");
        }
        parsed.secret = std::move(key.secret);
        break;
      case JwtAlg::rs256:
      case JwtAlg::es256: {
        if (!key.secret.empty()) {
          return fail(Errc::validation_failed, who + ": an " + std::string(to_string(key.alg)) +
                                                   " key takes public_key_pem, not a secret");
        }
        Result<PkeyPtr> public_key = load_public_key(key, who);
        if (!public_key) return std::unexpected(std::move(public_key.error()));
        parsed.public_key = std::move(*public_key);
        break;
      }
      default:
        return fail(Errc::validation_failed, who + ": unknown algorithm");
    }
    set->keys.push_back(std::move(parsed));
  }
  return JwtVerifier(std::move(set), std::move(policy));
}

Result<JwtClaims> JwtVerifier::verify(std::string_view token, std::int64_t now_unix_seconds) const {
  if (token.size() > policy_.max_token_bytes) {
    return reject("token is longer than " + std::to_string(policy_.max_token_bytes) + " bytes");
  }
  if (empty()) return reject("no token verification keys are configured");
  if (token.empty()) return reject("token is empty");

  const std::size_t first_dot = token.find('.');
  const std::size_t second_dot =
      first_dot == std::string_view::npos ? first_dot : token.find('.', first_dot + 1);
  if (second_dot == std::string_view::npos || token.find('.', second_dot + 1) != std::string_view::npos) {
    return reject("token does not have three dot-separated parts");
  }
  const std::string_view encoded_header = token.substr(0, first_dot);
  const std::string_view encoded_payload = token.substr(first_dot + 1, second_dot - first_dot - 1);
  const std::string_view encoded_signature = token.substr(second_dot + 1);
  const std::string_view signing_input = token.substr(0, second_dot);

  Result<boost::json::object> header = decode_json_object(encoded_header, "header");
  if (!header) return std::unexpected(std::move(header.error()));

  const boost::json::value* alg_value = header->if_contains("alg");
  if (alg_value == nullptr) return reject("header has no alg");
  if (!alg_value->is_string()) return reject("header alg is not a string");
  const std::string_view alg_name = alg_value->get_string();
  if (iequals_ascii(alg_name, "none")) return reject("algorithm none is not accepted");
  const std::optional<JwtAlg> alg = parse_jwt_alg(alg_name);
  if (!alg) return reject("algorithm is not supported");
  if (header->contains("crit")) return reject("critical header parameters (crit) are not supported");
  if (const boost::json::value* typ = header->if_contains("typ")) {
    // Media type names are case-insensitive (RFC 7515 §4.1.9).
    if (!typ->is_string() || !iequals_ascii(typ->get_string(), "JWT"))
      return reject("token type (typ) is not JWT");
  }
  std::optional<std::string_view> kid;
  if (const boost::json::value* kid_value = header->if_contains("kid")) {
    if (!kid_value->is_string()) return reject("header kid is not a string");
    kid = kid_value->get_string();
  }

  const std::optional<std::string> signature = base64url_decode(encoded_signature);
  if (!signature) return reject("signature is not valid base64url");
  if (*alg == JwtAlg::hs256 && signature->size() != kHs256SignatureBytes) {
    return reject("HS256 signature is not 32 bytes");
  }
  if (*alg == JwtAlg::es256 && signature->size() != kEs256SignatureBytes) {
    return reject("ES256 signature is not 64 bytes (R || S)");
  }

  const KeySet::Key* verified_by = nullptr;
  if (kid) {
    const auto it = std::ranges::find_if(
        keys_->keys, [&](const KeySet::Key& k) { return !k.kid.empty() && k.kid == *kid; });
    if (it == keys_->keys.end()) return reject("unknown key id (kid)");
    if (it->alg != *alg) return reject("algorithm does not match the key");
    if (KeySet::verifies(*it, signing_input, *signature)) verified_by = &*it;
  } else {
    bool any_candidate = false;
    for (const KeySet::Key& k : keys_->keys) {
      if (k.alg != *alg) continue;
      any_candidate = true;
      if (KeySet::verifies(k, signing_input, *signature)) {
        verified_by = &k;
        break;
      }
    }
    if (!any_candidate) return reject("no key for algorithm " + std::string(to_string(*alg)));
  }
  if (verified_by == nullptr) return reject("signature does not verify");

  Result<boost::json::object> payload = decode_json_object(encoded_payload, "payload");
  if (!payload) return std::unexpected(std::move(payload.error()));
  Result<JwtClaims> claims = check_claims(std::move(*payload), policy_, now_unix_seconds);
  if (claims) claims->key_id = verified_by->kid;
  return claims;
}

}  // namespace twinbridge::core
