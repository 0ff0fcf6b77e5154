// Integration tests of digital twin system registration with its list of twins (FGMV-29 8.3.1 DTSR) and
// discovery of systems and twins (8.3.2 DTSD) over HTTP, including steps 1-5 of operational flow 9.2.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <set>
#include <thread>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

boost::json::object lamp(const std::string& id, bool with_temperature = false) {
  boost::json::object td{
      {"@context", "https://www.w3.org/2022/wot/td/v1.1"},
      {"title", "Lamp " + id},
      {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
      {"security", "nosec_sc"},
      {"properties",
       {{"on",
         {{"type", "boolean"}, {"forms", boost::json::array{{{"href", "https://plant.example/on"}}}}}}}},
      {"actions", {{"toggle", {{"forms", boost::json::array{{{"href", "https://plant.example/toggle"}}}}}}}},
      {"twinbridge:pose", {{"position", boost::json::array{1, 2, 3}}}}};
  if (!id.empty()) td["id"] = id;
  if (with_temperature) {
    td["properties"].as_object()["temperature"] =
        boost::json::object{{"type", "number"},
                            {"unit", "celsius"},
                            {"forms", boost::json::array{{{"href", "https://plant.example/t"}}}}};
  }
  return td;
}

std::string system_doc(const std::string& id, boost::json::array twins) {
  boost::json::object doc{{"id", id},
                          {"type", "factory"},
                          {"name", "Plant " + id},
                          {"properties", {{"city", "Daejeon"}}},
                          {"endpoints", {{"base_url", "https://plant.example"}}}};
  if (!twins.empty()) doc["twins"] = std::move(twins);
  return boost::json::serialize(doc);
}

class TwinsTest : public SharedServerTest {};

TEST_F(TwinsTest, Flow92Steps1To5RegisterWithTwinsThenDiscover) {
  const auto plant = principal("flow-plant", "twin-system");
  const auto world = principal("flow-world-2", "metaverse-system");
  // 1-3: the DT system registers with its list of twins; the DTIF keeps both and answers.
  auto reg = call(port(), "POST", "/v1/twin-systems", plant,
                  system_doc("plant-7", {lamp("urn:dev:ops:lamp-1"), lamp("urn:dev:ops:lamp-2", true)}));
  ASSERT_EQ(reg.status, 201) << reg.body;
  EXPECT_EQ(reg.json().at("owner"), "flow-plant");
  EXPECT_FALSE(reg.json().as_object().contains("twins"));
  // 4-5: the metaverse system searches systems by criteria, then their twins.
  auto systems = call(
      port(), "GET",
      "/v1/twin-systems?type=factory&filter=%24%5B%3F%40.properties.city%20%3D%3D%20%27Daejeon%27%5D", world);
  ASSERT_EQ(systems.status, 200) << systems.body;
  ASSERT_EQ(systems.json().at("items").as_array().size(), 1u);
  auto twins = call(port(), "GET", "/v1/twin-systems/plant-7/twins", world);
  ASSERT_EQ(twins.status, 200);
  const auto list = twins.json();
  ASSERT_EQ(list.at("items").as_array().size(), 2u);
  const auto& first = list.at("items").at(0);
  EXPECT_EQ(first.at("id"), "urn:dev:ops:lamp-1");
  EXPECT_EQ(first.at("twinbridge:system"), "plant-7");
  EXPECT_EQ(first.at("twinbridge:pose").at("frame"), "world");
  EXPECT_TRUE(first.at("registration").as_object().contains("created"));
  auto hot = call(port(), "GET", "/v1/twins?filter=%24%5B%3F%40.properties.temperature%5D", world);
  ASSERT_EQ(hot.status, 200) << hot.body;
  ASSERT_EQ(hot.json().at("items").as_array().size(), 1u);
  EXPECT_EQ(hot.json().at("items").at(0).at("id"), "urn:dev:ops:lamp-2");
  auto one = call(port(), "GET", "/v1/twins/urn%3Adev%3Aops%3Alamp-2", world);
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(one.header("Content-Type"), "application/td+json");
}

TEST_F(TwinsTest, InvalidTwinsAreReportedWithTheirPointersAndNothingIsStored) {
  auto bad = lamp("urn:dev:ops:bad-1");
  bad.erase("security");
  bad["properties"].as_object()["on"].as_object()["forms"] = boost::json::array{boost::json::object{}};
  auto r = call(port(), "POST", "/v1/twin-systems", kAdmin,
                system_doc("plant-bad", {lamp("urn:dev:ops:ok-1"), bad}));
  ASSERT_EQ(r.status, 422) << r.body;
  std::set<std::string> pointers;
  const auto problem = r.json();
  for (const auto& e : problem.at("errors").as_array())
    pointers.insert(std::string(e.at("pointer").as_string()));
  EXPECT_TRUE(pointers.contains("/twins/1/security")) << r.body;
  EXPECT_TRUE(pointers.contains("/twins/1/properties/on/forms/0/href")) << r.body;
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/plant-bad", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/twins/urn%3Adev%3Aops%3Aok-1", kAdmin).status, 404);
}

