// Integration tests of 3rd-party system registration and discovery (FGMV-29 8.2.1 TPSR, 8.2.2 TPSD) over
// HTTP, including steps 1-5 of operational flow 9.1 with real principals of each kind.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <set>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

std::string registration(const std::string& id, const std::string& type, double amount,
                         const std::string& region) {
  boost::json::object doc{
      {"type", type},
      {"name", "system " + id},
      {"properties", {{"region", region}}},
      {"service_charge", {{"model", "per-call"}, {"amount", amount}, {"currency", "EUR"}, {"unit", "call"}}},
      {"service_level", {{"availability", 99.9}, {"latency_ms", 250}}},
      {"apis", boost::json::array{{{"name", "charge"}, {"method", "POST"}, {"path", "/charges"}}}},
      {"endpoints", {{"base_url", "https://" + id + ".example/api"}}}};
  if (!id.empty()) doc["id"] = id;
  return boost::json::serialize(doc);
}

class SystemsTest : public SharedServerTest {};

TEST_F(SystemsTest, PublishesTheRegistrationSchema) {
  auto r = fetch(port(), {"GET", "/schemas/third-party-system.json"});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Content-Type"), "application/schema+json");
  EXPECT_EQ(r.json().at("$id"), "urn:twinbridge:schema:third-party-system");
}

TEST_F(SystemsTest, Flow91Steps1To5RegisterThenDiscover) {
  const auto pay = principal("flow-pay", "third-party-system");
  const auto world = principal("flow-world", "metaverse-system");
  // 1-3: the 3rd-party system registers; the SIF keeps it and answers.
  auto reg = call(port(), "POST", "/v1/third-party-systems", pay,
                  registration("flow-pay-svc", "payment", 0.02, "eu"));
  ASSERT_EQ(reg.status, 201) << reg.body;
  EXPECT_EQ(reg.header("Location"), "/v1/third-party-systems/flow-pay-svc");
  EXPECT_TRUE(reg.header("ETag").starts_with("\"1.")) << reg.header("ETag");  // version 1, status stamp
  const auto stored = reg.json();
  EXPECT_EQ(stored.at("owner"), "flow-pay");
  EXPECT_EQ(stored.at("kind"), "third-party-system");
  EXPECT_EQ(stored.at("status").at("state"), "unknown");
  // 4-5: the metaverse system searches by criteria and gets it.
  auto found =
      call(port(), "GET",
           "/v1/third-party-systems?type=payment&filter=%24%5B%3F%40.service_charge.amount%20%3C%200.05%5D",
           world);
  ASSERT_EQ(found.status, 200) << found.body;
  const auto page = found.json();
  ASSERT_EQ(page.at("items").as_array().size(), 1u);
  EXPECT_EQ(page.at("items").at(0).at("id"), "flow-pay-svc");
  // A metaverse system discovers but does not register.
  EXPECT_EQ(
      call(port(), "POST", "/v1/third-party-systems", world, registration("", "payment", 1, "eu")).status,
      403);
}

TEST_F(SystemsTest, ValidationReportsEveryBadFieldWithItsPointer) {
  auto r = call(
      port(), "POST", "/v1/third-party-systems", kAdmin,
      R"({"type":"Bad Type","name":"x","service_charge":{"model":"per-call"},"service_level":{},)"
      R"("apis":[{"name":"a","method":"FETCH","path":"x"}],"endpoints":{"base_url":"nope"},"colour":1})");
  ASSERT_EQ(r.status, 422) << r.body;
  std::set<std::string> pointers;
  const auto problem = r.json();
  for (const auto& e : problem.at("errors").as_array())
    pointers.insert(std::string(e.at("pointer").as_string()));
  for (const char* p : {"/type", "/service_charge/amount", "/service_level/availability", "/apis/0/method",
                        "/apis/0/path", "/endpoints/base_url", "/colour"}) {
    EXPECT_TRUE(pointers.contains(p)) << p << " missing in " << r.body;
  }
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems?type=Bad%20Type", kAdmin)
                .json()
                .at("items")
                .as_array()
                .size(),
            0u);
}

TEST_F(SystemsTest, RefusesServerMaintainedMembersAndDuplicateIds) {
  auto doc = boost::json::parse(registration("dup-svc", "logistics", 1, "us")).as_object();
  doc["status"] = boost::json::object{{"state", "up"}};
  EXPECT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin, boost::json::serialize(doc)).status, 422);
  ASSERT_EQ(
      call(port(), "POST", "/v1/third-party-systems", kAdmin, registration("dup-svc", "logistics", 1, "us"))
          .status,
      201);
  auto again =
      call(port(), "POST", "/v1/third-party-systems", kAdmin, registration("dup-svc", "logistics", 1, "us"));
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.json().at("errors").at(0).at("pointer"), "/id");
}

