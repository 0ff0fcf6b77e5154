// A Server-Sent Events stream belongs to the credential that opened it (README "Security model"): revoking
// the API key, disabling or deleting the principal, taking away the permission the stream needs, and the
// credential's expiry (API key expiry, JWT exp) end it with a last `stream_closed` event saying why. A hub
// where nothing is published keeps no ended stream (twinbridge_streams in /metrics). Waits poll with
// deadlines.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json/serialize.hpp>

#include <fstream>
#include <regex>
#include <thread>

#include "core/base64url.hpp"
#include "core/time.hpp"
#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;

const std::string kJwtSecret = "0123456789abcdef0123456789abcdef-streams";

std::string hs256_token(const boost::json::object& claims) {
  const auto header = core::base64url_encode(R"({"alg":"HS256","typ":"JWT","kid":"k1"})");
  const auto payload = core::base64url_encode(boost::json::serialize(claims));
  const std::string input = header + "." + payload;
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kJwtSecret.data(), static_cast<int>(kJwtSecret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + core::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

struct Issued {
  std::string token;
  std::string key_id;
};

class StreamsTest : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    secret_dir_ = std::make_unique<TempDir>();
    const auto secret = secret_dir_->path() / "jwt.secret";
    std::ofstream(secret) << kJwtSecret << "\n";
    start_server({"--jwt-key", "HS256:k1:" + secret.string()});
  }
  static void TearDownTestSuite() {
    SharedServerTest::TearDownTestSuite();
    secret_dir_.reset();
  }

  // A metaverse-system principal (registry:read) and its first API key.
  static Issued reader(const std::string& id, const std::string& key_options = "") {
    auto r =
        call(port(), "POST", "/v1/principals", kAdmin,
             R"({"id":")" + id + R"(","kind":"metaverse-system","name":")" + id + "\"" + key_options + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    const auto key = r.json().at("api_key");
    return {std::string(key.at("token").as_string()), std::string(key.at("id").as_string())};
  }

  // The stream's next event must be stream_closed with `reason`, and then the stream ends.
  static void expect_closed(Connection& c, const std::string& reason) {
    auto e = next_event(c);
    ASSERT_TRUE(e.has_value()) << "the stream ended without a stream_closed event";
    EXPECT_EQ(e->type, "stream_closed");
    EXPECT_TRUE(e->id.empty()) << "stream_closed is not a resumable event";
    EXPECT_EQ(std::string(e->data.at("reason").as_string()), reason) << boost::json::serialize(e->data);
    EXPECT_FALSE(e->data.at("detail").as_string().empty());
    EXPECT_TRUE(c.closed_by_peer(10s));
  }

  // A directory event, so that an open stream has something to deliver.
  static void publish_something(const std::string& id) {
    const std::string td = R"({"@context":"https://www.w3.org/2022/wot/td/v1.1","title":"x",)"
                           R"("securityDefinitions":{"nosec_sc":{"scheme":"nosec"}},"security":"nosec_sc"})";
    ASSERT_EQ(
        call(port(), "PUT", "/things/" + id, kAdmin, td, {{"Content-Type", "application/td+json"}}).status,
        201);
  }

  // twinbridge_streams from /metrics: the subscriptions to the change feed open now.
  static int open_streams() {
    auto r = fetch(port(), {"GET", "/metrics"});
    std::smatch m;
    const std::regex line("\ntwinbridge_streams ([0-9]+)");
    if (!std::regex_search(r.body, m, line)) return -1;
    return std::stoi(m[1]);
  }

  static bool wait_for_streams(int n) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (open_streams() == n) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  static inline std::unique_ptr<TempDir> secret_dir_;
};

TEST_F(StreamsTest, RevokingTheApiKeyEndsItsStreamsAndNoOthers) {
  const auto key = reader("sse-revoked");
  const auto other = reader("sse-bystander");
  auto events = open_events(port(), "/events", key.token);
  auto status = open_events(port(), "/v1/system-events", key.token);
  auto bystander = open_events(port(), "/events", other.token);
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/sse-revoked/api-keys/" + key.key_id, kAdmin).status, 204);
  expect_closed(*events, "credential_revoked");
  expect_closed(*status, "credential_revoked");
  // The other principal's stream goes on.
  publish_something("urn:sse:after-revocation");
  auto e = next_event(*bystander);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, "thing_created");
  EXPECT_EQ(e->data.at("id"), "urn:sse:after-revocation");
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/sse-bystander/api-keys/" + other.key_id, kAdmin).status,
            204);
  expect_closed(*bystander, "credential_revoked");
}

