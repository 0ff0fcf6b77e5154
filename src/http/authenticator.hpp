#pragma once
// Authentication of bearer credentials: the operator admin token (TWINBRIDGE_ADMIN_TOKEN), API keys issued by
// twinbridge, and JWTs signed by a configured key whose `sub` names a registered principal. Repeated failures
// from one client address are throttled (429 with Retry-After) so that keys cannot be guessed at line rate.
//
// Thread-safe; authenticate() does one indexed store read for API keys and JWTs.
// Errors: unauthenticated (missing, malformed, unknown, expired, revoked, disabled), rate_limited,
// unavailable.

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/jwt.hpp"
#include "core/time.hpp"
#include "http/message.hpp"
#include "store/store.hpp"

namespace twinbridge::http {

struct AuthSettings {
  std::string admin_token;               // empty: no admin token
  std::optional<core::JwtVerifier> jwt;  // nullopt: JWTs are not accepted
  double failure_burst = 50;             // failed attempts a client address may make at once
  double failure_refill_per_second = 5;  // and then per second
};

class Authenticator {
 public:
  // `clock` gives the time for expiry checks and the monotonic time for throttling.
  Authenticator(store::Store& store, AuthSettings settings, const core::Clock& clock);

  // `authorization` is the Authorization header value; `client` the remote address (for throttling).
  core::Result<Caller> authenticate(std::string_view authorization, std::string_view client);

 private:
  core::Result<Caller> check(std::string_view authorization);
  bool throttled(std::string_view client, std::chrono::steady_clock::time_point now);
  void record_failure(std::string_view client, std::chrono::steady_clock::time_point now);

  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point updated;
  };

  store::Store& store_;
  AuthSettings settings_;
  const core::Clock& clock_;
  std::string admin_token_hash_;
  std::mutex failures_mutex_;
  std::unordered_map<std::string, Bucket> failures_;
};

// The synthetic principal of the admin token.
core::Principal admin_token_principal();

}  // namespace twinbridge::http
