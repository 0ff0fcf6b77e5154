// Queries under a QueryBudget: each limit stops an evaluation that would exceed it, at once, and says which.
#include "query/budget.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "query/iregexp.hpp"
#include "query/jsonpath.hpp"

namespace twinbridge::query {
namespace {

namespace json = boost::json;

// An array of `n` small objects, like a directory of TDs.
json::value directory(std::size_t n) {
  json::array all;
  for (std::size_t i = 0; i < n; ++i) {
    all.push_back(json::object{
        {"id", "urn:t:" + std::to_string(i)},
        {"title", "thing"},
        {"properties", json::object{{"a", json::object{{"type", "number"}}}, {"b", json::array{1, 2, 3}}}}});
  }
  return all;
}

JsonPath parse(const std::string& text) {
  auto path = JsonPath::parse(text);
  EXPECT_TRUE(path.has_value()) << text;
  return std::move(*path);
}

std::string union_of_wildcards(int n) {
  std::string q = "$[*";
  for (int i = 1; i < n; ++i) q += ",*";
  return q + "]";
}

TEST(QueryBudget, AWideUnionStopsAtTheSelectedNodesLimit) {
  const auto doc = directory(300);
  QueryLimits limits;
  limits.max_nodes_selected = 1000;
  QueryBudget budget(limits);
  const auto selected = parse(union_of_wildcards(300)).select(doc, budget);
  EXPECT_FALSE(budget.ok());
  EXPECT_EQ(budget.exhausted(), BudgetLimit::nodes_selected);
  // It stopped at once: not 90,000 nodes, and it never held more than one past the limit.
  EXPECT_LE(selected.size(), 1001u);
  EXPECT_LE(budget.nodes_visited(), 1001u);
  const auto error = budget.error("query");
  EXPECT_EQ(error.code, core::Errc::too_costly);
  ASSERT_EQ(error.fields.size(), 1u);
  EXPECT_EQ(error.fields[0].pointer, "query");
  EXPECT_EQ(error.fields[0].in, core::FieldIn::query);
  EXPECT_NE(error.detail.find("query.max_nodes_selected"), std::string::npos) << error.detail;
}

TEST(QueryBudget, NestedDescendantsStopAtTheVisitedNodesLimit) {
  const auto doc = directory(300);
  QueryLimits limits;
  limits.max_nodes_visited = 20'000;
  QueryBudget budget(limits);
  parse("$..*..*..*").select(doc, budget);
  EXPECT_EQ(budget.exhausted(), BudgetLimit::nodes_visited);
  EXPECT_LE(budget.nodes_visited(), 20'001u);
  EXPECT_NE(budget.error("query").detail.find("query.max_nodes_visited"), std::string::npos);
}

TEST(QueryBudget, ALargeRegularExpressionOverALongTextStopsAtTheRegexStepsLimit) {
  // The finding: search(@.description, '[a-z]{0,4900}z') over one 200 KB description took 20 s of CPU.
  json::array doc;
  doc.push_back(json::object{{"description", std::string(200'000, 'a')}});
  QueryLimits limits;
  limits.max_regex_steps = 1'000'000;
  QueryBudget budget(limits);
  const bool matched = parse("$[?search(@.description, '[a-z]{0,4900}z')]").matches(doc, budget);
  EXPECT_FALSE(matched);
  EXPECT_EQ(budget.exhausted(), BudgetLimit::regex_steps);
  EXPECT_LE(budget.regex_steps(), 1'000'000u + 10'000u);
}

TEST(QueryBudget, PatternsFromDocumentsAreChargedWhenCompiled) {
  json::array doc;
  for (int i = 0; i < 50; ++i) {
    doc.push_back(json::object{{"text", "abc"}, {"pattern", "[a-z]{0," + std::to_string(1000 + i) + "}z"}});
  }
  QueryLimits limits;
  limits.max_regex_steps = 20'000;
  QueryBudget budget(limits);
  parse("$[?match(@.text, @.pattern)]").select(doc, budget);
  EXPECT_EQ(budget.exhausted(), BudgetLimit::regex_steps);
}

TEST(QueryBudget, DeepComparisonsAreVisits) {
  // $[?@ == $[0]] compares whole documents with each other.
  const auto doc = directory(2000);
  QueryLimits limits;
  limits.max_nodes_visited = 10'000;
  QueryBudget budget(limits);
  parse("$[?@ == $[0]]").select(doc, budget);
  EXPECT_EQ(budget.exhausted(), BudgetLimit::nodes_visited);
}

TEST(QueryBudget, TimeIsReadFromTheGivenClock) {
  auto now = std::chrono::steady_clock::time_point{};
  const auto doc = directory(5000);
  QueryLimits limits;
  limits.max_time = std::chrono::milliseconds(100);
  // Every reading of the clock is 60 ms later than the one before: the second check is past the deadline.
  QueryBudget budget(limits, nullptr, [&now] { return now += std::chrono::milliseconds(60); });
  parse("$..*").select(doc, budget);
  EXPECT_EQ(budget.exhausted(), BudgetLimit::time);
  EXPECT_NE(budget.error("filter").detail.find("query.max_time_ms"), std::string::npos);
  EXPECT_EQ(budget.error("filter").fields.at(0).pointer, "filter");
}

TEST(QueryBudget, CancellationStopsTheQuery) {
  auto gone = std::make_shared<std::atomic<bool>>(true);
  const auto doc = directory(5000);
  QueryBudget budget(QueryLimits{}, gone);
  const auto selected = parse("$..*").select(doc, budget);
  EXPECT_EQ(budget.exhausted(), BudgetLimit::cancelled);
  EXPECT_LE(selected.size(), QueryBudget::kCheckEvery);
  EXPECT_EQ(budget.error("query").code, core::Errc::unavailable);
}

TEST(QueryBudget, TheObserverHearsOnceWhichLimit) {
  const auto doc = directory(300);
  QueryLimits limits;
  limits.max_nodes_selected = 10;
  QueryBudget budget(limits);
  int calls = 0;
  BudgetLimit heard = BudgetLimit::none;
  budget.on_exhausted([&](BudgetLimit l) {
    ++calls;
    heard = l;
  });
  parse("$[*]").select(doc, budget);
  EXPECT_FALSE(budget.select());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(heard, BudgetLimit::nodes_selected);
}

TEST(QueryBudget, AMatcherChargesEveryDocumentToOneBudget) {
  const auto doc = directory(1);
  QueryLimits limits;
  limits.max_nodes_visited = 1000;
  QueryBudget budget(limits);
  const auto path = parse("$[?@.title == 'thing']");
  JsonPath::Matcher matcher(path, &budget);
  int matched = 0;
  for (int i = 0; i < 10'000 && budget.ok(); ++i) matched += matcher(doc) ? 1 : 0;
  EXPECT_EQ(budget.exhausted(), BudgetLimit::nodes_visited);
  EXPECT_LT(matched, 1000);
}

TEST(QueryBudget, AQueryWithinItsBudgetAnswersAsWithout) {
  const auto doc = directory(100);
  QueryBudget budget;  // the defaults
  const auto path = parse("$[?@.properties.b[1] == 2].id");
  const auto limited = path.select(doc, budget);
  EXPECT_TRUE(budget.ok());
  EXPECT_EQ(limited, path.select(doc));
  EXPECT_EQ(limited.size(), 100u);
}

TEST(QueryBudget, UnlimitedNeverRunsOut) {
  auto budget = QueryBudget::unlimited();
  EXPECT_TRUE(budget.visit(1'000'000'000));
  EXPECT_TRUE(budget.regex(1'000'000'000));
  EXPECT_TRUE(budget.check());
  EXPECT_TRUE(budget.ok());
}

TEST(IRegexpBudget, AMatchStopsWhenTheBudgetRunsOut) {
  auto regex = IRegexp::compile("[a-z]{0,100}z");
  ASSERT_TRUE(regex.has_value());
  const std::string text(10'000, 'a');
  QueryLimits limits;
  limits.max_regex_steps = 5'000;
  QueryBudget budget(limits);
  EXPECT_FALSE(regex->search(text, &budget));
  EXPECT_EQ(budget.exhausted(), BudgetLimit::regex_steps);
  // Without a budget the same search answers (false: there is no z).
  EXPECT_FALSE(regex->search(text));
  EXPECT_TRUE(regex->search(text + "z"));
}

}  // namespace
}  // namespace twinbridge::query
