// Integration tests of the W3C WoT Discovery directory API (/things, /search/jsonpath) over HTTP: status
// codes and media types of the Recommendation, registration information and expiry, and one set of twins with
// /v1.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <sstream>
#include <thread>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

class ThingsTest : public SharedServerTest {};

TEST_F(ThingsTest, AnonymousRegistrationGetsAnIdAndALocation) {
  auto r = call(port(), "POST", "/things", kAdmin, boost::json::serialize(sensor("anon")), kTd);
  ASSERT_EQ(r.status, 201) << r.body;
  const auto location = r.header("Location");
  ASSERT_TRUE(location.starts_with("/things/urn:uuid:")) << location;
  auto td = call(port(), "GET", location, kAdmin);
  ASSERT_EQ(td.status, 200);
  EXPECT_EQ(td.header("Content-Type"), "application/td+json");
  EXPECT_EQ("/things/" + std::string(td.json().at("id").as_string()), location);
  EXPECT_TRUE(td.json().at("registration").as_object().contains("created"));
  // A TD with an id is not anonymous.
  auto with_id = sensor("x");
  with_id["id"] = "urn:dev:x";
  EXPECT_EQ(call(port(), "POST", "/things", kAdmin, boost::json::serialize(with_id), kTd).status, 400);
}

TEST_F(ThingsTest, PutCreatesThenReplacesPatchAndDeleteAnswer204) {
  const std::string path = "/things/urn:dev:ops:sensor-1";
  auto created = call(port(), "PUT", path, kAdmin, boost::json::serialize(sensor("first")), kTd);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.header("Location"), path);
  auto replaced = call(port(), "PUT", path, kAdmin, boost::json::serialize(sensor("second")), kTd);
  EXPECT_EQ(replaced.status, 204) << replaced.body;
  EXPECT_EQ(call(port(), "GET", path, kAdmin).json().at("title"), "second");
  auto patched = call(port(), "PATCH", path, kAdmin, R"({"title":"third","description":"patched"})",
                      {{"Content-Type", "application/merge-patch+json"}});
  EXPECT_EQ(patched.status, 204) << patched.body;
  auto td = call(port(), "GET", path, kAdmin).json();
  EXPECT_EQ(td.at("title"), "third");
  EXPECT_EQ(td.at("twinbridge:version"), 3);
  // A patch that breaks the TD is refused and changes nothing.
  auto broken = call(port(), "PATCH", path, kAdmin, R"({"security":null})",
                     {{"Content-Type", "application/merge-patch+json"}});
  EXPECT_EQ(broken.status, 400);
  EXPECT_EQ(broken.json().at("errors").at(0).at("pointer"), "/security");
  EXPECT_EQ(call(port(), "DELETE", path, kAdmin).status, 204);
  EXPECT_EQ(call(port(), "GET", path, kAdmin).status, 404);
}

TEST_F(ThingsTest, InvalidTdIs400WithPointers) {
  auto bad = sensor("bad");
  bad.erase("@context");
  bad["properties"].as_object()["temperature"].as_object().erase("forms");
  auto r = call(port(), "PUT", "/things/urn:dev:bad", kAdmin, boost::json::serialize(bad), kTd);
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.header("Content-Type"), "application/problem+json");
  EXPECT_GE(r.json().at("errors").as_array().size(), 2u);
  auto mismatch = sensor("m");
  mismatch["id"] = "urn:dev:other";
  EXPECT_EQ(call(port(), "PUT", "/things/urn:dev:mine", kAdmin, boost::json::serialize(mismatch), kTd).status,
            400);
}

