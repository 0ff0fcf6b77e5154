#include "http/authenticator.hpp"

#include <fmt/format.h>

#include "core/credentials.hpp"
#include "core/text.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

constexpr std::size_t kMaxTrackedClients = 10'000;

}  // namespace

core::Principal admin_token_principal() {
  core::Principal p;
  p.id = core::PrincipalId(std::string(kAdminTokenPrincipal));
  p.kind = core::PrincipalKind::operator_account;
  p.name = "admin token";
  p.roles = {"admin"};
  return p;
}

Authenticator::Authenticator(store::Store& store, AuthSettings settings, const core::Clock& clock)
    : store_(store), settings_(std::move(settings)), clock_(clock) {
  if (!settings_.admin_token.empty()) admin_token_hash_ = core::sha256_hex(settings_.admin_token);
}

core::Result<Caller> Authenticator::authenticate(std::string_view authorization, std::string_view client) {
  const auto now = clock_.monotonic();
  if (throttled(client, now)) {
    core::Error e(Errc::rate_limited,
                  "too many failed authentication attempts from this address; retry later");
    e.retry_after_seconds = std::max(1, static_cast<int>(1.0 / settings_.failure_refill_per_second + 0.999));
    return std::unexpected(std::move(e));
  }
  auto result = check(authorization);
  if (!result && result.error().code == Errc::unauthenticated) record_failure(client, now);
  return result;
}

core::Result<Caller> Authenticator::check(std::string_view authorization) {
  authorization = core::trim(authorization);
  if (authorization.empty()) {
    return core::fail(Errc::unauthenticated,
                      "this route requires a bearer token (Authorization: Bearer <token>)");
  }
  const auto space = authorization.find(' ');
  if (space == std::string_view::npos || !core::iequals(authorization.substr(0, space), "Bearer")) {
    return core::fail(Errc::unauthenticated, "the Authorization header must use the Bearer scheme");
  }
  const auto token = core::trim(authorization.substr(space + 1));
  if (token.empty() || token.size() > 8192) {
    return core::fail(Errc::unauthenticated, "the bearer token is empty or longer than 8192 bytes");
  }

  if (!admin_token_hash_.empty() && core::constant_time_equal(core::sha256_hex(token), admin_token_hash_)) {
    return Caller{admin_token_principal(), "admin-token", std::nullopt};
  }

  if (auto key_id = core::api_key_id_of(token)) {
    auto found = store_.credential(core::ApiKeyId(std::string(*key_id)));
    if (!found) return std::unexpected(found.error());
    if (!found->has_value() || !core::constant_time_equal(core::sha256_hex(token), (*found)->key.hash)) {
      return core::fail(Errc::unauthenticated, "the API key is not valid (unknown or revoked)");
    }
    auto& cred = **found;
    if (cred.key.expires && *cred.key.expires <= clock_.now()) {
      return core::fail(Errc::unauthenticated, "the API key has expired");
    }
    if (cred.principal.disabled) {
      return core::fail(Errc::unauthenticated,
                        fmt::format("principal '{}' is disabled", cred.principal.id.str()));
    }
    return Caller{std::move(cred.principal), "api-key:" + cred.key.id.str(), cred.key.expires};
  }

  if (std::count(token.begin(), token.end(), '.') == 2) {
    if (!settings_.jwt || settings_.jwt->empty()) {
      return core::fail(Errc::unauthenticated, "JWT bearer tokens are not enabled on this server");
    }
    const auto now_s =
        std::chrono::duration_cast<std::chrono::seconds>(clock_.now().time_since_epoch()).count();
    auto claims = settings_.jwt->verify(token, now_s);
    if (!claims) return std::unexpected(claims.error());
    auto principal = store_.principal(core::PrincipalId(claims->subject));
    if (!principal) {
      if (principal.error().code == Errc::not_found) {
        return core::fail(
            Errc::unauthenticated,
            fmt::format("the token's subject '{}' is not a registered principal", claims->subject));
      }
      return std::unexpected(principal.error());
    }
    if (principal->disabled) {
      return core::fail(Errc::unauthenticated,
                        fmt::format("principal '{}' is disabled", principal->id.str()));
    }
    return Caller{std::move(*principal), "jwt:" + claims->key_id,
                  core::Timestamp(std::chrono::seconds(claims->expires_at))};
  }
  return core::fail(Errc::unauthenticated, "the bearer token is not valid");
}

bool Authenticator::throttled(std::string_view client, std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(failures_mutex_);
  auto it = failures_.find(std::string(client));
  if (it == failures_.end()) return false;
  auto& b = it->second;
  b.tokens =
      std::min(settings_.failure_burst, b.tokens + std::chrono::duration<double>(now - b.updated).count() *
                                                       settings_.failure_refill_per_second);
  b.updated = now;
  return b.tokens < 1.0;
}

void Authenticator::record_failure(std::string_view client, std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(failures_mutex_);
  if (failures_.size() >= kMaxTrackedClients && !failures_.contains(std::string(client))) {
    // Forget clients whose bucket has refilled; if none has, forget everyone rather than grow without bound.
    std::erase_if(failures_, [&](const auto& item) {
      return item.second.tokens + std::chrono::duration<double>(now - item.second.updated).count() *
                                      settings_.failure_refill_per_second >=
             settings_.failure_burst;
    });
    if (failures_.size() >= kMaxTrackedClients) failures_.clear();
  }
  auto [it, inserted] = failures_.try_emplace(std::string(client), Bucket{settings_.failure_burst, now});
  it->second.tokens = std::max(0.0, it->second.tokens - 1.0);
}

}  // namespace twinbridge::http