TEST_F(SystemsTest, OnlyTheOwnerOrAnOperatorChangesARegistration) {
  const auto owner = principal("own-a", "third-party-system");
  const auto other = principal("own-b", "third-party-system");
  ASSERT_EQ(
      call(port(), "POST", "/v1/third-party-systems", owner, registration("own-svc", "cad", 5, "eu")).status,
      201);
  const std::vector<std::pair<std::string, std::string>> patch = {
      {"Content-Type", "application/merge-patch+json"}};
  EXPECT_EQ(
      call(port(), "PATCH", "/v1/third-party-systems/own-svc", other, R"({"name":"hijacked"})", patch).status,
      403);
  EXPECT_EQ(call(port(), "DELETE", "/v1/third-party-systems/own-svc", other).status, 403);
  auto mine = call(port(), "PATCH", "/v1/third-party-systems/own-svc", owner,
                   R"({"name":"renamed","properties":{"region":null,"tier":"gold"}})", patch);
  ASSERT_EQ(mine.status, 200) << mine.body;
  EXPECT_TRUE(mine.header("ETag").starts_with("\"2.")) << mine.header("ETag");
  EXPECT_EQ(mine.json().at("name"), "renamed");
  EXPECT_EQ(mine.json().at("properties"), boost::json::parse(R"({"tier":"gold"})"));
  auto admin =
      call(port(), "PATCH", "/v1/third-party-systems/own-svc", kAdmin, R"({"description":"checked"})", patch);
  EXPECT_EQ(admin.status, 200);
  EXPECT_EQ(admin.json().at("owner"), "own-a");
}

TEST_F(SystemsTest, DiscoverySortsAndPagesInThatOrder) {
  for (const auto& [id, amount] :
       std::vector<std::pair<std::string, double>>{{"sort-b", 2}, {"sort-c", 1}, {"sort-a", 3}}) {
    auto doc = boost::json::parse(registration(id, "sortable", amount, "eu")).as_object();
    doc["name"] = "name of " + id;
    ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin, boost::json::serialize(doc)).status,
              201);
  }
  auto ids = [&](const std::string& query) {
    auto r = call(port(), "GET", "/v1/third-party-systems?type=sortable&" + query, kAdmin);
    EXPECT_EQ(r.status, 200) << r.body;
    const auto page = r.json();
    std::vector<std::string> out;
    for (const auto& item : page.at("items").as_array()) out.emplace_back(item.at("id").as_string());
    std::string next =
        page.as_object().contains("next_cursor") ? std::string(page.at("next_cursor").as_string()) : "";
    return std::pair(out, next);
  };
  auto [first, cursor] = ids("sort=-name&limit=2");
  EXPECT_EQ(first, (std::vector<std::string>{"sort-c", "sort-b"}));
  auto [rest, end] = ids("sort=-name&limit=2&cursor=" + cursor);
  EXPECT_EQ(rest, (std::vector<std::string>{"sort-a"}));
  EXPECT_TRUE(end.empty());
  EXPECT_EQ(ids("sort=created").first, (std::vector<std::string>{"sort-b", "sort-c", "sort-a"}));
  EXPECT_EQ(ids("sort=-id").first, (std::vector<std::string>{"sort-c", "sort-b", "sort-a"}));
  // With a filter, the order holds across the pages the filter walks.
  auto [cheap, more] = ids("sort=name&limit=1&filter=%24%5B%3F%40.service_charge.amount%20%3C%203%5D");
  EXPECT_EQ(cheap, (std::vector<std::string>{"sort-b"}));
  EXPECT_EQ(
      ids("sort=name&limit=1&filter=%24%5B%3F%40.service_charge.amount%20%3C%203%5D&cursor=" + more).first,
      (std::vector<std::string>{"sort-c"}));
  auto bad = call(port(), "GET", "/v1/third-party-systems?sort=price", kAdmin);
  ASSERT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json().at("errors").at(0).at("parameter"), "sort");
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems?sort=name&cursor=6162", kAdmin).status, 400);
}