TEST_F(TwinsTest, ATwinIdClashingWithAnotherSystemsTwinIsAConflict) {
  ASSERT_EQ(
      call(port(), "POST", "/v1/twin-systems", kAdmin, system_doc("plant-a", {lamp("urn:dev:ops:shared")}))
          .status,
      201);
  auto clash =
      call(port(), "POST", "/v1/twin-systems", kAdmin, system_doc("plant-b", {lamp("urn:dev:ops:shared")}));
  ASSERT_EQ(clash.status, 409) << clash.body;
  EXPECT_EQ(clash.json().at("errors").at(0).at("pointer"), "/twins/0/id");
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/plant-b", kAdmin).status, 404);  // nothing half-registered
  auto twice = call(port(), "POST", "/v1/twin-systems", kAdmin,
                    system_doc("plant-c", {lamp("urn:dev:ops:twice"), lamp("urn:dev:ops:twice")}));
  EXPECT_EQ(twice.status, 422);
}

TEST_F(TwinsTest, TwinsAreAddedReplacedAndRemovedOneByOne) {
  const auto plant = principal("one-by-one", "twin-system");
  const auto other = principal("not-the-owner", "twin-system");
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", plant, system_doc("plant-obo", {})).status, 201);
  auto added = call(port(), "POST", "/v1/twin-systems/plant-obo/twins", plant,
                    boost::json::serialize(lamp("")), {{"Content-Type", "application/td+json"}});
  ASSERT_EQ(added.status, 201) << added.body;
  const std::string id(added.json().at("id").as_string());
  EXPECT_TRUE(id.starts_with("urn:uuid:"));
  const auto location = added.header("Location");
  EXPECT_EQ(location, "/v1/twin-systems/plant-obo/twins/" + id);  // ':' needs no escaping in a segment
  EXPECT_EQ(call(port(), "POST", "/v1/twin-systems/plant-obo/twins", other, boost::json::serialize(lamp("")))
                .status,
            403);
  auto replacement = lamp("", true);
  auto put =
      call(port(), "PUT", location, plant, boost::json::serialize(replacement), {{"If-Match", "\"1\""}});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.header("ETag"), "\"2\"");
  EXPECT_TRUE(put.json().at("properties").as_object().contains("temperature"));
  auto other_id = lamp("urn:dev:ops:renamed");
  EXPECT_EQ(call(port(), "PUT", location, plant, boost::json::serialize(other_id)).status, 422);
  EXPECT_EQ(call(port(), "DELETE", location, plant, "", {{"If-Match", "\"1\""}}).status, 412);
  EXPECT_EQ(call(port(), "DELETE", location, plant).status, 204);
  EXPECT_EQ(call(port(), "GET", location, plant).status, 404);
  // A twin system cannot replace its twins through the system resource.
  auto via_system = call(port(), "PATCH", "/v1/twin-systems/plant-obo", plant, R"({"twins":[]})",
                         {{"Content-Type", "application/merge-patch+json"}});
  EXPECT_EQ(via_system.status, 422);
}

TEST_F(TwinsTest, RemovingASystemRemovesItsTwins) {
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", kAdmin,
                 system_doc("plant-gone", {lamp("urn:dev:ops:gone-1"), lamp("urn:dev:ops:gone-2")}))
                .status,
            201);
  EXPECT_EQ(call(port(), "GET", "/v1/twins?system=plant-gone", kAdmin).json().at("items").as_array().size(),
            2u);
  EXPECT_EQ(call(port(), "DELETE", "/v1/twin-systems/plant-gone", kAdmin).status, 204);
  EXPECT_EQ(call(port(), "GET", "/v1/twins?system=plant-gone", kAdmin).json().at("items").as_array().size(),
            0u);
  EXPECT_EQ(call(port(), "GET", "/v1/twins/urn%3Adev%3Aops%3Agone-1", kAdmin).status, 404);
  // The id is free again.
  EXPECT_EQ(
      call(port(), "POST", "/v1/twin-systems", kAdmin, system_doc("plant-new", {lamp("urn:dev:ops:gone-1")}))
          .status,
      201);
}