TEST_F(StreamsTest, AKeyRevokedByItsOwnPrincipalEndsTheStreamToo) {
  const auto key = reader("sse-self");
  auto second = call(port(), "POST", "/v1/principals/sse-self/api-keys", key.token, "{}");
  ASSERT_EQ(second.status, 201);
  auto events = open_events(port(), "/events", key.token);
  auto on_second = open_events(port(), "/events", std::string(second.json().at("token").as_string()));
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/sse-self/api-keys/" + key.key_id, key.token).status, 204);
  expect_closed(*events, "credential_revoked");
  // The stream of the principal's other key goes on.
  publish_something("urn:sse:after-self-revocation");
  auto e = next_event(*on_second);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->data.at("id"), "urn:sse:after-self-revocation");
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/sse-self", kAdmin).status, 204);
  expect_closed(*on_second, "principal_deleted");
}

TEST_F(StreamsTest, DisablingThePrincipalEndsItsStreams) {
  const auto key = reader("sse-disabled");
  auto events = open_events(port(), "/events/thing_created", key.token);
  ASSERT_EQ(call(port(), "PATCH", "/v1/principals/sse-disabled", kAdmin, R"({"disabled":true})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            200);
  expect_closed(*events, "principal_disabled");
}

TEST_F(StreamsTest, LosingThePermissionEndsTheStream) {
  const auto key = reader("sse-demoted");
  auto events = open_events(port(), "/v1/system-events", key.token);
  // A change that keeps registry:read does not end it.
  ASSERT_EQ(call(port(), "PATCH", "/v1/principals/sse-demoted", kAdmin, R"({"name":"renamed"})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            200);
  ASSERT_EQ(call(port(), "PATCH", "/v1/principals/sse-demoted", kAdmin, R"({"roles":["twin-reader"]})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            200);
  expect_closed(*events, "permission_revoked");
}

TEST_F(StreamsTest, DeletingThePrincipalEndsItsStreams) {
  const auto key = reader("sse-deleted");
  auto events = open_events(port(), "/events", key.token);
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/sse-deleted", kAdmin).status, 204);
  expect_closed(*events, "principal_deleted");
}

TEST_F(StreamsTest, AnExpiringApiKeyEndsItsStreamOnAQuietHub) {
  // Every test of this suite ends the streams it opened from the server's side.
  ASSERT_TRUE(wait_for_streams(0)) << open_streams();
  const int before = 0;
  // Long enough for a loaded machine to open the streams first.
  const auto expires = core::format_rfc3339(core::SystemClock().now() + 4s);
  const auto key = reader("sse-expiring", R"(,"api_key":{"expires":")" + expires + "\"}");
  std::vector<std::unique_ptr<Connection>> streams;
  for (int i = 0; i < 3; ++i) streams.push_back(open_events(port(), "/v1/system-events", key.token));
  EXPECT_EQ(open_streams(), before + 3);
  // Nothing is published on the system hub meanwhile: each stream's own timer ends it.
  for (auto& s : streams) expect_closed(*s, "credential_expired");
  // And the hub lets go of every one of them without a publication.
  EXPECT_TRUE(wait_for_streams(before)) << open_streams();
}

TEST_F(StreamsTest, AJwtStreamEndsAtTheTokensExpiry) {
  reader("sse-jwt");
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(core::SystemClock().now().time_since_epoch()).count();
  const auto token = hs256_token({{"sub", "sse-jwt"}, {"aud", "twinbridge"}, {"iat", now}, {"exp", now + 4}});
  ASSERT_EQ(call(port(), "GET", "/v1/principals/me", token).status, 200);
  auto events = open_events(port(), "/events", token);
  expect_closed(*events, "credential_expired");
}

// Every test of this suite ends the streams it opened from the server's side, so the hubs come back to none.
TEST_F(StreamsTest, ClosedStreamsLeaveTheHub) {
  ASSERT_TRUE(wait_for_streams(0)) << open_streams();
  ASSERT_TRUE(wait_for_streams(0)) << open_streams();
  const auto key = reader("sse-count");
  {
    auto a = open_events(port(), "/events", key.token);
    auto b = open_events(port(), "/events/thing_deleted", key.token);
    EXPECT_EQ(open_streams(), 2);
    ASSERT_EQ(call(port(), "DELETE", "/v1/principals/sse-count/api-keys/" + key.key_id, kAdmin).status, 204);
    expect_closed(*a, "credential_revoked");
    expect_closed(*b, "credential_revoked");
  }
  EXPECT_TRUE(wait_for_streams(0)) << open_streams();
}

}  // namespace
}  // namespace twinbridge::testing
