// Who may write what (README "Security model", core/access.hpp), against the real server: every write route
// of registrations and twins, for a principal of every kind (and for principals whose roles and kind
// disagree), each on fresh objects owned by someone else or by the caller. A cell of the table is the status
// the route must answer.

#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include <functional>
#include <map>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

const std::vector<std::pair<std::string, std::string>> kMerge = {
    {"Content-Type", "application/merge-patch+json"}};

boost::json::object td(const std::string& id, const std::string& title = "Lamp") {
  boost::json::object t{
      {"@context", "https://www.w3.org/2022/wot/td/v1.1"},
      {"title", title},
      {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
      {"security", "nosec_sc"},
      {"properties",
       {{"on",
         {{"type", "boolean"}, {"forms", boost::json::array{{{"href", "https://plant.example/on"}}}}}}}}};
  if (!id.empty()) t["id"] = id;
  return t;
}

std::string third_party(const std::string& id) {
  return boost::json::serialize(boost::json::object{
      {"id", id},
      {"type", "payment"},
      {"name", "pay " + id},
      {"service_charge", {{"model", "per-call"}, {"amount", 0.01}, {"currency", "EUR"}, {"unit", "call"}}},
      {"service_level", {{"availability", 99.9}, {"latency_ms", 100}}},
      {"apis", boost::json::array{{{"name", "charge"}, {"method", "POST"}, {"path", "/charges"}}}},
      {"endpoints", {{"base_url", "https://pay.example/api"}}}});
}

std::string twin_system(const std::string& id, boost::json::array twins = {}) {
  boost::json::object doc{{"id", id},
                          {"type", "factory"},
                          {"name", "plant " + id},
                          {"endpoints", {{"base_url", "https://plant.example"}}}};
  if (!twins.empty()) doc["twins"] = std::move(twins);
  return boost::json::serialize(doc);
}

// The callers of the table. Owners of the objects a row works on are `tp` (3rd-party systems) and `ts` (twin
// systems, their twins, directory twins).
struct Caller {
  std::string name;
  std::string kind;
  std::string roles;  // JSON array, or empty for the kind's defaults
};

const std::vector<Caller> kCallers = {
    {"op", "operator", ""},                            // admin: registry:admin, twins:publish
    {"mv", "metaverse-system", ""},                    // reads, controls, never registers
    {"ts", "twin-system", ""},                         // owns the twin system, its twins and a directory twin
    {"tp", "third-party-system", ""},                  // owns the 3rd-party system
    {"ts2", "twin-system", ""},                        // another twin system: not the owner
    {"tp2", "third-party-system", ""},                 // another 3rd-party system: not the owner
    {"tsw", "twin-system", R"(["registry-writer"])"},  // a twin system without twins:publish
    {"mvw", "metaverse-system", R"(["registry-writer","twin-publisher"])"},    // roles of others, wrong kind
    {"tpp", "third-party-system", R"(["registry-writer","twin-publisher"])"},  // twins:publish, wrong kind
    {"aud", "operator", R"(["auditor"])"},  // an operator without registry rights
};

class AuthorizationTest : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    start_server();
    for (const auto& c : kCallers) {
      std::string body =
          R"({"id":"authz-)" + c.name + R"(","kind":")" + c.kind + R"(","name":")" + c.name + "\"";
      if (!c.roles.empty()) body += R"(,"roles":)" + c.roles;
      body += "}";
      auto r = call(port(), "POST", "/v1/principals", kAdmin, body);
      ASSERT_EQ(r.status, 201) << r.body;
      tokens_[c.name] = std::string(r.json().at("api_key").at("token").as_string());
    }
  }
  static const std::string& token(const std::string& name) { return tokens_.at(name); }

  // Fresh objects for one cell: a 3rd-party system of tp, a twin system of ts with one twin, a directory twin
  // of ts; all named after `n`.
  static void setup(const std::string& n) {
    ASSERT_EQ(call(port(), "POST", "/v1/third-party-systems", token("tp"), third_party("tp-" + n)).status,
              201);
    auto ts = call(port(), "POST", "/v1/twin-systems", token("ts"),
                   twin_system("ts-" + n, boost::json::array{td("urn:authz:t-" + n)}));
    ASSERT_EQ(ts.status, 201) << ts.body;
    auto dir = call(port(), "PUT", "/things/urn:authz:d-" + n, token("ts"),
                    boost::json::serialize(td("urn:authz:d-" + n)), kTd);
    ASSERT_EQ(dir.status, 201) << dir.body;
  }

  static inline std::map<std::string, std::string> tokens_;
};

struct Row {
  std::string name;
  // The request of a caller (its token) on the objects of cell `n`.
  std::function<HttpResponse(std::uint16_t port, const std::string& token, const std::string& n)> send;
  std::map<std::string, int> expected;  // by caller name; callers not listed expect 403
};

