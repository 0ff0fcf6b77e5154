#pragma once
// Verification of JWT bearer tokens (RFC 7519) in the JWS compact serialisation (RFC 7515), signed with
// HS256, RS256 or ES256 (RFC 7518). Only verification: twinbridge never issues tokens.
//
// A JwtVerifier owns its keys, parsed once by create(). Each key is bound to exactly one algorithm and the
// token's "alg" header must equal it, which defeats algorithm confusion (e.g. an RSA public key used as an
// HMAC secret); "none", unknown algorithms, "crit" headers and embedded keys (jwk, jku, x5c, x5u are ignored)
// are never honoured.
//
// Ownership and thread-safety: the parsed keys are immutable and shared between copies of a verifier, so
// copying is cheap; verify() is const and may be called concurrently from any number of threads.
//
// Errors: create() returns Errc::validation_failed for a bad key or policy; verify() returns
// Errc::unauthenticated for every rejected token, with a detail saying why (never echoing token contents).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "core/error.hpp"

namespace twinbridge::core {

enum class JwtAlg { hs256, rs256, es256 };

// Accepts exactly "HS256", "RS256" and "ES256" (JWS algorithm names are case-sensitive).
std::optional<JwtAlg> parse_jwt_alg(std::string_view name);

// The JWS name of an algorithm, e.g. "RS256".
std::string_view to_string(JwtAlg alg);

struct JwtKey {
  std::string kid;             // may be empty; non-empty kids must be unique within a verifier
  JwtAlg alg = JwtAlg::hs256;  // the one algorithm this key verifies
  std::string secret;          // HS256: the shared secret (raw bytes), at least 32 bytes; empty otherwise
  std::string
      public_key_pem;  // RS256 (RSA >= 2048 bits) / ES256 (P-256): "BEGIN PUBLIC KEY" (SPKI); empty for HS256
};

struct JwtPolicy {
  std::string issuer;                  // required "iss" value when non-empty
  std::string audience;                // must appear in "aud" (string or array) when non-empty
  std::chrono::seconds leeway{60};     // clock skew allowed on "exp" and "nbf"; not negative
  std::size_t max_token_bytes = 8192;  // longer tokens are rejected before any decoding
};

struct JwtClaims {
  std::string subject;                // "sub", required, non-empty
  std::string issuer;                 // "iss", empty when absent
  std::vector<std::string> audience;  // "aud", a single string becomes one element
  std::int64_t expires_at = 0;        // "exp", required (fractional values are rounded down)
  std::int64_t not_before = 0;        // "nbf", 0 when absent (fractional values are rounded up)
  std::int64_t issued_at = 0;         // "iat", 0 when absent
  std::string key_id;                 // the kid of the key that verified the signature (may be empty)
  boost::json::object all;            // every claim of the payload
};

class JwtVerifier {
 public:
  // An empty verifier: it has no keys and rejects every token.
  JwtVerifier() = default;

  // Parses and checks every key once: HS256 secret length, PEM parse, key type, RSA size, EC curve, and that
  // a key carries only the material of its algorithm; non-empty kids must be unique. Also checks the policy
  // (leeway not negative, max_token_bytes not zero). Errors: Errc::validation_failed naming the key's kid or
  // index.
  static Result<JwtVerifier> create(std::vector<JwtKey> keys, JwtPolicy policy);

  // Verifies a compact JWS at time now_unix_seconds: size, structure, header, key selection (by "kid" when
  // present, else every key bound to the header's "alg"), signature, then the claims against the policy.
  // Errors: Errc::unauthenticated with a specific detail (e.g. "token expired", "signature does not verify").
  Result<JwtClaims> verify(std::string_view token, std::int64_t now_unix_seconds) const;

  // True when the verifier has no keys.
  bool empty() const;

 private:
  struct KeySet;

  JwtVerifier(std::shared_ptr<const KeySet> keys, JwtPolicy policy);

  std::shared_ptr<const KeySet> keys_;
  JwtPolicy policy_;
};

}  // namespace twinbridge::core
