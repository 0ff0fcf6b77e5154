// The live stream of twins (dtif/twin_stream.hpp, the protocol; http/routes_stream.cpp, its adapters)
// against the real server: GET /v1/stream (WebSocket) subscribed by ids, by a JSONPath filter and by a saved
// selection; snapshots, changes in version order, twins that join and leave; errors that leave the
// connection usable; what a policy lets a client read, and its changes during a subscription; the end of the
// stream when its credential ends; resume after a seq (also across a restart); live values; a slow consumer
// conflated while a fast one gets every change; GET /v1/stream/events (Server-Sent Events) with
// Last-Event-ID; a deleted twin; streams opened and closed by the hundred. Waits poll with deadlines; the
// server runs with stream.max_subscriptions 3.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <cctype>
#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"
#include "support/ws_client.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

const std::vector<std::pair<std::string, std::string>> kMergePatch = {
    {"Content-Type", "application/merge-patch+json"}};

json::object with_form(json::object affordance) {
  affordance["forms"] = json::array{json::object{{"href", "https://plant.example/p"}}};
  return affordance;
}

// A twin's TD: a number, a string enum, an integer, a free text and an ephemeral number.
json::object device(const std::string& id, const std::string& title = "stream device") {
  json::object properties{
      {"temperature", with_form({{"type", "number"}})},
      {"mode", with_form({{"type", "string"}, {"enum", json::array{"auto", "manual", "off"}}})},
      {"counter", with_form({{"type", "integer"}})},
      {"label", with_form({{"type", "string"}})},
      {"vibration", with_form({{"type", "number"}, {"twinbridge:ephemeral", true}})},
  };
  return {{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
          {"id", id},
          {"title", title},
          {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
          {"security", "nosec_sc"},
          {"properties", std::move(properties)}};
}

struct Key {
  std::string token;
  std::string id;
};

Key issue_on(std::uint16_t port, const std::string& id, const std::string& kind) {
  auto r = call(port, "POST", "/v1/principals", kAdmin,
                R"({"id":")" + id + R"(","kind":")" + kind + R"(","name":")" + id + "\"}");
  EXPECT_EQ(r.status, 201) << r.body;
  if (r.status != 201) return {};
  const auto key = r.json().at("api_key");
  return {std::string(key.at("token").as_string()), std::string(key.at("id").as_string())};
}

// Registers twin system `system` owned by `token` with `twins` (TDs).
void register_on(std::uint16_t port, const std::string& token, const std::string& system, json::array twins) {
  json::object doc{{"id", system},
                   {"type", "factory"},
                   {"name", "Plant " + system},
                   {"twins", std::move(twins)},
                   {"endpoints", {{"base_url", "https://plant.example"}}}};
  auto r = call(port, "POST", "/v1/twin-systems", token, json::serialize(doc));
  ASSERT_EQ(r.status, 201) << r.body;
}

HttpResponse patch_on(std::uint16_t port, const std::string& token, const std::string& twin,
                      const json::object& patch) {
  return call(port, "PATCH", "/v1/twins/" + twin + "/state", token, json::serialize(patch), kMergePatch);
}

json::object properties(json::object values) {
  return {{"properties", std::move(values)}};
}

std::string type_of(const json::object& m) {
  const auto* t = m.if_contains("type");
  return t != nullptr && t->is_string() ? std::string(t->get_string()) : std::string();
}

std::string twin_of(const json::object& m) {
  const auto* t = m.if_contains("twin");
  return t != nullptr && t->is_string() ? std::string(t->get_string()) : std::string();
}

std::int64_t integer(const json::value& v) {
  return v.to_number<std::int64_t>();
}

// The version a state or change message brings its twin to (0 for a live change).
std::int64_t version_of(const json::object& m) {
  if (type_of(m) == "state") return integer(m.at("state").at("version"));
  if (const auto* v = m.if_contains("version")) return integer(*v);
  return 0;
}

std::string percent_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == ':') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// One connection to GET /v1/stream, reading JSON messages with deadlines.
class Stream {
 public:
  Stream(std::uint16_t port, const std::string& token, WsOptions options = {})
      : ws_(port, "/v1/stream", with_token(token, std::move(options))) {}

  bool accepted() const { return ws_.accepted(); }
  WsClient& ws() { return ws_; }

  void send(const json::object& command) { EXPECT_TRUE(ws_.send(json::serialize(command))); }
  void send_text(const std::string& text) { EXPECT_TRUE(ws_.send(text)); }

  // The next message; an empty object, and a test failure, when none arrives within `within`.
  json::object next(std::chrono::milliseconds within = 20s) {
    auto text = ws_.read(within);
    if (!text) {
      ADD_FAILURE() << "no message within the deadline"
                    << (ws_.closed() ? " (closed with " + std::to_string(ws_.close_code().value_or(-1)) + ")"
                                     : std::string());
      return {};
    }
    auto v = json::parse(*text);
    if (!v.is_object()) {
      ADD_FAILURE() << "a message that is not a JSON object: " << *text;
      return {};
    }
    return std::move(v.as_object());
  }

  // Reads until a message that `wanted` holds for, and returns it (an empty object and a failure when none
  // comes); the messages before it go to `skipped`.
  json::object next_where(const std::function<bool(const json::object&)>& wanted,
                          std::vector<json::object>* skipped = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto m = next();
      if (m.empty()) return m;
      if (wanted(m)) return m;
      if (skipped != nullptr) skipped->push_back(std::move(m));
    }
    ADD_FAILURE() << "the expected message did not come";
    return {};
  }

  // Subscribes and reads `subscribed`, then the snapshot's state messages (one per twin in `states`).
  json::object subscribe(json::object command, std::size_t states = 0) {
    command["type"] = "subscribe";
    send(command);
    auto subscribed = next();
    EXPECT_EQ(type_of(subscribed), "subscribed") << json::serialize(subscribed);
    for (std::size_t i = 0; i < states; ++i) {
      auto s = next();
      EXPECT_EQ(type_of(s), "state") << json::serialize(s);
      snapshot_.push_back(std::move(s));
    }
    return subscribed;
  }

  // The state messages the last subscribe() read.
  std::vector<json::object> take_snapshot() { return std::exchange(snapshot_, {}); }

 private:
  static WsOptions with_token(const std::string& token, WsOptions options) {
    options.headers.emplace_back("Authorization", "Bearer " + token);
    options.protocols = {"twinbridge.v1"};
    return options;
  }

  WsClient ws_;
  std::vector<json::object> snapshot_;
};