TEST_F(ThingsTest, ListingPagesWithOffsetAndLimit) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(call(port(), "PUT", "/things/urn:dev:list-" + std::to_string(i), kAdmin,
                   boost::json::serialize(sensor("list")), kTd)
                  .status,
              201);
  }
  auto first = call(port(), "GET", "/things?limit=2", kAdmin);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.header("Content-Type"), "application/ld+json");
  EXPECT_EQ(first.json().as_array().size(), 2u);
  EXPECT_EQ(first.header("Link"), "</things?offset=2&limit=2>; rel=\"next\"");
  std::size_t total = 0;
  for (std::size_t offset = 0;; offset += 2) {
    auto page = call(port(), "GET", "/things?offset=" + std::to_string(offset) + "&limit=2", kAdmin);
    total += page.json().as_array().size();
    if (page.header("Link").empty()) break;
  }
  auto all = call(port(), "GET", "/things?limit=1000", kAdmin);
  EXPECT_EQ(total, all.json().as_array().size());
  EXPECT_EQ(call(port(), "GET", "/things?limit=x", kAdmin).status, 400);
}

TEST_F(ThingsTest, SearchJsonPathRunsOverAllTds) {
  auto lamp = sensor("Searchable Lamp");
  ASSERT_EQ(call(port(), "PUT", "/things/urn:dev:search-1", kAdmin, boost::json::serialize(lamp), kTd).status,
            201);
  auto r = call(port(), "GET",
                "/search/jsonpath?query=%24%5B%3F%40.title%20%3D%3D%20%27Searchable%20Lamp%27%5D.id", kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json(), boost::json::parse(R"(["urn:dev:search-1"])"));
  auto bad = call(port(), "GET", "/search/jsonpath?query=%24%5B%3F", kAdmin);
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json().at("errors").at(0).at("parameter"), "query");
  EXPECT_EQ(call(port(), "GET", "/search/jsonpath", kAdmin).status, 400);
}