using H = std::vector<std::pair<std::string, std::string>>;

const std::vector<Row>& rows() {
  static const std::vector<Row> kRows = {
      // 3rd-party systems: registered by third-party-system principals (or operators), changed by their
      // owner.
      {"POST /v1/third-party-systems",
       [](auto port, auto& t, auto& n) {
         return call(port, "POST", "/v1/third-party-systems", t, third_party("new-tp-" + n));
       },
       {{"op", 201}, {"tp", 201}, {"tp2", 201}, {"tpp", 201}}},
      {"PUT /v1/third-party-systems/{id}",
       [](auto port, auto& t, auto& n) {
         return call(port, "PUT", "/v1/third-party-systems/tp-" + n, t, third_party("tp-" + n));
       },
       {{"op", 200}, {"tp", 200}}},
      {"PATCH /v1/third-party-systems/{id}",
       [](auto port, auto& t, auto& n) {
         return call(port, "PATCH", "/v1/third-party-systems/tp-" + n, t, R"({"name":"renamed"})", kMerge);
       },
       {{"op", 200}, {"tp", 200}}},
      {"DELETE /v1/third-party-systems/{id}",
       [](auto port, auto& t, auto& n) { return call(port, "DELETE", "/v1/third-party-systems/tp-" + n, t); },
       {{"op", 204}, {"tp", 204}}},
      {"POST /v1/third-party-systems/{id}/heartbeat",
       [](auto port, auto& t, auto& n) {
         return call(port, "POST", "/v1/third-party-systems/tp-" + n + "/heartbeat", t);
       },
       {{"op", 200}, {"tp", 200}}},
      // Twin systems: registered by twin-system principals (or operators); their initial twins need
      // twins:publish.
      {"POST /v1/twin-systems",
       [](auto port, auto& t, auto& n) {
         return call(port, "POST", "/v1/twin-systems", t, twin_system("new-ts-" + n));
       },
       {{"op", 201}, {"ts", 201}, {"ts2", 201}, {"tsw", 201}}},
      {"POST /v1/twin-systems with twins",
       [](auto port, auto& t, auto& n) {
         return call(port, "POST", "/v1/twin-systems", t,
                     twin_system("new-tsx-" + n, boost::json::array{td("urn:authz:new-" + n)}));
       },
       {{"op", 201}, {"ts", 201}, {"ts2", 201}}},
      {"PUT /v1/twin-systems/{id}",
       [](auto port, auto& t, auto& n) {
         return call(port, "PUT", "/v1/twin-systems/ts-" + n, t, twin_system("ts-" + n));
       },
       {{"op", 200}, {"ts", 200}}},
      {"PATCH /v1/twin-systems/{id}",
       [](auto port, auto& t, auto& n) {
         return call(port, "PATCH", "/v1/twin-systems/ts-" + n, t, R"({"name":"renamed"})", kMerge);
       },
       {{"op", 200}, {"ts", 200}}},
      {"DELETE /v1/twin-systems/{id}",
       [](auto port, auto& t, auto& n) { return call(port, "DELETE", "/v1/twin-systems/ts-" + n, t); },
       {{"op", 204}, {"ts", 204}}},
      {"POST /v1/twin-systems/{id}/heartbeat",
       [](auto port, auto& t, auto& n) {
         return call(port, "POST", "/v1/twin-systems/ts-" + n + "/heartbeat", t);
       },
       {{"op", 200}, {"ts", 200}}},
      // Twins of a twin system: twins:publish and the system's owner.
      {"POST /v1/twin-systems/{id}/twins",
       [](auto port, auto& t, auto& n) {
         return call(port, "POST", "/v1/twin-systems/ts-" + n + "/twins", t,
                     boost::json::serialize(td("urn:authz:added-" + n)), kTd);
       },
       {{"op", 201}, {"ts", 201}}},
      {"PUT /v1/twin-systems/{id}/twins/{twin}",
       [](auto port, auto& t, auto& n) {
         return call(port, "PUT", "/v1/twin-systems/ts-" + n + "/twins/urn:authz:t-" + n, t,
                     boost::json::serialize(td("urn:authz:t-" + n, "Replaced")), kTd);
       },
       {{"op", 200}, {"ts", 200}}},
      {"DELETE /v1/twin-systems/{id}/twins/{twin}",
       [](auto port, auto& t, auto& n) {
         return call(port, "DELETE", "/v1/twin-systems/ts-" + n + "/twins/urn:authz:t-" + n, t);
       },
       {{"op", 204}, {"ts", 204}}},
      // The WoT directory: a new TD is a directory twin held by its publisher (a twin-system principal with
      // twins:publish, or an operator); a stored twin is changed by its holder.
      {"POST /things",
       [](auto port, auto& t, auto&) {
         return call(port, "POST", "/things", t, boost::json::serialize(td("")), kTd);
       },
       {{"op", 201}, {"ts", 201}, {"ts2", 201}}},
      {"PUT /things/{id} (new)",
       [](auto port, auto& t, auto& n) {
         return call(port, "PUT", "/things/urn:authz:new-dir-" + n, t,
                     boost::json::serialize(td("urn:authz:new-dir-" + n)), kTd);
       },
       {{"op", 201}, {"ts", 201}, {"ts2", 201}}},
      {"PUT /things/{id} (twin of a twin system)",
       [](auto port, auto& t, auto& n) {
         return call(port, "PUT", "/things/urn:authz:t-" + n, t,
                     boost::json::serialize(td("urn:authz:t-" + n, "Replaced")), kTd);
       },
       {{"op", 204}, {"ts", 204}}},
      {"PATCH /things/{id} (twin of a twin system)",
       [](auto port, auto& t, auto& n) {
         return call(port, "PATCH", "/things/urn:authz:t-" + n, t, R"({"title":"Patched"})", kMerge);
       },
       {{"op", 204}, {"ts", 204}}},
      {"DELETE /things/{id} (twin of a twin system)",
       [](auto port, auto& t, auto& n) { return call(port, "DELETE", "/things/urn:authz:t-" + n, t); },
       {{"op", 204}, {"ts", 204}}},
      {"PUT /things/{id} (directory twin)",
       [](auto port, auto& t, auto& n) {
         return call(port, "PUT", "/things/urn:authz:d-" + n, t,
                     boost::json::serialize(td("urn:authz:d-" + n, "Replaced")), kTd);
       },
       {{"op", 204}, {"ts", 204}}},
      {"PATCH /things/{id} (directory twin)",
       [](auto port, auto& t, auto& n) {
         return call(port, "PATCH", "/things/urn:authz:d-" + n, t, R"({"title":"Patched"})", kMerge);
       },
       {{"op", 204}, {"ts", 204}}},
      {"DELETE /things/{id} (directory twin)",
       [](auto port, auto& t, auto& n) { return call(port, "DELETE", "/things/urn:authz:d-" + n, t); },
       {{"op", 204}, {"ts", 204}}},
  };
  return kRows;
}

