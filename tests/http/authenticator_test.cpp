// The Authenticator's rules that depend on time, driven by a fake clock: throttling of failed attempts per
// client address (a token bucket on the monotonic clock) and the expiry of API keys (on the time of day).

#include "http/authenticator.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "core/access.hpp"
#include "core/credentials.hpp"
#include "core/ids.hpp"
#include "store/sqlite_store.hpp"
#include "support/fake_clock.hpp"
#include "support/store_writes.hpp"

namespace twinbridge::http {
namespace {

using namespace std::chrono_literals;
using core::Errc;

constexpr std::string_view kBadToken = "Bearer not-a-credential";

class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("tb-auth-" + core::new_uuid_v7());
    auto s = store::SqliteStore::open({path_ / "db", "NORMAL"});
    ASSERT_TRUE(s) << s.error().detail;
    store_ = std::move(*s);
    store_->start();
  }
  void TearDown() override {
    store_->stop();
    store_.reset();
    std::filesystem::remove_all(path_);
  }

  Authenticator make(double burst, double refill_per_second) {
    AuthSettings settings;
    settings.failure_burst = burst;
    settings.failure_refill_per_second = refill_per_second;
    return Authenticator(*store_, std::move(settings), clock_);
  }

  static Errc outcome(Authenticator& auth, std::string_view authorization, std::string_view client) {
    auto r = auth.authenticate(authorization, client);
    return r ? Errc::internal : r.error().code;  // internal stands for "accepted" here
  }

  std::filesystem::path path_;
  testing::FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
};

TEST_F(AuthenticatorTest, ThrottlesAnAddressAfterItsBurstAndLetsItRetryAsTheBucketRefills) {
  auto auth = make(3, 2);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::unauthenticated) << i;
  const auto limited = auth.authenticate(kBadToken, "192.0.2.1");
  ASSERT_FALSE(limited);
  EXPECT_EQ(limited.error().code, Errc::rate_limited);
  EXPECT_EQ(limited.error().retry_after_seconds, 1);
  // Other addresses are not affected.
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.2"), Errc::unauthenticated);

  // 2 attempts per second come back: one after 500 ms, not before.
  clock_.advance(499ms);
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::rate_limited);
  clock_.advance(1ms);
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::unauthenticated);
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::rate_limited);

  // After a long pause the whole burst is back, and no more than it.
  clock_.advance(1h);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::unauthenticated) << i;
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::rate_limited);
}

TEST_F(AuthenticatorTest, SettingTheTimeOfDayNeitherRefillsNorDrainsTheBucket) {
  auto auth = make(2, 1);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::unauthenticated);
  clock_.set(clock_.now() + 24h);  // the operator sets the system clock forward: nothing refills
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::rate_limited);
  clock_.set(clock_.now() - 48h);  // and back: still one attempt per second, once a second has passed
  clock_.advance(1s);
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::unauthenticated);
  EXPECT_EQ(outcome(auth, kBadToken, "192.0.2.1"), Errc::rate_limited);
}

TEST_F(AuthenticatorTest, AnApiKeyIsRefusedFromItsExpiryOn) {
  core::Principal p;
  p.id = core::PrincipalId("expiring");
  p.kind = core::PrincipalKind::metaverse_system;
  p.name = "expiring";
  p.roles = core::default_roles(p.kind);
  const auto issued = core::issue_api_key();
  store::ApiKeyRecord key{core::ApiKeyId(issued.key_id), p.id, issued.hash, "test", clock_.now(),
                          clock_.now() + 10min};
  core::AuditEntry audit;
  audit.at = clock_.now();
  audit.actor = "admin-token";
  audit.action = "principal.create";
  audit.target_type = "principal";
  audit.target_id = p.id.str();
  const auto created = twinbridge::testing::wait_for<core::Principal>(
      [&](store::Completion<core::Principal> d) { store_->create_principal(p, key, audit, std::move(d)); });
  ASSERT_TRUE(created) << created.error().detail;

  auto auth = make(50, 5);
  const std::string bearer = "Bearer " + issued.token;
  clock_.advance(10min - 1us);
  const auto before = auth.authenticate(bearer, "192.0.2.1");
  ASSERT_TRUE(before) << before.error().detail;
  EXPECT_EQ(before->principal.id.str(), "expiring");
  clock_.advance(1us);
  const auto after = auth.authenticate(bearer, "192.0.2.1");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, Errc::unauthenticated);
  EXPECT_EQ(after.error().detail, "the API key has expired");
}

}  // namespace
}  // namespace twinbridge::http