TEST_F(TwinsTest, DiscoverySortsAndPagesInThatOrder) {
  const auto plant = principal("sort-plant", "twin-system");
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", plant,
                 system_doc("sort-plant-1",
                            {lamp("urn:dev:sort:c"), lamp("urn:dev:sort:a"), lamp("urn:dev:sort:b")}))
                .status,
            201);
  auto titles = [&](const std::string& query) {
    auto r = call(port(), "GET", "/v1/twins?system=sort-plant-1&" + query, plant);
    EXPECT_EQ(r.status, 200) << r.body;
    const auto page = r.json();
    std::vector<std::string> out;
    for (const auto& t : page.at("items").as_array()) out.emplace_back(t.at("title").as_string());
    std::string next =
        page.as_object().contains("next_cursor") ? std::string(page.at("next_cursor").as_string()) : "";
    return std::pair(out, next);
  };
  auto [first, cursor] = titles("sort=-title&limit=2");
  EXPECT_EQ(first, (std::vector<std::string>{"Lamp urn:dev:sort:c", "Lamp urn:dev:sort:b"}));
  ASSERT_FALSE(cursor.empty());
  auto [rest, end] = titles("sort=-title&limit=2&cursor=" + cursor);
  EXPECT_EQ(rest, (std::vector<std::string>{"Lamp urn:dev:sort:a"}));
  EXPECT_TRUE(end.empty());
  EXPECT_EQ(titles("sort=title").first,
            (std::vector<std::string>{"Lamp urn:dev:sort:a", "Lamp urn:dev:sort:b", "Lamp urn:dev:sort:c"}));
  auto bad = call(port(), "GET", "/v1/twins?sort=colour", plant);
  ASSERT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json().at("errors").at(0).at("parameter"), "sort");
}

TEST_F(TwinsTest, TwinsAddedWhileTheirSystemIsDeregisteredLeaveNothingBehind) {
  const auto plant = principal("race-plant", "twin-system");
  for (int round = 0; round < 5; ++round) {
    const auto system = "race-" + std::to_string(round);
    ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", plant, system_doc(system, {})).status, 201);
    std::vector<std::string> created;
    std::atomic<int> acknowledged{0};
    std::thread adder([&] {
      for (int i = 0; i < 20; ++i) {
        const auto id = "urn:dev:" + system + ":" + std::to_string(i);
        auto r = call(port(), "POST", "/v1/twin-systems/" + system + "/twins", plant,
                      boost::json::serialize(lamp(id)));
        if (r.status == 201) {
          created.push_back(id);
          ++acknowledged;
        }
        if (r.status == 404) break;  // the system is gone
        EXPECT_TRUE(r.status == 201 || r.status == 404) << r.status << " " << r.body;
      }
    });
    // Deregister while twins are being added: after the first few are in.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (acknowledged < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    EXPECT_EQ(call(port(), "DELETE", "/v1/twin-systems/" + system, plant).status, 204);
    adder.join();
    // Whatever was acknowledged before the deregistration went with it; nothing was added after it.
    auto left = call(port(), "GET", "/v1/twins?system=" + system, plant);
    ASSERT_EQ(left.status, 200);
    EXPECT_TRUE(left.json().at("items").as_array().empty()) << left.body;
    for (const auto& id : created) EXPECT_EQ(call(port(), "GET", "/things/" + id, plant).status, 404) << id;
  }
}

TEST_F(TwinsTest, UnknownSystemsAndTwinsAre404) {
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/nowhere/twins", kAdmin).status, 404);
  EXPECT_EQ(
      call(port(), "POST", "/v1/twin-systems/nowhere/twins", kAdmin, boost::json::serialize(lamp(""))).status,
      404);
  EXPECT_EQ(call(port(), "GET", "/v1/twins/urn%3Anothing", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/twins?filter=%24%5B", kAdmin).status, 400);
}

}  // namespace
}  // namespace twinbridge::testing
