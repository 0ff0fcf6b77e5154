// Ownership never passes silently (README "Security model"): a principal that owns registrations is not
// deleted (409 naming them) until an operator transfers them (POST /v1/principals/{id}/transfer) or deletes
// them, and the id of a deleted principal is never given to another one, also after a restart.

#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include <csignal>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

const std::vector<std::pair<std::string, std::string>> kMerge = {
    {"Content-Type", "application/merge-patch+json"}};

std::string td(const std::string& id) {
  return boost::json::serialize(
      boost::json::object{{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
                          {"id", id},
                          {"title", "Lamp"},
                          {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
                          {"security", "nosec_sc"}});
}

std::string twin_system(const std::string& id, const std::string& twin) {
  return R"({"id":")" + id +
         R"(","type":"factory","name":"plant","endpoints":{"base_url":"https://plant.example"},"twins":[)" +
         td(twin) + "]}";
}

std::string third_party(const std::string& id) {
  return R"({"id":")" + id +
         R"(","type":"payment","name":"pay","service_charge":{"model":"per-call","amount":0.01,)"
         R"("currency":"EUR","unit":"call"},"service_level":{"availability":99.9},)"
         R"("apis":[{"name":"charge","method":"POST","path":"/charges"}],)"
         R"("endpoints":{"base_url":"https://pay.example/api"}})";
}

class OwnershipTest : public SharedServerTest {};

TEST_F(OwnershipTest, AnOwnerIsDeletedOnlyAfterItsRegistrationsAreTransferred) {
  const auto owner = principal("own-ts", "twin-system");
  const auto heir = principal("heir-ts", "twin-system");
  const auto stranger = principal("heir-mv", "metaverse-system");
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", owner, twin_system("own-sys", "urn:own:1")).status, 201);
  ASSERT_EQ(call(port(), "PUT", "/things/urn:own:dir", owner, td("urn:own:dir"), kTd).status, 201);

  auto refused = call(port(), "DELETE", "/v1/principals/own-ts", kAdmin);
  ASSERT_EQ(refused.status, 409) << refused.body;
  const std::string detail(refused.json().at("detail").as_string());
  for (const char* part : {"twin-system 'own-sys'", "directory twin 'urn:own:dir'", "1 system",
                           "POST /v1/principals/own-ts/transfer"}) {
    EXPECT_NE(detail.find(part), std::string::npos) << detail;
  }
  EXPECT_EQ(call(port(), "GET", "/v1/principals/own-ts", kAdmin).status, 200);

  // Who may transfer, and to whom.
  EXPECT_EQ(call(port(), "POST", "/v1/principals/own-ts/transfer", owner, R"({"to":"heir-ts"})").status, 403);
  auto to_metaverse = call(port(), "POST", "/v1/principals/own-ts/transfer", kAdmin, R"({"to":"heir-mv"})");
  ASSERT_EQ(to_metaverse.status, 422) << to_metaverse.body;
  EXPECT_EQ(to_metaverse.json().at("errors").at(0).at("pointer"), "/to");
  auto to_nobody = call(port(), "POST", "/v1/principals/own-ts/transfer", kAdmin, R"({"to":"nobody"})");
  ASSERT_EQ(to_nobody.status, 422) << to_nobody.body;
  EXPECT_EQ(to_nobody.json().at("errors").at(0).at("pointer"), "/to");
  EXPECT_EQ(
      call(port(), "POST", "/v1/principals/own-ts/transfer", kAdmin, R"({"to":"heir-ts","x":1})").status,
      422);
  EXPECT_EQ(call(port(), "POST", "/v1/principals/nobody/transfer", kAdmin, R"({"to":"heir-ts"})").status,
            404);

  auto moved = call(port(), "POST", "/v1/principals/own-ts/transfer", kAdmin, R"({"to":"heir-ts"})");
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(moved.json().at("system_count"), 1);
  EXPECT_EQ(moved.json().at("twin_count"), 1);
  EXPECT_EQ(moved.json().at("systems").at(0).at("id"), "own-sys");
  EXPECT_EQ(moved.json().at("twins").at(0), "urn:own:dir");

  auto sys = call(port(), "GET", "/v1/twin-systems/own-sys", kAdmin);
  EXPECT_EQ(sys.json().at("owner"), "heir-ts");
  EXPECT_EQ(sys.json().at("version"), 2);
  // The heir holds the system, its twins and the directory twin; the old owner holds nothing.
  EXPECT_EQ(call(port(), "PATCH", "/things/urn:own:dir", heir, R"({"title":"Heir's"})", kMerge).status, 204);
  EXPECT_EQ(call(port(), "PATCH", "/things/urn:own:1", heir, R"({"title":"Heir's"})", kMerge).status, 204);
  EXPECT_EQ(call(port(), "PATCH", "/things/urn:own:dir", owner, R"({"title":"Mine"})", kMerge).status, 403);
  EXPECT_EQ(call(port(), "PATCH", "/v1/twin-systems/own-sys", owner, R"({"name":"Mine"})", kMerge).status,
            403);
  EXPECT_EQ(call(port(), "PATCH", "/v1/twin-systems/own-sys", stranger, R"({"name":"x"})", kMerge).status,
            403);

  auto audit = call(port(), "GET", "/v1/audit?action=principal.transfer&target_id=own-ts", kAdmin);
  ASSERT_EQ(audit.status, 200) << audit.body;
  ASSERT_EQ(audit.json().at("items").as_array().size(), 1u);
  EXPECT_EQ(audit.json().at("items").at(0).at("detail").at("to"), "heir-ts");

  EXPECT_EQ(call(port(), "DELETE", "/v1/principals/own-ts", kAdmin).status, 204);
}

TEST_F(OwnershipTest, AnOwnerWhoseRegistrationsWereDeletedMayBeDeleted) {
  const auto owner = principal("own-tp", "third-party-system");
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", owner, third_party("own-pay")).status, 201);
  EXPECT_EQ(call(port(), "DELETE", "/v1/principals/own-tp", kAdmin).status, 409);
  EXPECT_EQ(call(port(), "DELETE", "/v1/third-party-systems/own-pay", kAdmin).status, 204);
  EXPECT_EQ(call(port(), "DELETE", "/v1/principals/own-tp", kAdmin).status, 204);
}

TEST_F(OwnershipTest, ADeletedPrincipalsIdIsNeverReusedEvenAfterARestart) {
  principal("reused", "twin-system");
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/reused", kAdmin).status, 204);
  const std::string again = R"({"id":"reused","kind":"twin-system","name":"newcomer"})";
  auto r = call(port(), "POST", "/v1/principals", kAdmin, again);
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.json().at("errors").at(0).at("pointer"), "/id");
  EXPECT_NE(r.json().at("detail").as_string().find("never reused"), std::string::npos) << r.body;

  ASSERT_EQ(server_->stop(SIGTERM), 0);
  server_ =
      std::make_unique<ServerProcess>(dir_->path(), std::vector<std::string>{},
                                      std::map<std::string, std::string>{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}});
  EXPECT_EQ(call(port(), "POST", "/v1/principals", kAdmin, again).status, 409);
  EXPECT_EQ(call(port(), "GET", "/v1/principals/reused", kAdmin).status, 404);
}

}  // namespace
}  // namespace twinbridge::testing