TEST_F(SystemsTest, ReplaceAndDeleteHonourIfMatch) {
  ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin, registration("cond-svc", "cad", 5, "eu"))
                .status,
            201);
  auto stale = call(port(), "PUT", "/v1/third-party-systems/cond-svc", kAdmin,
                    registration("cond-svc", "cad", 6, "eu"), {{"If-Match", "\"7\""}});
  EXPECT_EQ(stale.status, 412);
  auto put = call(port(), "PUT", "/v1/third-party-systems/cond-svc", kAdmin,
                  registration("cond-svc", "cad", 6, "eu"), {{"If-Match", "\"1\""}});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.json().at("service_charge").at("amount").to_number<double>(), 6.0);
  auto other_id =
      call(port(), "PUT", "/v1/third-party-systems/cond-svc", kAdmin, registration("x-svc", "cad", 6, "eu"));
  EXPECT_EQ(other_id.status, 422);
  EXPECT_EQ(
      call(port(), "DELETE", "/v1/third-party-systems/cond-svc", kAdmin, "", {{"If-Match", "\"1\""}}).status,
      412);
  EXPECT_EQ(
      call(port(), "DELETE", "/v1/third-party-systems/cond-svc", kAdmin, "", {{"If-Match", "\"2\""}}).status,
      204);
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems/cond-svc", kAdmin).status, 404);
  auto audit = call(port(), "GET", "/v1/audit?target_id=cond-svc", kAdmin).json();
  std::vector<std::string> actions;
  for (const auto& e : audit.at("items").as_array()) actions.emplace_back(e.at("action").as_string());
  EXPECT_EQ(actions, (std::vector<std::string>{"third-party-system.register", "third-party-system.replace",
                                               "third-party-system.deregister"}));
}

TEST_F(SystemsTest, DiscoveryFiltersAndPages) {
  for (int i = 0; i < 12; ++i) {
    const auto id = "disc-" + std::to_string(100 + i);
    ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", kAdmin,
                   registration(id, "analytics", i, i % 2 == 0 ? "eu" : "us"))
                  .status,
              201);
  }
  // JSONPath filter with pagination: 6 eu systems, 4 per page.
  std::set<std::string> seen;
  std::string path = "/v1/third-party-systems?type=analytics&limit=4&filter=" +
                     std::string("%24%5B%3F%40.properties.region%20%3D%3D%20%27eu%27%5D");
  for (int pages = 0; pages < 10; ++pages) {
    auto r = call(port(), "GET", path, kAdmin);
    ASSERT_EQ(r.status, 200) << r.body;
    const auto body = r.json();
    for (const auto& item : body.at("items").as_array()) {
      EXPECT_EQ(item.at("properties").at("region"), "eu");
      seen.insert(std::string(item.at("id").as_string()));
    }
    if (!body.as_object().contains("next_cursor")) break;
    path =
        "/v1/"
        "third-party-systems?type=analytics&limit=4&filter=%24%5B%3F%40.properties.region%20%3D%3D%20%27eu%"
        "27%5D"
        "&cursor=" +
        std::string(body.at("next_cursor").as_string());
  }
  EXPECT_EQ(seen.size(), 6u);
  // Functions of RFC 9535 work in filters.
  auto fn = call(port(), "GET",
                 "/v1/"
                 "third-party-systems?type=analytics&filter=%24%5B%3Fmatch(%40.name%2C%20%27system%20disc-10%"
                 "5B0-3%5D%27)%5D",
                 kAdmin);
  ASSERT_EQ(fn.status, 200) << fn.body;
  EXPECT_EQ(fn.json().at("items").as_array().size(), 4u);
  // Bad input in queries.
  auto bad = call(port(), "GET", "/v1/third-party-systems?filter=%24%5B%3F%40.x%20%3D%3D", kAdmin);
  ASSERT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json().at("errors").at(0).at("parameter"), "filter");
  EXPECT_NE(std::string(bad.json().at("detail").as_string()).find("offset"), std::string::npos);
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems?status=sleepy", kAdmin).status, 400);
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems?colour=red", kAdmin).status, 400);
  // Everything registered so far is in status unknown, none is down.
  auto unknown =
      call(port(), "GET", "/v1/third-party-systems?type=analytics&status=unknown&exclude_down=true", kAdmin);
  EXPECT_EQ(unknown.json().at("items").as_array().size(), 12u);
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems?type=analytics&status=down", kAdmin)
                .json()
                .at("items")
                .as_array()
                .size(),
            0u);
}

TEST_F(SystemsTest, UnknownSystemIs404) {
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems/nope", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "DELETE", "/v1/third-party-systems/nope", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "PATCH", "/v1/third-party-systems/nope", kAdmin, "{}",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            404);
}

}  // namespace
}  // namespace twinbridge::testing