class StreamTest : public SharedServerTest {
 protected:
  // Three subscriptions per connection at most; a client that does not read is given two minutes.
  static void SetUpTestSuite() {
    start_server({"--stream-max-subscriptions", "3", "--write-timeout-ms", "120000"});
  }

  static Key issue(const std::string& id, const std::string& kind) { return issue_on(port(), id, kind); }

  // A twin system principal `owner` holding system `system` with `twins` (id → title); returns its key.
  static std::string plant(const std::string& owner, const std::string& system,
                           const std::vector<std::pair<std::string, std::string>>& twins) {
    const auto token = principal(owner, "twin-system");
    json::array tds;
    for (const auto& [id, title] : twins) tds.push_back(device(id, title));
    register_on(port(), token, system, std::move(tds));
    return token;
  }

  static void patch(const std::string& token, const std::string& twin, const json::object& body) {
    auto r = patch_on(port(), token, twin, body);
    ASSERT_EQ(r.status, 200) << twin << ": " << r.body;
  }

  static void put_policy(const std::string& token, const std::string& twin, const std::string& policy) {
    auto r = call(port(), "PUT", "/v1/twins/" + twin + "/policy", token, policy);
    ASSERT_TRUE(r.status == 200 || r.status == 201) << r.status << " " << r.body;
  }

  // A policy that lets `principal` read `affordances` ("*" or a JSON array) and nobody else anything.
  static std::string readable_by(const std::string& principal, const std::string& affordances) {
    return R"({"rules":[{"subject":{"principal":")" + principal +
           R"("},"effect":"allow","operations":["readproperty"],"affordances":)" + affordances + "}]}";
  }
};

TEST_F(StreamTest, SubscribingByIdsGivesSnapshotsThenChanges) {
  const auto a = "urn:str:ids:a";
  const auto b = "urn:str:ids:b";
  const auto owner = plant("str-ids-owner", "str-ids", {{a, "a"}, {b, "b"}});
  patch(owner, a, properties({{"temperature", 20}, {"mode", "auto"}}));
  const auto viewer = principal("str-ids-viewer", "metaverse-system");

  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted()) << stream.ws().handshake().status << " " << stream.ws().handshake().body;
  EXPECT_EQ(stream.ws().handshake().header("Sec-WebSocket-Protocol"), "twinbridge.v1");
  auto subscribed = stream.subscribe({{"id", "mine"}, {"twins", json::array{b, a, "urn:str:ids:later"}}}, 2);
  EXPECT_EQ(subscribed.at("id"), "mine");
  EXPECT_GE(integer(subscribed.at("seq")), 1);
  // The twins that exist now; the one that does not yet is not listed.
  EXPECT_EQ(subscribed.at("twins"), (json::array{a, b})) << json::serialize(subscribed);
  std::map<std::string, json::object> states;
  for (auto& s : stream.take_snapshot()) {
    EXPECT_EQ(s.at("reason"), "snapshot");
    EXPECT_EQ(integer(s.at("seq")), integer(subscribed.at("seq")));
    states[twin_of(s)] = s.at("state").as_object();
  }
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[a].at("version"), 2);
  EXPECT_EQ(states[a].at("properties").at("mode"), "auto");
  EXPECT_EQ(states[b].at("version"), 1);
  EXPECT_TRUE(states[b].at("properties").as_object().empty());

  patch(owner, a, properties({{"temperature", 21.5}}));
  auto change = stream.next();
  ASSERT_EQ(type_of(change), "change") << json::serialize(change);
  EXPECT_EQ(change.at("twin"), a);
  EXPECT_GT(integer(change.at("seq")), integer(subscribed.at("seq")));
  EXPECT_EQ(change.at("version"), 3);
  EXPECT_EQ(change.at("patch"), (json::object{{"properties", {{"temperature", 21.5}}}}));
  EXPECT_EQ(change.at("channel"), "http");
  EXPECT_TRUE(change.at("ingestedAt").is_string());

  patch(owner, b, properties({{"mode", "off"}}));
  auto other = stream.next();
  ASSERT_EQ(type_of(other), "change") << json::serialize(other);
  EXPECT_EQ(other.at("twin"), b);
  EXPECT_EQ(other.at("version"), 2);
  EXPECT_GT(integer(other.at("seq")), integer(change.at("seq")));

  // The twin named before it existed joins when it is created.
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems/str-ids/twins", owner,
                 json::serialize(device("urn:str:ids:later")))
                .status,
            201);
  auto joined = stream.next();
  ASSERT_EQ(type_of(joined), "state") << json::serialize(joined);
  EXPECT_EQ(joined.at("twin"), "urn:str:ids:later");
  EXPECT_EQ(joined.at("reason"), "joined");
}

