// EventHub and Subscription without a server: streams leave the hub when they end (also when nothing is
// published), and end with a stream_closed frame when their credential expires or loses its rights.

#include "http/event_hub.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <optional>
#include <string>
#include <vector>

namespace twinbridge::http {
namespace {

using namespace std::chrono_literals;

StreamOwner owner(std::string principal = "p", std::string credential = "api-key:k1") {
  return StreamOwner{core::PrincipalId(std::move(principal)), std::move(credential),
                     core::Permission::registry_read, std::nullopt};
}

core::Principal principal_with(std::vector<std::string> roles, bool disabled = false) {
  core::Principal p;
  p.id = core::PrincipalId("p");
  p.kind = core::PrincipalKind::metaverse_system;
  p.roles = std::move(roles);
  p.disabled = disabled;
  return p;
}

// Every frame of `sub` until its stream ends, running `io` until then.
std::vector<std::string> frames_until_end(boost::asio::io_context& io,
                                          const std::shared_ptr<Subscription>& sub,
                                          std::size_t at_most = 100) {
  std::vector<std::string> out;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        while (out.size() < at_most) {
          auto frame = co_await sub->next();
          if (!frame) co_return;
          out.push_back(std::move(*frame));
        }
      },
      boost::asio::detached);
  io.run();
  io.restart();
  return out;
}

// The JSON data of a frame "event: <type>\n...data: <json>\n\n".
boost::json::value data_of(const std::string& frame) {
  const auto at = frame.find("data: ");
  return boost::json::parse(frame.substr(at + 6, frame.size() - at - 8));
}

TEST(EventHubTest, AnEndedSubscriptionLeavesAQuietHub) {
  boost::asio::io_context io;
  EventHub hub;
  auto a = hub.subscribe(io.get_executor(), {}, false, std::nullopt, owner());
  auto b = hub.subscribe(io.get_executor(), {}, false, std::nullopt, owner());
  EXPECT_EQ(hub.subscriber_count(), 2u);
  a->cancel();
  a.reset();
  io.run();  // the cancel's wake-up, which held the last reference
  io.restart();
  EXPECT_EQ(hub.subscriber_count(), 1u);  // nothing was published
  b.reset();
  EXPECT_EQ(hub.subscriber_count(), 0u);
}

TEST(EventHubTest, StreamEndFollowsTheChangeOfTheOwnersPrincipal) {
  const auto mine = owner("p", "api-key:k1");
  store::PrincipalChange change;
  change.id = core::PrincipalId("p");
  EXPECT_FALSE(stream_end(mine, change));

  change.deleted = true;
  EXPECT_EQ(stream_end(mine, change)->reason, "principal_deleted");
  EXPECT_FALSE(stream_end(owner("q"), change));  // another principal's stream

  change = {};
  change.id = core::PrincipalId("p");
  change.revoked_key = core::ApiKeyId("k2");
  EXPECT_FALSE(stream_end(mine, change));  // another key of the same principal
  change.revoked_key = core::ApiKeyId("k1");
  EXPECT_EQ(stream_end(mine, change)->reason, "credential_revoked");
  EXPECT_FALSE(stream_end(owner("p", "jwt:k1"), change));  // a JWT is no API key

  change.revoked_key.reset();
  change.principal = principal_with({"registry-reader"}, true);
  EXPECT_EQ(stream_end(mine, change)->reason, "principal_disabled");
  change.principal = principal_with({"twin-reader"});
  EXPECT_EQ(stream_end(mine, change)->reason, "permission_revoked");
  change.principal = principal_with({"registry-reader", "twin-reader"});
  EXPECT_FALSE(stream_end(mine, change));
}

TEST(EventHubTest, ClosingAStreamDropsWhatIsQueuedAndEndsWithStreamClosed) {
  boost::asio::io_context io;
  EventHub hub;
  auto sub = hub.subscribe(io.get_executor(), {}, false, std::nullopt, owner());
  auto other = hub.subscribe(io.get_executor(), {}, false, std::nullopt, owner("q", "api-key:k9"));
  hub.publish("thing_created", R"({"id":"a"})", R"({"id":"a"})");
  store::PrincipalChange revoked;
  revoked.id = core::PrincipalId("p");
  revoked.revoked_key = core::ApiKeyId("k1");
  hub.close_streams(revoked);
  hub.publish("thing_created", R"({"id":"b"})", R"({"id":"b"})");

  const auto frames = frames_until_end(io, sub);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_TRUE(frames[0].starts_with("event: stream_closed\ndata: ")) << frames[0];
  EXPECT_EQ(data_of(frames[0]).at("reason"), "credential_revoked");

  // The other principal's stream got both events.
  const auto others = frames_until_end(io, other, 2);
  ASSERT_EQ(others.size(), 2u);
  EXPECT_NE(others[1].find(R"({"id":"b"})"), std::string::npos);
}

TEST(EventHubTest, AStreamEndsWhenItsCredentialExpiresWithNothingPublished) {
  boost::asio::io_context io;
  EventHub hub(100, 1h);  // no heartbeat comes first
  auto o = owner();
  o.expires = std::chrono::steady_clock::now() + 50ms;
  auto sub = hub.subscribe(io.get_executor(), {}, false, std::nullopt, o);
  const auto frames = frames_until_end(io, sub);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(data_of(frames[0]).at("reason"), "credential_expired");
  EXPECT_GE(std::chrono::steady_clock::now(), *o.expires);
  sub.reset();
  EXPECT_EQ(hub.subscriber_count(), 0u);
}

TEST(EventHubTest, ASubscriberTooFarBehindIsToldToReconnect) {
  boost::asio::io_context io;
  EventHub hub(20'000);
  auto sub = hub.subscribe(io.get_executor(), {}, false, std::nullopt, owner());
  for (int i = 0; i < 10'001; ++i) hub.publish("thing_deleted", "{}", "{}");
  const auto frames = frames_until_end(io, sub);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(data_of(frames[0]).at("reason"), "lagging");
}

}  // namespace
}  // namespace twinbridge::http
