// RFC 9535 JSONPath through the public query::JsonPath API, as discovery filters and /search/jsonpath use it:
// parse the input as a query, then evaluate it on one small fixed document (every JSON type, nesting, names
// that need escaping, non-ASCII text).
//
// Checks: a refused query is a bad_request naming the byte offset; select(), select_nodes() and matches()
// agree with each other and with a reused Matcher; every normalized path of a selected node is itself a valid
// query that selects exactly that node (RFC 9535 section 2.7); the packed form of the document
// (core/packed_json.hpp, as the twin index keeps TDs) gives the same nodes at the same paths.
//
// Evaluation is in evaluate() alone, under a query budget as in the server.

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/packed_json.hpp"
#include "fuzz.hpp"
#include "query/jsonpath.hpp"

namespace {

using namespace twinbridge;

constexpr std::size_t kMaxPathsChecked = 64;

const boost::json::value& document() {
  static const boost::json::value doc = boost::json::parse(R"({
    "store": {
      "book": [
        {"category": "reference", "author": "Nigel Rees", "title": "Sayings of the Century", "price": 8.95},
        {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword of Honour", "price": 12.99,
         "isbn": "0-553-21311-3"}
      ],
      "bicycle": {"color": "red", "price": 399}
    },
    "a": [1, 2.5, -3, 1e300, null, true, false, "x", "caf\u00e9 \u2603 \ud834\udd1e", [], {}, [[0, [1]]],
          {"k": {"k": {"k": 1}}}],
    "o": {"": 0, "'": 1, "\"": 2, "\\": 3, "~/": 4, "\u0000": 5, "\u001f\u007f": 6, "A": "a", "b": "B"}
  })");
  return doc;
}

struct Evaluation {
  std::vector<const boost::json::value*> values;
  std::vector<query::Node> nodes;
  bool matches = false;
  bool matcher = false;
  bool complete = true;  // no budget ran out: the results may be compared
};

// Each evaluation runs under a budget, as the server's do: an expensive query is stopped, and its stop must
// be a well-formed problem naming the parameter.
query::QueryLimits fuzz_limits() {
  query::QueryLimits limits;
  limits.max_nodes_visited = 200'000;
  limits.max_nodes_selected = 20'000;
  limits.max_regex_steps = 2'000'000;
  limits.max_time = std::chrono::milliseconds(2'000);
  return limits;
}

Evaluation evaluate(const query::JsonPath& path, const boost::json::value& doc) {
  Evaluation e;
  query::QueryBudget values(fuzz_limits()), nodes(fuzz_limits()), matches(fuzz_limits()),
      matched(fuzz_limits());
  e.values = path.select(doc, values);
  e.nodes = path.select_nodes(doc, nodes);
  e.matches = path.matches(doc, matches);
  query::JsonPath::Matcher matcher(path, &matched);
  e.matcher = matcher(doc) && matcher(doc);
  for (const auto* budget : {&values, &nodes, &matches, &matched}) {
    if (budget->ok()) continue;
    e.complete = false;
    const auto error = budget->error("query");
    TB_FUZZ_CHECK(budget->exhausted() == query::BudgetLimit::cancelled ||
                  error.code == core::Errc::too_costly);
    TB_FUZZ_CHECK(budget->exhausted() == query::BudgetLimit::cancelled ||
                  error.fields.at(0).pointer == "query");
  }
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = fuzz::as_text(data, size);
  auto path = query::JsonPath::parse(text);
  if (!path) {
    TB_FUZZ_CHECK(path.error().code == core::Errc::bad_request);
    TB_FUZZ_CHECK(path.error().detail.starts_with("invalid JSONPath at offset "));
    return 0;
  }
  TB_FUZZ_CHECK(path->text() == text);
  const auto& doc = document();
  const Evaluation e = evaluate(*path, doc);
  if (!e.complete) return 0;
  TB_FUZZ_CHECK(e.values.size() == e.nodes.size());
  for (std::size_t i = 0; i < e.values.size(); ++i) TB_FUZZ_CHECK(e.values[i] == e.nodes[i].value);
  TB_FUZZ_CHECK(e.matches == !e.values.empty());
  TB_FUZZ_CHECK(e.matcher == e.matches);

  // The packed form of the document (the twin index's) selects the same nodes at the same paths.
  static const std::string packed = core::packed::pack(doc);
  const core::packed::Ref root(reinterpret_cast<const std::uint8_t*>(packed.data()));
  query::QueryBudget packed_budget(fuzz_limits()), packed_matches(fuzz_limits());
  const auto packed_nodes = path->select_nodes(root, packed_budget);
  const bool packed_match = path->matches(root, packed_matches);
  if (packed_budget.ok() && packed_matches.ok()) {
    TB_FUZZ_CHECK(packed_nodes.size() == e.nodes.size());
    for (std::size_t i = 0; i < std::min(e.nodes.size(), kMaxPathsChecked); ++i) {
      TB_FUZZ_CHECK(packed_nodes[i].path == e.nodes[i].path);
      TB_FUZZ_CHECK(core::packed::serialize(packed_nodes[i].value) ==
                    boost::json::serialize(*e.nodes[i].value));
    }
    TB_FUZZ_CHECK(packed_match == e.matches);
  }

  for (std::size_t i = 0; i < std::min(e.nodes.size(), kMaxPathsChecked); ++i) {
    const auto& node = e.nodes[i];
    auto normalized = query::JsonPath::parse(node.path);
    TB_FUZZ_CHECK(normalized.has_value());
    const auto selected = normalized->select_nodes(doc);
    TB_FUZZ_CHECK(selected.size() == 1);
    TB_FUZZ_CHECK(selected.front().value == node.value);
    TB_FUZZ_CHECK(selected.front().path == node.path);
  }
  return 0;
}
