// Integration tests of query budgets against the real server (issue: unbounded queries, OWASP API4): the
// expensive queries of the findings answer 422 query-too-costly naming the limit and the parameter, the
// server keeps answering, a query stops when its client goes away, and one principal's queries never take
// every worker.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

std::string td(const std::string& title, std::size_t description_bytes = 16) {
  boost::json::object t{
      {"@context", "https://www.w3.org/2022/wot/td/v1.1"},
      {"title", title},
      {"description", std::string(description_bytes, 'a')},
      {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
      {"security", "nosec_sc"},
      {"properties",
       {{"level", {{"type", "number"}, {"forms", boost::json::array{{{"href", "https://x.example/l"}}}}}}}}};
  return boost::json::serialize(t);
}

std::string encode(const std::string& text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string union_of_wildcards(int n) {
  std::string q = "$[*";
  for (int i = 1; i < n; ++i) q += ",*";
  return q + "]";
}

// The value of one series of /metrics (0 when absent).
double metric(std::uint16_t port, const std::string& series) {
  const auto body = fetch(port, {"GET", "/metrics"}).body;
  const auto at = body.find(series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(body.substr(at + series.size() + 1));
}

template <class F>
bool eventually(F condition, std::chrono::seconds within = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void expect_too_costly(const HttpResponse& r, const std::string& parameter, const std::string& setting) {
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(r.header("Content-Type"), "application/problem+json");
  const auto body = r.json();
  EXPECT_EQ(body.at("type"), "urn:twinbridge:problem:query-too-costly");
  EXPECT_EQ(body.at("errors").at(0).at("parameter").as_string(), parameter);
  EXPECT_NE(std::string(body.at("detail").as_string()).find(setting), std::string::npos) << r.body;
}

// Small budgets, so that the findings' queries exceed them in a short test.
class QueryBudgetTest : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    start_server({"--query-max-nodes-selected", "1000", "--query-max-nodes-visited", "20000",
                  "--query-max-regex-steps", "2000000", "--query-max-output-bytes", "65536"});
    for (int i = 0; i < 60; ++i) {
      auto r = call(port(), "PUT", "/things/urn:budget:" + std::to_string(i), kAdmin,
                    td("t" + std::to_string(i)), kTd);
      ASSERT_EQ(r.status, 201) << r.body;
    }
    auto big = call(port(), "PUT", "/things/urn:budget:long", kAdmin, td("long", 200'000), kTd);
    ASSERT_EQ(big.status, 201) << big.body;
  }
};

TEST_F(QueryBudgetTest, AWideUnionIsStoppedAtTheSelectedNodesLimit) {
  const auto r = call(port(), "GET", "/search/jsonpath?query=" + encode(union_of_wildcards(300)), kAdmin);
  expect_too_costly(r, "query", "query.max_nodes_selected");
  // The server goes on answering, and a reasonable search still works.
  EXPECT_EQ(fetch(port(), {"GET", "/healthz"}).status, 200);
  const auto ok = call(port(), "GET", "/search/jsonpath?query=" + encode("$[?@.title == 't7'].id"), kAdmin);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(boost::json::serialize(ok.json()), R"(["urn:budget:7"])");
}

TEST_F(QueryBudgetTest, NestedDescendantSegmentsAreStoppedAtTheVisitedNodesLimit) {
  // A TD with a deep data schema: nested descendant segments visit about depth^3 nodes below it.
  boost::json::value schema = {{"type", "number"}};
  for (int i = 0; i < 25; ++i) {
    schema = {{"type", "object"}, {"properties", {{"n", schema}}}};
  }
  auto deep = boost::json::parse(td("deep")).as_object();
  deep["properties"].as_object()["level"].as_object()["properties"] = schema.at("properties");
  deep["properties"].as_object()["level"].as_object()["type"] = "object";
  auto put = call(port(), "PUT", "/things/urn:budget:deep", kAdmin, boost::json::serialize(deep), kTd);
  ASSERT_EQ(put.status, 201) << put.body;
  // The finding was $..*..*..*; this one visits as much and selects nothing, so the visits are the limit.
  const auto r = call(port(), "GET", "/search/jsonpath?query=" + encode("$..*..*..[?@ == 'zzz']"), kAdmin);
  expect_too_costly(r, "query", "query.max_nodes_visited");
}

TEST_F(QueryBudgetTest, AnAnswerLargerThanTheOutputLimitIsRefused) {
  // Every TD is selected (61 nodes, within the selected limit), but together they exceed 64 KiB.
  const auto r = call(port(), "GET", "/search/jsonpath?query=" + encode("$[*]"), kAdmin);
  expect_too_costly(r, "query", "query.max_output_bytes");
}

TEST_F(QueryBudgetTest, AnExpensiveRegularExpressionIsStoppedInEveryCollectionFilter) {
  const std::string filter = "$[?search(@.description, '[a-z]{0,4900}z')]";
  expect_too_costly(call(port(), "GET", "/v1/twins?filter=" + encode(filter), kAdmin), "filter",
                    "query.max_regex_steps");
  expect_too_costly(call(port(), "GET", "/search/jsonpath?query=" + encode(filter), kAdmin), "query",
                    "query.max_regex_steps");
  // Systems too: a registration with a member long enough for the same pattern to cost too much.
  boost::json::object system{
      {"type", "payment"},
      {"name", "long notes"},
      {"properties", {{"notes", std::string(5000, 'a')}}},
      {"service_charge", {{"model", "per-call"}, {"amount", 1}, {"currency", "EUR"}, {"unit", "call"}}},
      {"service_level", {{"availability", 99.9}, {"latency_ms", 250}}},
      {"endpoints", {{"base_url", "https://notes.example/api"}}},
      {"apis", boost::json::array{{{"name", "pay"}, {"method", "POST"}, {"path", "/p"}}}}};
  auto created = call(port(), "POST", "/v1/third-party-systems", kAdmin, boost::json::serialize(system));
  ASSERT_EQ(created.status, 201) << created.body;
  expect_too_costly(
      call(port(), "GET",
           "/v1/third-party-systems?filter=" + encode("$[?search(@.properties.notes, '[a-z]{0,4900}z')]"),
           kAdmin),
      "filter", "query.max_regex_steps");
  // Each stopped query is counted by limit.
  EXPECT_GE(metric(port(), R"(twinbridge_queries_stopped_total{limit="regex_steps"})"), 3);
}

// Budgets large enough for a query to run for a long time, to see it stop when its client leaves, and to
// see a second principal served meanwhile.
class LongQueryTest : public SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    start_server({"--query-max-regex-steps", "1000000000000", "--query-max-time-ms", "600000",
                  "--query-workers", "2", "--query-max-queued-per-principal", "1"});
    // Three TDs with ~900 KB descriptions: the pattern below costs ~4.4e9 steps on each.
    for (int i = 0; i < 3; ++i) {
      auto r = call(port(), "PUT", "/things/urn:long:" + std::to_string(i), kAdmin, td("long", 900'000), kTd);
      ASSERT_EQ(r.status, 201) << r.body;
    }
  }
  static inline const std::string kSlowFilter =
      "/v1/twins?filter=" + encode("$[?search(@.description, '[a-z]{0,4900}z')]");

  // Sends the slow query on a new connection without waiting for its answer.
  static std::unique_ptr<Connection> start_slow(const std::string& token) {
    auto c = std::make_unique<Connection>(port(), std::chrono::seconds(30));
    EXPECT_TRUE(c->send(serialize(Request("GET", kSlowFilter, "", {{"Authorization", "Bearer " + token}}))));
    return c;
  }
};

TEST_F(LongQueryTest, AQueryStopsWhenItsClientGoesAway) {
  const std::string series = R"(twinbridge_queries_stopped_total{limit="cancelled"})";
  const double before = metric(port(), series);
  auto c = start_slow(kAdmin);
  // Wait until it runs (a worker is busy), then leave.
  ASSERT_TRUE(eventually([&] { return metric(port(), R"(twinbridge_query_jobs{state="running"})") >= 1; }));
  c.reset();
  EXPECT_TRUE(eventually([&] { return metric(port(), series) >= before + 1; }));
  EXPECT_TRUE(eventually([&] { return metric(port(), R"(twinbridge_query_jobs{state="running"})") == 0; }));
}

TEST_F(LongQueryTest, OnePrincipalsQueriesNeverTakeEveryWorker) {
  const auto greedy = principal("greedy-reader", "metaverse-system");
  const auto polite = principal("polite-reader", "metaverse-system");
  // Two slow queries of one principal: one runs, one waits (it may not run on the second worker)...
  auto first = start_slow(greedy);
  auto second = start_slow(greedy);
  ASSERT_TRUE(eventually([&] {
    return metric(port(), R"(twinbridge_query_jobs{state="running"})") >= 1 &&
           metric(port(), R"(twinbridge_query_jobs{state="queued"})") >= 1;
  }));
  // ... a third is refused at once: that principal already has the most queries waiting.
  auto refused = call(port(), "GET", kSlowFilter, greedy);
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.header("Retry-After"), "1");
  // Another principal's filtered discovery is answered meanwhile, on the other worker.
  auto served = call(port(), "GET", "/v1/twins?filter=" + encode("$[?@.title == 'nothing']"), polite);
  EXPECT_EQ(served.status, 200) << served.body;
  first.reset();
  second.reset();
  EXPECT_TRUE(eventually([&] { return metric(port(), R"(twinbridge_query_jobs{state="running"})") == 0; }));
}

}  // namespace
}  // namespace twinbridge::testing