TEST_F(AuthorizationTest, EveryWriteRouteForEveryKindOfPrincipal) {
  int cell = 0;
  for (const auto& row : rows()) {
    for (const auto& caller : kCallers) {
      const auto n = std::to_string(cell++);
      setup(n);
      const auto it = row.expected.find(caller.name);
      const int expected = it == row.expected.end() ? 403 : it->second;
      const auto r = row.send(port(), token(caller.name), n);
      EXPECT_EQ(r.status, expected) << row.name << " by " << caller.name << " (" << caller.kind
                                    << "): " << r.body;
      if (expected == 403 && r.status == 403) {
        EXPECT_EQ(r.header("Content-Type"), "application/problem+json");
      }
    }
  }
}

// A refusal leaves nothing behind: the twin system a third-party-system principal tried to register with
// twins does not exist, and neither do its twins.
TEST_F(AuthorizationTest, ARefusedRegistrationStoresNothing) {
  auto r = call(port(), "POST", "/v1/twin-systems", token("tpp"),
                twin_system("refused-ts", boost::json::array{td("urn:authz:refused")}));
  ASSERT_EQ(r.status, 403) << r.body;
  EXPECT_NE(r.json().at("detail").as_string().find("twin-system"), std::string::npos) << r.body;
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/refused-ts", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/twins/urn:authz:refused", kAdmin).status, 404);
  // A twin-system principal without twins:publish may register its system, but not its twins.
  auto tsw = call(port(), "POST", "/v1/twin-systems", token("tsw"),
                  twin_system("refused-ts2", boost::json::array{td("urn:authz:refused2")}));
  ASSERT_EQ(tsw.status, 403) << tsw.body;
  EXPECT_NE(tsw.json().at("detail").as_string().find("twins:publish"), std::string::npos) << tsw.body;
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/refused-ts2", kAdmin).status, 404);
}

// A twin added to a twin system by an operator is held by the system's owner, who may then change it through
// the WoT directory too.
TEST_F(AuthorizationTest, TwinsAddedByAnOperatorBelongToTheSystemsOwner) {
  setup("op-added");
  ASSERT_EQ(call(port(), "POST", "/v1/twin-systems/ts-op-added/twins", token("op"),
                 boost::json::serialize(td("urn:authz:by-operator")), kTd)
                .status,
            201);
  EXPECT_EQ(call(port(), "PATCH", "/things/urn:authz:by-operator", token("ts"), R"({"title":"Mine"})", kMerge)
                .status,
            204);
  EXPECT_EQ(
      call(port(), "PATCH", "/things/urn:authz:by-operator", token("ts2"), R"({"title":"Not mine"})", kMerge)
          .status,
      403);
}

}  // namespace
}  // namespace twinbridge::testing