TEST_F(ThingsTest, ATdWithATtlDisappearsWhenItExpires) {
  auto td = sensor("short-lived");
  td["registration"] = boost::json::object{{"ttl", 2}};
  ASSERT_EQ(call(port(), "PUT", "/things/urn:dev:ttl-1", kAdmin, boost::json::serialize(td), kTd).status,
            201);
  // A patch without "registration" keeps the lifetime.
  ASSERT_EQ(call(port(), "PATCH", "/things/urn:dev:ttl-1", kAdmin, R"({"description":"still short-lived"})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            204);
  auto now = call(port(), "GET", "/things/urn:dev:ttl-1", kAdmin);
  ASSERT_EQ(now.status, 200);
  EXPECT_EQ(now.json().at("registration").at("ttl"), 2);
  EXPECT_TRUE(now.json().at("registration").as_object().contains("expires"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 200;
  while (status == 200 && std::chrono::steady_clock::now() < deadline) {
    status = call(port(), "GET", "/things/urn:dev:ttl-1", kAdmin).status;
    if (status == 200) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(status, 404);
  EXPECT_EQ(call(port(), "GET", "/things?limit=1000", kAdmin).body.find("urn:dev:ttl-1"), std::string::npos);
  // Its id can be registered again.
  EXPECT_EQ(call(port(), "PUT", "/things/urn:dev:ttl-1", kAdmin, boost::json::serialize(sensor("again")), kTd)
                .status,
            201);
  auto too_long = sensor("x");
  too_long["registration"] = boost::json::object{{"ttl", 0}};
  auto r = call(port(), "PUT", "/things/urn:dev:ttl-2", kAdmin, boost::json::serialize(too_long), kTd);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json().at("errors").at(0).at("pointer"), "/registration/ttl");
}

TEST_F(ThingsTest, TwinsOfSystemsAndDirectoryEntriesAreOneSet) {
  auto reg =
      call(port(), "POST", "/v1/principals", kAdmin, R"({"id":"dir-plant","kind":"twin-system","name":"p"})");
  const auto plant = std::string(reg.json().at("api_key").at("token").as_string());
  auto lamp = sensor("system lamp");
  lamp["id"] = "urn:dev:ops:system-lamp";
  boost::json::object system{{"id", "dir-plant-1"},
                             {"type", "factory"},
                             {"name", "p"},
                             {"endpoints", {{"base_url", "https://p.example"}}},
                             {"twins", boost::json::array{lamp}}};
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems", plant, boost::json::serialize(system)).status, 201);
  // The system's twin is in the directory ...
  auto td = call(port(), "GET", "/things/urn:dev:ops:system-lamp", kAdmin);
  ASSERT_EQ(td.status, 200);
  EXPECT_EQ(td.json().at("twinbridge:system"), "dir-plant-1");
  // ... a directory entry is a twin ...
  ASSERT_EQ(
      call(port(), "PUT", "/things/urn:dev:direct", kAdmin, boost::json::serialize(sensor("direct")), kTd)
          .status,
      201);
  EXPECT_EQ(call(port(), "GET", "/v1/twins/urn:dev:direct", kAdmin).status, 200);
  // ... its id cannot be taken by a system's twin, and only the registrant may change it.
  auto clash = sensor("clash");
  clash["id"] = "urn:dev:direct";
  EXPECT_EQ(
      call(port(), "POST", "/v1/twin-systems/dir-plant-1/twins", plant, boost::json::serialize(clash)).status,
      409);
  EXPECT_EQ(call(port(), "DELETE", "/things/urn:dev:direct", plant).status, 403);
  EXPECT_EQ(
      call(port(), "PUT", "/things/urn:dev:ops:system-lamp", plant, boost::json::serialize(lamp), kTd).status,
      204);
}

TEST_F(ThingsTest, TheDirectoryNeedsCredentials) {
  EXPECT_EQ(fetch(port(), {"GET", "/things"}).status, 401);
  EXPECT_EQ(fetch(port(), {"GET", "/search/jsonpath?query=%24"}).status, 401);
}

}  // namespace
}  // namespace twinbridge::testing

namespace twinbridge::testing {
namespace {

TEST_F(ThingsTest, EventsReportCreationsUpdatesAndDeletionsWithDiffs) {
  auto stream = open_events(port(), "/events?diff=true", kAdmin);
  const std::string path = "/things/urn:dev:events-1";
  ASSERT_EQ(call(port(), "PUT", path, kAdmin, boost::json::serialize(sensor("watched")), kTd).status, 201);
  auto created = next_event(*stream);
  ASSERT_TRUE(created);
  EXPECT_EQ(created->type, "thing_created");
  EXPECT_EQ(created->data.at("title"), "watched");  // with diff=true: the whole TD
  ASSERT_EQ(call(port(), "PATCH", path, kAdmin, R"({"title":"renamed"})",
                 {{"Content-Type", "application/merge-patch+json"}})
                .status,
            204);
  auto updated = next_event(*stream);
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->type, "thing_updated");
  EXPECT_EQ(updated->data.at("title"), "renamed");  // the merge patch of the change
  EXPECT_EQ(updated->data.at("id"), "urn:dev:events-1");
  EXPECT_FALSE(updated->data.as_object().contains("security"));  // unchanged members are not in the diff
  ASSERT_EQ(call(port(), "DELETE", path, kAdmin).status, 204);
  auto deleted = next_event(*stream);
  ASSERT_TRUE(deleted);
  EXPECT_EQ(deleted->type, "thing_deleted");
  EXPECT_EQ(deleted->data, boost::json::parse(R"({"id":"urn:dev:events-1"})"));
  EXPECT_LT(std::stoull(created->id), std::stoull(deleted->id));

  // Resuming after the creation on the deletions-only stream replays exactly the deletion.
  auto resumed = open_events(port(), "/events/thing_deleted", kAdmin, created->id);
  auto replay = next_event(*resumed);
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->id, deleted->id);
  EXPECT_EQ(replay->data, boost::json::parse(R"({"id":"urn:dev:events-1"})"));  // without diff: just the id
}

TEST_F(ThingsTest, EventsRefuseBadParameters) {
  EXPECT_EQ(call(port(), "GET", "/events?diff=maybe", kAdmin).status, 400);
  auto bad = call(port(), "GET", "/events", kAdmin, "", {{"Last-Event-ID", "abc"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json().at("errors").at(0).at("header"), "Last-Event-ID");
}

}  // namespace
}  // namespace twinbridge::testing