TEST_F(StreamTest, ConcurrentChangesOfATwinArriveInVersionOrderOnce) {
  const auto twin = "urn:str:busy";
  const auto owner = plant("str-busy-owner", "str-busy", {{twin, "busy"}});
  const auto viewer = principal("str-busy-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  stream.subscribe({{"id", "busy"}, {"twins", json::array{twin}}}, 1);
  const auto initial = version_of(stream.take_snapshot().at(0));

  constexpr int kThreads = 6;
  constexpr int kEach = 20;
  std::atomic<int> applied{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = patch_on(port(), owner, twin, properties({{"counter", t * 1000 + i}}));
        EXPECT_EQ(r.status, 200) << r.body;
        if (r.status == 200) ++applied;
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(applied, kThreads * kEach);

  std::vector<std::int64_t> versions;
  std::int64_t last_seq = 0;
  std::map<int, int> next_of_thread;  // each thread's own changes come in the order it made them
  json::value last_counter;
  while (versions.size() < static_cast<std::size_t>(applied)) {
    auto m = stream.next();
    ASSERT_EQ(type_of(m), "change") << json::serialize(m);
    EXPECT_EQ(m.at("twin"), twin);
    EXPECT_GT(integer(m.at("seq")), last_seq);
    last_seq = integer(m.at("seq"));
    versions.push_back(version_of(m));
    last_counter = m.at("patch").at("properties").at("counter");
    const auto counter = static_cast<int>(integer(last_counter));
    EXPECT_EQ(counter % 1000, next_of_thread[counter / 1000]++) << json::serialize(m);
  }
  for (std::size_t i = 0; i < versions.size(); ++i) {
    EXPECT_EQ(versions[i], initial + 1 + static_cast<std::int64_t>(i)) << "change " << i;
  }
  auto state = call(port(), "GET", std::string("/v1/twins/") + twin + "/state", viewer).json();
  EXPECT_EQ(state.at("version"), initial + applied);
  EXPECT_EQ(state.at("properties").at("counter"), last_counter);
}

TEST_F(StreamTest, AFilterSubscriptionFollowsTheTds) {
  const auto a = "urn:str:flt:a";
  const auto b = "urn:str:flt:b";
  const auto c = "urn:str:flt:c";
  const auto d = "urn:str:flt:d";
  const auto owner = plant("str-flt-owner", "str-flt", {{a, "str-flt-lamp"}, {b, "str-flt-pump"}});
  const auto viewer = principal("str-flt-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  auto subscribed = stream.subscribe({{"id", "lamps"}, {"filter", "$[?@.title == 'str-flt-lamp']"}}, 1);
  EXPECT_EQ(subscribed.at("twins"), (json::array{a}));
  EXPECT_EQ(twin_of(stream.take_snapshot().at(0)), a);

  // A twin created later whose TD matches joins; one that does not match is not sent.
  const auto twins = "/v1/twin-systems/str-flt/twins";
  ASSERT_EQ(call(port(), "POST", twins, owner, json::serialize(device(d, "str-flt-pump"))).status, 201);
  ASSERT_EQ(call(port(), "POST", twins, owner, json::serialize(device(c, "str-flt-lamp"))).status, 201);
  auto joined = stream.next();
  ASSERT_EQ(type_of(joined), "state") << json::serialize(joined);
  EXPECT_EQ(joined.at("twin"), c);
  EXPECT_EQ(joined.at("reason"), "joined");
  EXPECT_EQ(joined.at("state").at("version"), 1);
  patch(owner, d, properties({{"counter", 1}}));
  patch(owner, c, properties({{"counter", 1}}));
  auto change = stream.next();
  ASSERT_EQ(type_of(change), "change") << json::serialize(change);
  EXPECT_EQ(change.at("twin"), c);

  // A TD replaced so that it no longer matches leaves; its changes no longer come.
  auto replaced =
      call(port(), "PUT", std::string(twins) + "/" + a, owner, json::serialize(device(a, "str-flt-retired")));
  ASSERT_EQ(replaced.status, 200) << replaced.body;
  auto left = stream.next();
  ASSERT_EQ(type_of(left), "left") << json::serialize(left);
  EXPECT_EQ(left.at("id"), "lamps");
  EXPECT_EQ(left.at("twin"), a);
  EXPECT_GT(integer(left.at("seq")), integer(change.at("seq")));
  patch(owner, a, properties({{"counter", 2}}));
  patch(owner, c, properties({{"counter", 2}}));
  auto after = stream.next();
  ASSERT_EQ(type_of(after), "change") << json::serialize(after);
  EXPECT_EQ(after.at("twin"), c);

  // A TD changed so that it matches joins.
  ASSERT_EQ(
      call(port(), "PUT", std::string(twins) + "/" + b, owner, json::serialize(device(b, "str-flt-lamp")))
          .status,
      200);
  auto pump = stream.next();
  ASSERT_EQ(type_of(pump), "state") << json::serialize(pump);
  EXPECT_EQ(pump.at("twin"), b);
  EXPECT_EQ(pump.at("reason"), "joined");
}

TEST_F(StreamTest, ASavedSelectionIsSubscribedTo) {
  const auto a = "urn:str:sel:a";
  const auto b = "urn:str:sel:b";
  const auto c = "urn:str:sel:c";
  const auto owner =
      plant("str-sel-owner", "str-sel", {{a, "str-sel-x"}, {b, "str-sel-y"}, {c, "str-sel-y"}});
  const auto viewer = principal("str-sel-viewer", "metaverse-system");
  ASSERT_EQ(
      call(port(), "POST", "/v1/selections", viewer, R"({"id":"by-ids","twins":["urn:str:sel:a"]})").status,
      201);
  ASSERT_EQ(call(port(), "POST", "/v1/selections", viewer,
                 R"({"id":"by-filter","filter":"$[?@.title == 'str-sel-y']"})")
                .status,
            201);
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  auto ids = stream.subscribe({{"id", "s1"}, {"selection", "by-ids"}}, 1);
  EXPECT_EQ(ids.at("twins"), (json::array{a}));
  EXPECT_EQ(stream.take_snapshot().at(0).at("twin"), a);
  auto filtered = stream.subscribe({{"id", "s2"}, {"selection", "by-filter"}}, 2);
  EXPECT_EQ(filtered.at("twins"), (json::array{b, c}));
  std::set<std::string> snapshot;
  for (const auto& s : stream.take_snapshot()) snapshot.insert(twin_of(s));
  EXPECT_EQ(snapshot, (std::set<std::string>{b, c}));

  patch(owner, a, properties({{"counter", 1}}));
  patch(owner, c, properties({{"counter", 2}}));
  EXPECT_EQ(stream.next().at("twin"), a);
  EXPECT_EQ(stream.next().at("twin"), c);

  // A selection that is not the caller's is refused at /selection, and the connection goes on.
  stream.send({{"type", "subscribe"}, {"id", "s3"}, {"selection", "nobody-has-this"}});
  auto error = stream.next();
  ASSERT_EQ(type_of(error), "error") << json::serialize(error);
  EXPECT_EQ(error.at("id"), "s3");
  EXPECT_EQ(error.at("status"), 404);
  EXPECT_EQ(error.at("pointer"), "/selection");
  patch(owner, b, properties({{"counter", 3}}));
  EXPECT_EQ(stream.next().at("twin"), b);
}

TEST_F(StreamTest, RefusedCommandsAreAnsweredAndTheConnectionStaysUsable) {
  const auto a = "urn:str:err:a";
  const auto b = "urn:str:err:b";
  const auto owner = plant("str-err-owner", "str-err", {{a, "a"}, {b, "b"}});
  const auto viewer = principal("str-err-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());

  stream.send_text("this is not JSON");
  auto not_json = stream.next();
  ASSERT_EQ(type_of(not_json), "error") << json::serialize(not_json);
  EXPECT_FALSE(not_json.contains("id"));
  EXPECT_EQ(not_json.at("status"), 400);
  EXPECT_FALSE(not_json.at("detail").as_string().empty());
  stream.send_text("[1,2]");
  EXPECT_EQ(type_of(stream.next()), "error");

  stream.send({{"type", "subcribe"}, {"id", "typo"}});
  auto unknown = stream.next();
  ASSERT_EQ(type_of(unknown), "error") << json::serialize(unknown);
  EXPECT_EQ(unknown.at("id"), "typo");
  EXPECT_EQ(unknown.at("status"), 422);
  EXPECT_EQ(unknown.at("pointer"), "/type");

  stream.send({{"type", "subscribe"}, {"id", "bad-filter"}, {"filter", "$[?@.title =="}});
  auto bad_filter = stream.next();
  ASSERT_EQ(type_of(bad_filter), "error") << json::serialize(bad_filter);
  EXPECT_EQ(bad_filter.at("id"), "bad-filter");
  EXPECT_EQ(bad_filter.at("pointer"), "/filter");
  EXPECT_TRUE(bad_filter.at("status") == 400 || bad_filter.at("status") == 422)
      << json::serialize(bad_filter);

  stream.subscribe({{"id", "one"}, {"twins", json::array{a}}}, 1);
  stream.send({{"type", "subscribe"}, {"id", "one"}, {"twins", json::array{b}}});
  auto duplicate = stream.next();
  ASSERT_EQ(type_of(duplicate), "error") << json::serialize(duplicate);
  EXPECT_EQ(duplicate.at("id"), "one");
  EXPECT_EQ(duplicate.at("status"), 409);

  // stream.max_subscriptions is 3 on this server.
  stream.subscribe({{"id", "two"}, {"twins", json::array{b}}}, 1);
  stream.subscribe({{"id", "three"}, {"twins", json::array{b}}}, 1);
  stream.send({{"type", "subscribe"}, {"id", "four"}, {"twins", json::array{b}}});
  auto over = stream.next();
  ASSERT_EQ(type_of(over), "error") << json::serialize(over);
  EXPECT_EQ(over.at("id"), "four");
  EXPECT_EQ(over.at("status"), 422);
  EXPECT_NE(std::string(over.at("detail").as_string()).find('3'), std::string::npos) << over.at("detail");

  stream.send({{"type", "unsubscribe"}, {"id", "never-opened"}});
  auto unknown_id = stream.next();
  ASSERT_EQ(type_of(unknown_id), "error") << json::serialize(unknown_id);
  EXPECT_EQ(unknown_id.at("id"), "never-opened");
  EXPECT_EQ(unknown_id.at("status"), 404);

  // Unsubscribing frees a place and stops the twin's changes.
  stream.send({{"type", "unsubscribe"}, {"id", "one"}});
  auto gone = stream.next();
  EXPECT_EQ(gone, (json::object{{"type", "unsubscribed"}, {"id", "one"}}));
  patch(owner, a, properties({{"counter", 1}}));
  patch(owner, b, properties({{"counter", 1}}));
  auto change = stream.next();
  ASSERT_EQ(type_of(change), "change") << json::serialize(change);
  EXPECT_EQ(change.at("twin"), b) << "a change of a twin that was unsubscribed came";
  stream.subscribe({{"id", "four"}, {"twins", json::array{a}}}, 1);
  patch(owner, a, properties({{"counter", 2}}));
  auto back = stream.next();
  EXPECT_EQ(back.at("twin"), a);
  EXPECT_EQ(back.at("patch").at("properties").at("counter"), 2);
}

TEST_F(StreamTest, AClientSeesOnlyWhatThePolicyLetsItReadAsThePolicyChanges) {
  const auto guarded = "urn:str:acl:guarded";
  const auto open = "urn:str:acl:open";
  const auto owner = plant("str-acl-owner", "str-acl", {{guarded, "guarded"}, {open, "open"}});
  const auto viewer = principal("str-acl-viewer", "metaverse-system");
  patch(owner, guarded, properties({{"temperature", 20}, {"mode", "auto"}}));
  put_policy(owner, guarded, readable_by("str-acl-viewer", R"(["mode"])"));

  Stream admin(port(), kAdmin);
  ASSERT_TRUE(admin.accepted());
  admin.subscribe({{"id", "all"}, {"twins", json::array{guarded}}}, 1);
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  stream.subscribe({{"id", "acl"}, {"twins", json::array{guarded, open}}}, 2);
  for (const auto& s : stream.take_snapshot()) {
    if (twin_of(s) != guarded) continue;
    EXPECT_EQ(s.at("state").at("properties"), (json::object{{"mode", "auto"}})) << json::serialize(s);
    EXPECT_EQ(json::serialize(s).find("temperature"), std::string::npos) << json::serialize(s);
  }

  // Changes carry only the properties the client may read; one with nothing of them is not sent.
  patch(owner, guarded, properties({{"temperature", 21}, {"mode", "manual"}}));
  auto change = stream.next();
  ASSERT_EQ(type_of(change), "change") << json::serialize(change);
  EXPECT_EQ(change.at("patch"), (json::object{{"properties", {{"mode", "manual"}}}}));
  EXPECT_EQ(json::serialize(change).find("temperature"), std::string::npos) << json::serialize(change);
  auto whole = admin.next();
  ASSERT_EQ(type_of(whole), "change");
  EXPECT_EQ(whole.at("patch").at("properties").at("temperature"), 21) << "another client's view is not cut";
  patch(owner, guarded, properties({{"temperature", 22}}));
  patch(owner, open, properties({{"counter", 1}}));
  auto sentinel = stream.next();
  ASSERT_EQ(type_of(sentinel), "change") << json::serialize(sentinel);
  EXPECT_EQ(sentinel.at("twin"), open) << "a change of nothing the client may read was sent";

  // A policy that takes every property away revokes the twin; nothing more of it comes.
  put_policy(owner, guarded, readable_by("str-acl-owner", R"("*")"));
  auto revoked = stream.next();
  ASSERT_EQ(type_of(revoked), "revoked") << json::serialize(revoked);
  EXPECT_EQ(revoked.at("twin"), guarded);
  EXPECT_GT(integer(revoked.at("seq")), integer(sentinel.at("seq")));
  EXPECT_FALSE(revoked.at("detail").as_string().empty());
  patch(owner, guarded, properties({{"mode", "off"}}));
  patch(owner, open, properties({{"counter", 2}}));
  auto quiet = stream.next();
  EXPECT_EQ(quiet.at("twin"), open) << json::serialize(quiet);

  // Granted again: the whole state, as the client may now read it, then its changes.
  put_policy(owner, guarded, readable_by("str-acl-viewer", R"("*")"));
  auto granted = stream.next();
  ASSERT_EQ(type_of(granted), "state") << json::serialize(granted);
  EXPECT_EQ(granted.at("twin"), guarded);
  EXPECT_EQ(granted.at("reason"), "access");
  EXPECT_EQ(granted.at("state").at("properties").at("temperature"), 22);
  EXPECT_EQ(granted.at("state").at("properties").at("mode"), "off");
  patch(owner, guarded, properties({{"temperature", 23}}));
  auto after = stream.next();
  ASSERT_EQ(type_of(after), "change") << json::serialize(after);
  EXPECT_EQ(after.at("patch").at("properties").at("temperature"), 23);
}

TEST_F(StreamTest, ATwinThePolicyHidesIsNotSentAtAll) {
  const auto hidden = "urn:str:hidden";
  const auto shown = "urn:str:hidden:shown";
  const auto owner = plant("str-hidden-owner", "str-hidden", {{hidden, "hidden"}, {shown, "shown"}});
  principal("str-hidden-viewer", "metaverse-system");
  const auto other = principal("str-hidden-other", "metaverse-system");
  put_policy(owner, hidden, readable_by("str-hidden-viewer", R"("*")"));
  Stream stream(port(), other);
  ASSERT_TRUE(stream.accepted());
  // One state: the twin it may read; the other is neither in the snapshot nor in the changes.
  stream.subscribe({{"id", "h"}, {"twins", json::array{hidden, shown}}}, 1);
  EXPECT_EQ(stream.take_snapshot().at(0).at("twin"), shown);
  patch(owner, hidden, properties({{"counter", 1}}));
  patch(owner, shown, properties({{"counter", 2}}));
  auto m = stream.next();
  ASSERT_EQ(type_of(m), "change") << json::serialize(m);
  EXPECT_EQ(m.at("twin"), shown);
}

TEST_F(StreamTest, RevokingTheApiKeyClosesTheStreamWith4401) {
  const auto twin = "urn:str:revoke";
  const auto owner = plant("str-revoke-owner", "str-revoke", {{twin, "revoke"}});
  const auto key = issue("str-revoke-viewer", "metaverse-system");
  const auto bystander = principal("str-revoke-bystander", "metaverse-system");
  Stream stream(port(), key.token);
  Stream other(port(), bystander);
  ASSERT_TRUE(stream.accepted());
  ASSERT_TRUE(other.accepted());
  stream.subscribe({{"id", "r"}, {"twins", json::array{twin}}}, 1);
  other.subscribe({{"id", "r"}, {"twins", json::array{twin}}}, 1);

  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/str-revoke-viewer/api-keys/" + key.id, kAdmin).status,
            204);
  auto closed = stream.next();
  ASSERT_EQ(type_of(closed), "closed") << json::serialize(closed);
  EXPECT_EQ(closed.at("reason"), "credential_revoked");
  EXPECT_FALSE(closed.at("detail").as_string().empty());
  EXPECT_EQ(stream.ws().wait_close(20s), 4401);

  patch(owner, twin, properties({{"counter", 1}}));
  auto change = other.next();
  ASSERT_EQ(type_of(change), "change") << json::serialize(change);
  EXPECT_EQ(change.at("twin"), twin);
}

TEST_F(StreamTest, DisablingThePrincipalClosesTheStreamWith4401) {
  const auto twin = "urn:str:disable";
  plant("str-disable-owner", "str-disable", {{twin, "disable"}});
  const auto viewer = principal("str-disable-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  stream.subscribe({{"id", "d"}, {"twins", json::array{twin}}}, 1);
  ASSERT_EQ(
      call(port(), "PATCH", "/v1/principals/str-disable-viewer", kAdmin, R"({"disabled":true})", kMergePatch)
          .status,
      200);
  // (A revoked may come first: the disabled principal may read nothing any more.)
  std::vector<json::object> before;
  auto closed = stream.next_where([](const json::object& m) { return type_of(m) != "revoked"; }, &before);
  ASSERT_EQ(type_of(closed), "closed") << json::serialize(closed);
  EXPECT_EQ(closed.at("reason"), "principal_disabled");
  EXPECT_LE(before.size(), 1u);
  EXPECT_EQ(stream.ws().wait_close(20s), 4401);
}

TEST_F(StreamTest, AKeyRevokedBeforeTheFirstSubscribeGetsNoState) {
  const auto twin = "urn:str:early";
  const auto owner = plant("str-early-owner", "str-early", {{twin, "early"}});
  patch(owner, twin, properties({{"counter", 7}}));
  const auto key = issue("str-early-viewer", "metaverse-system");
  Stream stream(port(), key.token);
  ASSERT_TRUE(stream.accepted());
  ASSERT_EQ(call(port(), "DELETE", "/v1/principals/str-early-viewer/api-keys/" + key.id, kAdmin).status, 204);
  // The connection was opened with a key that has since been revoked: it reads nothing more.
  stream.ws().send(
      json::serialize(json::object{{"type", "subscribe"}, {"id", "late"}, {"twins", json::array{twin}}}));
  std::vector<std::string> types;
  for (;;) {
    auto text = stream.ws().read(20s);
    if (!text) break;
    types.push_back(type_of(json::parse(*text).as_object()));
  }
  std::string received;
  for (const auto& t : types) received += " " + t;
  ASSERT_TRUE(stream.ws().closed()) << "the stream of a revoked key stayed open; it received:" << received;
  EXPECT_EQ(stream.ws().close_code(), 4401);
  for (const auto& t : types) {
    EXPECT_TRUE(t != "state" && t != "subscribed" && t != "change") << "a revoked key was sent " << t;
  }
  ASSERT_FALSE(types.empty()) << "no closed message";
  EXPECT_EQ(types.back(), "closed");
}

TEST_F(StreamTest, ResumingAfterASeqReplaysTheChangesMissedInOrder) {
  const auto twin = "urn:str:resume";
  const auto quiet = "urn:str:resume:other";
  const auto owner = plant("str-resume-owner", "str-resume", {{twin, "resume"}, {quiet, "other"}});
  const auto viewer = principal("str-resume-viewer", "metaverse-system");
  std::int64_t seen = 0;
  {
    Stream first(port(), viewer);
    ASSERT_TRUE(first.accepted());
    first.subscribe({{"id", "r"}, {"twins", json::array{twin}}}, 1);
    patch(owner, twin, properties({{"counter", 1}}));
    auto change = first.next();
    ASSERT_EQ(type_of(change), "change");
    seen = integer(change.at("seq"));
    EXPECT_TRUE(first.ws().close());
  }
  for (int i = 2; i <= 4; ++i) {
    patch(owner, twin, properties({{"counter", i}}));
    patch(owner, quiet, properties({{"counter", i}}));
  }

  Stream second(port(), viewer);
  ASSERT_TRUE(second.accepted());
  auto subscribed = second.subscribe({{"id", "r"}, {"twins", json::array{twin}}, {"after", seen}});
  EXPECT_GT(integer(subscribed.at("seq")), seen);
  std::int64_t last_seq = seen;
  for (int i = 2; i <= 4; ++i) {
    auto m = second.next();
    ASSERT_EQ(type_of(m), "change") << "a resume sends the changes missed, no snapshot: "
                                    << json::serialize(m);
    EXPECT_EQ(m.at("twin"), twin);
    EXPECT_EQ(m.at("patch").at("properties").at("counter"), i);
    EXPECT_EQ(m.at("version"), i + 1);
    EXPECT_GT(integer(m.at("seq")), last_seq);
    last_seq = integer(m.at("seq"));
  }
  patch(owner, twin, properties({{"counter", 5}}));
  auto live = second.next();
  ASSERT_EQ(type_of(live), "change") << json::serialize(live);
  EXPECT_EQ(live.at("patch").at("properties").at("counter"), 5);
  EXPECT_EQ(live.at("version"), 6);
}

TEST(StreamRestart, AResumeOutlivesARestart) {
  TempDir data;
  const std::map<std::string, std::string> env{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}};
  const auto twin = "urn:str:durable";
  std::string owner;
  std::string viewer;
  std::int64_t seen = 0;
  {
    ServerProcess first(data.path(), {}, env);
    owner = issue_on(first.port(), "str-durable-owner", "twin-system").token;
    viewer = issue_on(first.port(), "str-durable-viewer", "metaverse-system").token;
    register_on(first.port(), owner, "str-durable", json::array{device(twin)});
    Stream stream(first.port(), viewer);
    ASSERT_TRUE(stream.accepted());
    stream.subscribe({{"id", "d"}, {"twins", json::array{twin}}}, 1);
    ASSERT_EQ(patch_on(first.port(), owner, twin, properties({{"counter", 1}})).status, 200);
    auto change = stream.next();
    ASSERT_EQ(type_of(change), "change") << json::serialize(change);
    seen = integer(change.at("seq"));
    ASSERT_TRUE(stream.ws().close());
    for (int i = 2; i <= 3; ++i) {
      ASSERT_EQ(patch_on(first.port(), owner, twin, properties({{"counter", i}})).status, 200);
    }
    EXPECT_EQ(first.stop(SIGTERM), 0);
  }
  ServerProcess second(data.path(), {}, env);
  Stream stream(second.port(), viewer);
  ASSERT_TRUE(stream.accepted());
  stream.subscribe({{"id", "d"}, {"twins", json::array{twin}}, {"after", seen}});
  for (int i = 2; i <= 3; ++i) {
    auto m = stream.next();
    ASSERT_EQ(type_of(m), "change") << json::serialize(m);
    EXPECT_EQ(m.at("patch").at("properties").at("counter"), i);
    EXPECT_EQ(m.at("version"), i + 1);
  }
  ASSERT_EQ(patch_on(second.port(), owner, twin, properties({{"counter", 4}})).status, 200);
  auto live = stream.next();
  ASSERT_EQ(type_of(live), "change") << json::serialize(live);
  EXPECT_EQ(live.at("patch").at("properties").at("counter"), 4);
}

TEST_F(StreamTest, AnEphemeralValueComesLiveWithSeqZero) {
  const auto twin = "urn:str:live";
  const auto owner = plant("str-live-owner", "str-live", {{twin, "live"}});
  const auto viewer = principal("str-live-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  stream.subscribe({{"id", "l"}, {"twins", json::array{twin}}}, 1);

  patch(owner, twin, properties({{"vibration", 0.5}}));
  auto live = stream.next();
  ASSERT_EQ(type_of(live), "change") << json::serialize(live);
  EXPECT_EQ(live.at("seq"), 0);
  EXPECT_EQ(live.at("twin"), twin);
  EXPECT_EQ(live.at("ephemeral"), true);
  EXPECT_EQ(live.at("patch"), (json::object{{"properties", {{"vibration", 0.5}}}}));
  EXPECT_FALSE(live.contains("version"));
  EXPECT_TRUE(live.at("ingestedAt").is_string());

  // A report of both: the live value at once, the rest as a durable change without it.
  patch(owner, twin, properties({{"vibration", 0.75}, {"temperature", 30}}));
  std::map<bool, json::object> by_kind;
  for (int i = 0; i < 2; ++i) {
    auto m = stream.next();
    ASSERT_EQ(type_of(m), "change") << json::serialize(m);
    by_kind[m.contains("ephemeral")] = m;
  }
  ASSERT_EQ(by_kind.size(), 2u);
  EXPECT_EQ(by_kind[true].at("seq"), 0);
  EXPECT_EQ(by_kind[true].at("patch"), (json::object{{"properties", {{"vibration", 0.75}}}}));
  EXPECT_GT(integer(by_kind[false].at("seq")), 0);
  EXPECT_EQ(by_kind[false].at("patch"), (json::object{{"properties", {{"temperature", 30}}}}));
}

TEST_F(StreamTest, ABatchsLiveValuesComeTogetherAndBeforeItsStoredRemovalOfThem) {
  const auto twin = "urn:str:livebatch";
  const auto owner = plant("str-lb-owner", "str-lb", {{twin, "livebatch"}});
  const auto viewer = principal("str-lb-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  stream.subscribe({{"id", "lb"}, {"twins", json::array{twin}}}, 1);

  // Live values, then a removal of the live value (stored: it goes on the feed), in one run of a batch.
  json::array changes;
  for (const double v : {0.25, 0.5, 0.75}) {
    changes.push_back(json::object{{"twin", twin}, {"patch", properties({{"vibration", v}})}});
  }
  changes.push_back(json::object{{"twin", twin}, {"patch", properties({{"vibration", nullptr}})}});
  auto r = call(port(), "POST", "/v1/twin-systems/str-lb/state", owner,
                json::serialize(json::object{{"changes", std::move(changes)}}));
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json().at("accepted"), 4);
  for (const double v : {0.25, 0.5, 0.75}) {
    auto m = stream.next();
    ASSERT_EQ(type_of(m), "change") << json::serialize(m);
    EXPECT_EQ(m.at("seq"), 0);
    EXPECT_EQ(m.at("patch"), (json::object{{"properties", {{"vibration", v}}}}));
  }
  auto removal = stream.next();
  ASSERT_EQ(type_of(removal), "change") << json::serialize(removal);
  EXPECT_GT(integer(removal.at("seq")), 0);
  EXPECT_EQ(removal.at("patch"), (json::object{{"properties", {{"vibration", nullptr}}}}));
}

TEST_F(StreamTest, ASlowConsumerIsConflatedWhileAFastOneGetsEveryChange) {
  const std::vector<std::string> twins{"urn:str:slow:a", "urn:str:slow:b", "urn:str:slow:c"};
  const auto owner =
      plant("str-slow-owner", "str-slow", {{twins[0], "slow"}, {twins[1], "slow"}, {twins[2], "slow"}});
  const auto viewer = principal("str-slow-viewer", "metaverse-system");
  const json::array ids{twins[0], twins[1], twins[2]};

  WsOptions tiny;
  tiny.receive_buffer_bytes = 4096;
  Stream slow(port(), viewer, tiny);
  Stream fast(port(), viewer);
  ASSERT_TRUE(slow.accepted());
  ASSERT_TRUE(fast.accepted());
  slow.subscribe({{"id", "slow"}, {"twins", ids}}, 3);
  fast.subscribe({{"id", "fast"}, {"twins", ids}}, 3);
  std::map<std::string, std::int64_t> fast_version;
  for (const auto& s : fast.take_snapshot()) fast_version[twin_of(s)] = version_of(s);

  // About 8 MiB of changes (1 KiB each): more than the slow client's socket buffers (the kernel's send buffer
  // grows to 4 MiB at most by default) and the 2 MiB its transport queue holds before the stream conflates
  // (limits.max_ws_queue_bytes / 2), in batches that the fast client reads as they come.
  constexpr int kBatches = 40;
  constexpr int kPerBatch = 200;
  const std::string padding(1000, 'x');
  std::map<std::string, int> counter;
  std::size_t fast_changes = 0;
  for (int batch = 0; batch < kBatches; ++batch) {
    json::array changes;
    for (int i = 0; i < kPerBatch; ++i) {
      const auto& twin = twins[static_cast<std::size_t>(i) % twins.size()];
      changes.push_back(json::object{
          {"twin", twin}, {"patch", properties({{"counter", ++counter[twin]}, {"label", padding}})}});
    }
    auto r = call(port(), "POST", "/v1/twin-systems/str-slow/state", owner,
                  json::serialize(json::object{{"changes", std::move(changes)}}));
    ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
    ASSERT_EQ(r.json().at("accepted"), kPerBatch);
    for (int i = 0; i < kPerBatch; ++i) {
      auto m = fast.next();
      ASSERT_EQ(type_of(m), "change")
          << "the fast client missed a change: " << json::serialize(m).substr(0, 300);
      const auto twin = twin_of(m);
      ASSERT_EQ(version_of(m), fast_version[twin] + 1) << twin;
      fast_version[twin] = version_of(m);
      ++fast_changes;
    }
  }
  EXPECT_EQ(fast_changes, static_cast<std::size_t>(kBatches * kPerBatch));

  // The slow client reads at last: fewer messages than changes, states (conflated) in place of what it did
  // not get, versions increasing per twin, and the newest value last.
  std::map<std::string, std::int64_t> slow_version;
  std::map<std::string, std::int64_t> newest;
  std::size_t messages = 0;
  std::size_t conflated = 0;
  const auto done = [&] {
    for (const auto& t : twins) {
      if (newest[t] != counter[t]) return false;
    }
    return true;
  };
  while (!done()) {
    auto m = slow.next(60s);
    ASSERT_FALSE(m.empty());
    ++messages;
    const auto twin = twin_of(m);
    const auto type = type_of(m);
    ASSERT_TRUE(type == "change" || type == "state") << json::serialize(m).substr(0, 300);
    if (type == "state") {
      EXPECT_EQ(m.at("reason"), "conflated");
      ++conflated;
      newest[twin] = integer(m.at("state").at("properties").at("counter"));
    } else {
      newest[twin] = integer(m.at("patch").at("properties").at("counter"));
    }
    EXPECT_GT(version_of(m), slow_version[twin]) << "versions of " << twin << " must increase";
    slow_version[twin] = version_of(m);
  }
  EXPECT_GT(conflated, 0u);
  EXPECT_LT(messages, fast_changes);
  for (const auto& t : twins) EXPECT_EQ(slow_version[t], fast_version[t]) << t;

  // Nothing older follows the newest value: the next message is the next change.
  patch(owner, twins[0], properties({{"counter", -1}}));
  auto next = slow.next();
  ASSERT_EQ(type_of(next), "change") << json::serialize(next).substr(0, 300);
  EXPECT_EQ(next.at("patch").at("properties").at("counter"), -1);
  EXPECT_EQ(version_of(next), fast_version[twins[0]] + 1);
}

TEST_F(StreamTest, ServerSentEventsNameEachMessageAndResumeFromLastEventId) {
  const auto twin = "urn:str:sse";
  const auto owner = plant("str-sse-owner", "str-sse", {{twin, "sse"}});
  const auto viewer = principal("str-sse-viewer", "metaverse-system");
  const std::string path = std::string("/v1/stream/events?id=") + percent_encode(twin);
  std::string last_id;
  {
    auto events = open_events(port(), path, viewer);
    auto subscribed = next_event(*events);
    ASSERT_TRUE(subscribed.has_value());
    EXPECT_EQ(subscribed->type, "subscribed");
    EXPECT_EQ(subscribed->data.at("twins"), (json::array{twin}));
    auto state = next_event(*events);
    ASSERT_TRUE(state.has_value());
    EXPECT_EQ(state->type, "state");
    EXPECT_EQ(state->data.at("reason"), "snapshot");
    patch(owner, twin, properties({{"counter", 1}}));
    auto change = next_event(*events);
    ASSERT_TRUE(change.has_value());
    EXPECT_EQ(change->type, "change");
    EXPECT_EQ(change->data.at("type"), "change");
    EXPECT_EQ(change->id, std::to_string(integer(change->data.at("seq"))));
    last_id = change->id;
  }
  patch(owner, twin, properties({{"counter", 2}}));
  patch(owner, twin, properties({{"counter", 3}}));

  auto resumed = open_events(port(), path, viewer, last_id);
  auto subscribed = next_event(*resumed);
  ASSERT_TRUE(subscribed.has_value());
  EXPECT_EQ(subscribed->type, "subscribed");
  for (int i = 2; i <= 3; ++i) {
    auto e = next_event(*resumed);
    ASSERT_TRUE(e.has_value());
    ASSERT_EQ(e->type, "change") << "a resume sends no snapshot: " << json::serialize(e->data);
    EXPECT_EQ(e->data.at("patch").at("properties").at("counter"), i);
    EXPECT_EQ(e->id, std::to_string(integer(e->data.at("seq"))));
    EXPECT_GT(std::stoll(e->id), std::stoll(last_id));
    last_id = e->id;
  }

  // Without a snapshot: the changes only.
  auto bare = open_events(port(), path + "&snapshot=false", viewer);
  auto bare_subscribed = next_event(*bare);
  ASSERT_TRUE(bare_subscribed.has_value());
  EXPECT_EQ(bare_subscribed->type, "subscribed");
  patch(owner, twin, properties({{"counter", 4}}));
  auto e = next_event(*bare);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->type, "change");
  EXPECT_EQ(e->data.at("patch").at("properties").at("counter"), 4);
  auto also = next_event(*resumed);
  ASSERT_TRUE(also.has_value());
  EXPECT_EQ(also->id, e->id);
}

TEST_F(StreamTest, ServerSentEventsRefuseABadQuery) {
  const auto viewer = principal("str-sse-bad-viewer", "metaverse-system");
  for (const std::string query : {"", "?id=a&filter=%24", "?filter=%24&filter=%24", "?id=a&snapshot=maybe",
                                  "?id=a&colour=red", "?selection=x&id=a"}) {
    auto r = call(port(), "GET", "/v1/stream/events" + query, viewer);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_EQ(r.header("Content-Type"), "application/problem+json") << query;
  }
  auto r = call(port(), "GET", "/v1/stream/events?id=a", viewer, "", {{"Last-Event-ID", "yesterday"}});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(call(port(), "GET", "/v1/stream/events?id=a", "").status, 401);

  // A query that parses but a filter that does not: the stream's one error event, then its end.
  auto events = open_events(port(), "/v1/stream/events?filter=" + percent_encode("$[?@.title =="), viewer);
  auto error = next_event(*events);
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->type, "error");
  EXPECT_EQ(error->data.at("pointer"), "/filter");
  EXPECT_TRUE(events->closed_by_peer(20s));
}

TEST_F(StreamTest, StreamsThatComeAndGoLeaveTheServerServing) {
  const auto twin = "urn:str:churn";
  const auto owner = plant("str-churn-owner", "str-churn", {{twin, "churn"}});
  const auto viewer = principal("str-churn-viewer", "metaverse-system");
  Stream steady(port(), viewer);
  ASSERT_TRUE(steady.accepted());
  steady.subscribe({{"id", "steady"}, {"twins", json::array{twin}}}, 1);
  for (int i = 1; i <= 1000; ++i) {
    Stream passing(port(), viewer);
    ASSERT_TRUE(passing.accepted()) << i;
    passing.subscribe({{"id", "p"}, {"twins", json::array{twin}}}, 1);
    patch(owner, twin, properties({{"counter", i}}));
    EXPECT_EQ(passing.next().at("patch").at("properties").at("counter"), i);
    EXPECT_EQ(steady.next().at("patch").at("properties").at("counter"), i);
    if (i % 2 == 0) {
      EXPECT_TRUE(passing.ws().close());  // the others just drop the connection
    }
  }
  Stream last(port(), viewer);
  ASSERT_TRUE(last.accepted());
  last.subscribe({{"id", "last"}, {"twins", json::array{twin}}}, 1);
  EXPECT_EQ(last.take_snapshot().at(0).at("state").at("properties").at("counter"), 1000);
  EXPECT_EQ(call(port(), "GET", "/healthz", "").status, 200);
}

TEST_F(StreamTest, ADeletedTwinIsAnnouncedAndComesBackWhenCreatedAgain) {
  const auto doomed = "urn:str:del:doomed";
  const auto kept = "urn:str:del:kept";
  const auto owner = plant("str-del-owner", "str-del", {{doomed, "doomed"}, {kept, "kept"}});
  const auto viewer = principal("str-del-viewer", "metaverse-system");
  Stream stream(port(), viewer);
  ASSERT_TRUE(stream.accepted());
  auto subscribed = stream.subscribe({{"id", "d"}, {"twins", json::array{doomed, kept}}}, 2);

  const std::string twins = "/v1/twin-systems/str-del/twins";
  ASSERT_EQ(call(port(), "DELETE", twins + "/" + doomed, owner).status, 204);
  auto deleted = stream.next();
  ASSERT_EQ(type_of(deleted), "thing_deleted") << json::serialize(deleted);
  EXPECT_EQ(deleted.at("twin"), doomed);
  EXPECT_GT(integer(deleted.at("seq")), integer(subscribed.at("seq")));
  patch(owner, kept, properties({{"counter", 1}}));
  auto change = stream.next();
  ASSERT_EQ(type_of(change), "change") << json::serialize(change);
  EXPECT_EQ(change.at("twin"), kept);

  // Named by id, it joins again when created again.
  ASSERT_EQ(call(port(), "POST", twins, owner, json::serialize(device(doomed))).status, 201);
  auto joined = stream.next();
  ASSERT_EQ(type_of(joined), "state") << json::serialize(joined);
  EXPECT_EQ(joined.at("twin"), doomed);
  EXPECT_EQ(joined.at("reason"), "joined");
  EXPECT_EQ(joined.at("state").at("version"), 1);
}

}  // namespace
}  // namespace twinbridge::testing
