// Integration tests of /v1/principals and /v1/audit over HTTP: creation with API keys, conditional requests,
// merge patch, authorization by role, self-service key rotation, JWT bearer tokens and the audit trail.

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <set>

#include <fstream>

#include "core/base64url.hpp"
#include "support/http_client.hpp"
#include "support/server_process.hpp"

namespace twinbridge::testing {
namespace {

const std::string kAdmin = "test-admin-token-0123456789";
const std::string kJwtSecret = "0123456789abcdef0123456789abcdef-shared";

std::string hs256_token(const boost::json::object& claims, const std::string& secret) {
  const auto header = core::base64url_encode(R"({"alg":"HS256","typ":"JWT","kid":"k1"})");
  const auto payload = core::base64url_encode(boost::json::serialize(claims));
  const std::string input = header + "." + payload;
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + core::base64url_encode(std::string_view(reinterpret_cast<const char*>(mac), len));
}

class PrincipalsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    std::ofstream(dir_->path() / "jwt.secret") << kJwtSecret << "\n";
    server_ = new ServerProcess(dir_->path(),
                                {"--jwt-key", "HS256:k1:" + (dir_->path() / "jwt.secret").string(),
                                 "--jwt-issuer", "https://idp.test"},
                                {{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  static std::uint16_t port() { return server_->port(); }

  // Creates a principal and returns its API key token (empty when none was issued).
  static std::string create(const std::string& id, const std::string& kind, const std::string& extra = "") {
    auto r =
        call(port(), "POST", "/v1/principals", kAdmin,
             R"({"id":")" + id + R"(","kind":")" + kind + R"(","name":"test )" + id + "\"" + extra + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    const auto created = r.json();
    const auto* key = created.as_object().if_contains("api_key");
    return key != nullptr ? std::string(key->at("token").as_string()) : std::string();
  }

  static TempDir* dir_;
  static ServerProcess* server_;
};

TempDir* PrincipalsTest::dir_ = nullptr;
ServerProcess* PrincipalsTest::server_ = nullptr;

TEST_F(PrincipalsTest, CreateReturnsTheRecordItsKeyLocationAndEtag) {
  auto r =
      call(port(), "POST", "/v1/principals", kAdmin,
           R"({"id":"mv-1","kind":"metaverse-system","name":"Virtual Campus","properties":{"region":"eu"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.header("Location"), "/v1/principals/mv-1");
  EXPECT_EQ(r.header("ETag"), "\"1\"");
  auto p = r.json().as_object();
  EXPECT_EQ(p.at("kind"), "metaverse-system");
  EXPECT_EQ(p.at("version"), 1);
  EXPECT_EQ(p.at("roles"),
            boost::json::parse(R"(["registry-reader","twin-reader","twin-controller","service-user"])"));
  const auto token = std::string(p.at("api_key").at("token").as_string());
  EXPECT_TRUE(token.starts_with("tbk_"));
  // The key works, and it is never shown again.
  auto me = call(port(), "GET", "/v1/principals/me", token);
  ASSERT_EQ(me.status, 200);
  EXPECT_EQ(me.json().at("id"), "mv-1");
  auto keys = call(port(), "GET", "/v1/principals/mv-1/api-keys", kAdmin);
  ASSERT_EQ(keys.status, 200);
  EXPECT_EQ(keys.body.find(token), std::string::npos);
  EXPECT_EQ(keys.body.find("hash"), std::string::npos);
  EXPECT_EQ(keys.json().at("items").as_array().size(), 1u);
}

TEST_F(PrincipalsTest, GeneratesAnIdWhenNoneIsGiven) {
  auto r = call(port(), "POST", "/v1/principals", kAdmin, R"({"kind":"twin-system","name":"Factory"})");
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(r.json().at("id").as_string().size(), 36u);
}

TEST_F(PrincipalsTest, DuplicateIdIsAConflict) {
  create("dup-1", "twin-system");
  auto r =
      call(port(), "POST", "/v1/principals", kAdmin, R"({"id":"dup-1","kind":"twin-system","name":"again"})");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.json().at("errors").at(0).at("pointer"), "/id");
}

TEST_F(PrincipalsTest, ValidationListsEveryBadFieldWithItsPointer) {
  auto r = call(port(), "POST", "/v1/principals", kAdmin,
                R"({"kind":"robot","name":5,"roles":["admin","wizard"],"colour":"red"})");
  ASSERT_EQ(r.status, 422);
  EXPECT_EQ(r.header("Content-Type"), "application/problem+json");
  std::set<std::string> pointers;
  const auto problem = r.json();
  for (const auto& e : problem.at("errors").as_array())
    pointers.insert(std::string(e.at("pointer").as_string()));
  EXPECT_EQ(pointers, (std::set<std::string>{"/kind", "/name", "/roles/1", "/colour"}));
}

TEST_F(PrincipalsTest, ReservedIdsAreRefused) {
  auto r = call(port(), "POST", "/v1/principals", kAdmin,
                R"({"id":"twinbridge:admin-token","kind":"operator","name":"x"})");
  EXPECT_EQ(r.status, 422);
}

TEST_F(PrincipalsTest, GetHonoursIfNoneMatch) {
  create("etag-1", "twin-system");
  auto r = call(port(), "GET", "/v1/principals/etag-1", kAdmin);
  ASSERT_EQ(r.status, 200);
  auto again =
      call(port(), "GET", "/v1/principals/etag-1", kAdmin, "", {{"If-None-Match", r.header("ETag")}});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
}

TEST_F(PrincipalsTest, MergePatchChangesOnlyWhatItNamesAndBumpsTheVersion) {
  create("patch-1", "third-party-system", R"(,"properties":{"a":1,"b":2})");
  auto r = call(port(), "PATCH", "/v1/principals/patch-1", kAdmin,
                R"({"name":"renamed","properties":{"b":null,"c":3}})",
                {{"Content-Type", "application/merge-patch+json"}, {"If-Match", "\"1\""}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("ETag"), "\"2\"");
  auto p = r.json().as_object();
  EXPECT_EQ(p.at("name"), "renamed");
  EXPECT_EQ(p.at("kind"), "third-party-system");
  EXPECT_EQ(p.at("properties"), boost::json::parse(R"({"a":1,"c":3})"));
}

TEST_F(PrincipalsTest, StaleIfMatchIs412AndChangesNothing) {
  create("patch-2", "twin-system");
  ASSERT_EQ(call(port(), "PATCH", "/v1/principals/patch-2", kAdmin, R"({"name":"v2"})",
                 {{"Content-Type", "application/merge-patch+json"}, {"If-Match", "\"1\""}})
                .status,
            200);
  auto stale = call(port(), "PATCH", "/v1/principals/patch-2", kAdmin, R"({"name":"lost update"})",
                    {{"Content-Type", "application/merge-patch+json"}, {"If-Match", "\"1\""}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(stale.json().at("type"), "urn:twinbridge:problem:precondition-failed");
  EXPECT_EQ(call(port(), "GET", "/v1/principals/patch-2", kAdmin).json().at("name"), "v2");
  auto del = call(port(), "DELETE", "/v1/principals/patch-2", kAdmin, "", {{"If-Match", "\"1\""}});
  EXPECT_EQ(del.status, 412);
  EXPECT_EQ(call(port(), "DELETE", "/v1/principals/patch-2", kAdmin, "", {{"If-Match", "\"2\""}}).status,
            204);
  EXPECT_EQ(call(port(), "GET", "/v1/principals/patch-2", kAdmin).status, 404);
}

TEST_F(PrincipalsTest, PatchRefusesReadOnlyMembersAndWrongMediaType) {
  create("patch-3", "twin-system");
  auto ro = call(port(), "PATCH", "/v1/principals/patch-3", kAdmin, R"({"kind":"operator","version":7})",
                 {{"Content-Type", "application/merge-patch+json"}});
  ASSERT_EQ(ro.status, 422);
  EXPECT_EQ(ro.json().at("errors").as_array().size(), 2u);
  auto mt = call(port(), "PATCH", "/v1/principals/patch-3", kAdmin, R"({"name":"x"})");
  EXPECT_EQ(mt.status, 415);
  EXPECT_EQ(mt.json().at("errors").at(0).at("header"), "Content-Type");
  EXPECT_EQ(call(port(), "GET", "/v1/principals/patch-3", kAdmin).json().at("version"), 1);
}

TEST_F(PrincipalsTest, RolesDecideWhatACallerMayDo) {
  const auto mv = create("role-mv", "metaverse-system");
  EXPECT_EQ(call(port(), "GET", "/v1/principals", mv).status, 403);
  EXPECT_EQ(call(port(), "POST", "/v1/principals", mv, R"({"kind":"operator","name":"escalate"})").status,
            403);
  EXPECT_EQ(call(port(), "GET", "/v1/audit", mv).status, 403);
  EXPECT_EQ(call(port(), "GET", "/v1/principals/role-mv", mv).status, 200);  // itself
  EXPECT_EQ(call(port(), "GET", "/v1/principals/etag-1", mv).status, 403);   // someone else
  const auto auditor = create("role-auditor", "operator", R"(,"roles":["auditor"])");
  EXPECT_EQ(call(port(), "GET", "/v1/audit", auditor).status, 200);
  EXPECT_EQ(call(port(), "GET", "/v1/principals", auditor).status, 200);
  EXPECT_EQ(call(port(), "DELETE", "/v1/principals/role-mv", auditor).status, 403);
}

TEST_F(PrincipalsTest, DisabledPrincipalsCannotAuthenticate) {
  const auto key = create("disable-1", "twin-system");
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", key).status, 200);
  ASSERT_EQ(call(port(), "PATCH", "/v1/principals/disable-1", kAdmin, R"({"disabled":true})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            200);
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", key).status, 401);
}

TEST_F(PrincipalsTest, APrincipalRotatesItsOwnKeys) {
  const auto first = create("rotate-1", "third-party-system");
  auto issued = call(port(), "POST", "/v1/principals/rotate-1/api-keys", first,
                     R"({"label":"rotation","expires":"2099-01-01T00:00:00Z"})");
  ASSERT_EQ(issued.status, 201) << issued.body;
  const auto second = std::string(issued.json().at("token").as_string());
  auto keys = call(port(), "GET", "/v1/principals/rotate-1/api-keys", second).json().at("items").as_array();
  ASSERT_EQ(keys.size(), 2u);
  std::string first_id;
  for (const auto& k : keys) {
    if (k.at("label") == "initial") first_id = std::string(k.at("id").as_string());
  }
  EXPECT_EQ(call(port(), "DELETE", "/v1/principals/rotate-1/api-keys/" + first_id, second).status, 204);
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", first).status, 401);
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", second).status, 200);
  // A principal cannot manage another one's keys.
  const auto other = create("rotate-2", "third-party-system");
  EXPECT_EQ(call(port(), "POST", "/v1/principals/rotate-1/api-keys", other, "{}").status, 403);
}

TEST_F(PrincipalsTest, ExpiredKeysAreRefusedAtIssue) {
  create("expire-1", "twin-system");
  auto r = call(port(), "POST", "/v1/principals/expire-1/api-keys", kAdmin,
                R"({"expires":"2001-01-01T00:00:00Z"})");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.json().at("errors").at(0).at("pointer"), "/expires");
}

TEST_F(PrincipalsTest, ListsPageWithCursors) {
  for (int i = 0; i < 7; ++i) create("page-" + std::to_string(i), "twin-system", R"(,"api_key":false)");
  std::set<std::string> seen;
  std::string path = "/v1/principals?limit=3";
  int pages = 0;
  for (; pages < 100; ++pages) {
    auto r = call(port(), "GET", path, kAdmin);
    ASSERT_EQ(r.status, 200);
    auto body = r.json().as_object();
    for (const auto& p : body.at("items").as_array()) {
      EXPECT_TRUE(seen.insert(std::string(p.at("id").as_string())).second);
      EXPECT_LE(body.at("items").as_array().size(), 3u);
    }
    if (!body.contains("next_cursor")) {
      EXPECT_TRUE(r.header("Link").empty());
      break;
    }
    EXPECT_NE(r.header("Link").find("rel=\"next\""), std::string::npos);
    path = "/v1/principals?limit=3&cursor=" + std::string(body.at("next_cursor").as_string());
  }
  for (int i = 0; i < 7; ++i) EXPECT_TRUE(seen.contains("page-" + std::to_string(i)));
  EXPECT_EQ(call(port(), "GET", "/v1/principals?limit=0", kAdmin).status, 400);
  auto bad = call(port(), "GET", "/v1/principals?cursor=zz", kAdmin);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json().at("errors").at(0).at("parameter"), "cursor");
}

TEST_F(PrincipalsTest, JwtBearerTokensAuthenticateRegisteredSubjects) {
  create("jwt-sub", "metaverse-system");
  const auto now =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  boost::json::object claims{
      {"sub", "jwt-sub"}, {"iss", "https://idp.test"}, {"aud", "twinbridge"}, {"exp", now + 300}};
  auto me = call(port(), "GET", "/v1/principals/me", hs256_token(claims, kJwtSecret));
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.json().at("credential"), "jwt:k1");

  auto expired = claims;
  expired["exp"] = now - 3600;
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", hs256_token(expired, kJwtSecret)).status, 401);
  auto wrong_iss = claims;
  wrong_iss["iss"] = "https://evil.test";
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", hs256_token(wrong_iss, kJwtSecret)).status, 401);
  auto unknown = claims;
  unknown["sub"] = "nobody";
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", hs256_token(unknown, kJwtSecret)).status, 401);
  EXPECT_EQ(
      call(port(), "GET", "/v1/principals/me", hs256_token(claims, "another-secret-of-32-bytes-length!"))
          .status,
      401);
  const auto none = core::base64url_encode(R"({"alg":"none"})") + "." +
                    core::base64url_encode(boost::json::serialize(claims)) + ".";
  EXPECT_EQ(call(port(), "GET", "/v1/principals/me", none).status, 401);
}

TEST_F(PrincipalsTest, EveryChangeIsAudited) {
  const auto key = create("audit-1", "twin-system");
  call(port(), "PATCH", "/v1/principals/audit-1", kAdmin, R"({"name":"audited"})",
       {{"Content-Type", "application/merge-patch+json"}, {"X-Request-Id", "audit-req-1"}});
  call(port(), "POST", "/v1/principals/audit-1/api-keys", key, "{}");
  call(port(), "DELETE", "/v1/principals/audit-1", kAdmin);
  // A failed change leaves no trace.
  call(port(), "POST", "/v1/principals", kAdmin, R"({"id":"audit-1","kind":"nope","name":"x"})");
  auto r = call(port(), "GET", "/v1/audit?target_id=audit-1", kAdmin);
  ASSERT_EQ(r.status, 200);
  std::vector<std::string> actions;
  const auto page = r.json();
  for (const auto& e : page.at("items").as_array()) {
    actions.emplace_back(e.at("action").as_string());
    if (e.at("action") == "principal.update") {
      EXPECT_EQ(e.at("actor"), "twinbridge:admin-token");
      EXPECT_EQ(e.at("request_id"), "audit-req-1");
    }
    if (e.at("action") == "api-key.create") {
      EXPECT_EQ(e.at("actor"), "audit-1");
    }
  }
  EXPECT_EQ(actions, (std::vector<std::string>{"principal.create", "principal.update", "api-key.create",
                                               "principal.delete"}));
  EXPECT_EQ(call(port(), "GET", "/v1/audit?actor=audit-1", kAdmin).json().at("items").as_array().size(), 1u);
  EXPECT_EQ(call(port(), "GET", "/v1/audit?bogus=1", kAdmin).status, 400);
}

}  // namespace
}  // namespace twinbridge::testing
