#include "query/jsonpath.hpp"

#include <boost/json/value.hpp>

#include <limits>
#include <optional>
#include <utility>

#include "query/evaluator.hpp"
#include "query/parser.hpp"

namespace twinbridge::query {

JsonPath::JsonPath(std::string text, std::shared_ptr<const PathQuery> query)
    : text_(std::move(text)), query_(std::move(query)) {}

core::Result<JsonPath> JsonPath::parse(std::string_view query) {
  auto parsed = parse_path_query(query);
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  return JsonPath(std::string(query), std::make_shared<const PathQuery>(std::move(*parsed)));
}

std::vector<const boost::json::value*> JsonPath::select(const boost::json::value& root) const {
  auto budget = QueryBudget::unlimited();
  return select(root, budget);
}

std::vector<const boost::json::value*> JsonPath::select(const boost::json::value& root,
                                                        QueryBudget& budget) const {
  Evaluator evaluator(&root, &budget);
  std::vector<NodeRef> nodes;
  evaluator.select(*query_, evaluator.root(false), std::numeric_limits<std::size_t>::max(), nodes);
  std::vector<const boost::json::value*> values;
  values.reserve(nodes.size());
  for (const NodeRef& node : nodes) values.push_back(node.value);
  return values;
}

std::vector<Node> JsonPath::select_nodes(const boost::json::value& root) const {
  auto budget = QueryBudget::unlimited();
  return select_nodes(root, budget);
}

namespace {

template <class Evaluator, class Result, class Root>
std::vector<Result> select_with_paths(const PathQuery& query, Root root, QueryBudget& budget) {
  Evaluator evaluator(root, &budget);
  std::vector<typename Evaluator::NodeRef> nodes;
  evaluator.select(query, evaluator.root(true), std::numeric_limits<std::size_t>::max(), nodes);
  std::vector<Result> result;
  result.reserve(nodes.size());
  for (const auto& node : nodes) result.push_back({evaluator.normalized_path(node.path), node.value});
  return result;
}

}  // namespace

std::vector<Node> JsonPath::select_nodes(const boost::json::value& root, QueryBudget& budget) const {
  return select_with_paths<Evaluator, Node>(*query_, &root, budget);
}

std::vector<PackedNode> JsonPath::select_nodes(core::packed::Ref root) const {
  auto budget = QueryBudget::unlimited();
  return select_nodes(root, budget);
}

std::vector<PackedNode> JsonPath::select_nodes(core::packed::Ref root, QueryBudget& budget) const {
  return select_with_paths<PackedEvaluator, PackedNode>(*query_, root, budget);
}

// The evaluator of each representation a matcher has met, with the scratch of its last run.
struct JsonPath::Matcher::State {
  QueryBudget* budget = nullptr;
  std::optional<Evaluator> boost;
  std::vector<NodeRef> boost_nodes;
  std::optional<PackedEvaluator> packed;
  std::vector<PackedEvaluator::NodeRef> packed_nodes;
};

namespace {

template <class Evaluator, class Node, class Nodes>
bool first_match(const PathQuery& query, std::optional<Evaluator>& evaluator, QueryBudget* budget, Node root,
                 Nodes& nodes) {
  if (!evaluator) {
    evaluator.emplace();
    evaluator->set_budget(budget);
  }
  evaluator->reset(root);
  nodes.clear();
  evaluator->select(query, evaluator->root(false), 1, nodes);
  return !nodes.empty();
}

template <class Evaluator, class Node>
bool matches_once(const PathQuery& query, Node root, QueryBudget& budget) {
  Evaluator evaluator(root, &budget);
  std::vector<typename Evaluator::NodeRef> nodes;
  evaluator.select(query, evaluator.root(false), 1, nodes);
  return !nodes.empty();
}

}  // namespace

JsonPath::Matcher::Matcher(const JsonPath& path, QueryBudget* budget)
    : query_(path.query_), state_(std::make_unique<State>()) {
  state_->budget = budget;
}

JsonPath::Matcher::~Matcher() = default;

bool JsonPath::Matcher::operator()(const boost::json::value& root) {
  return first_match(*query_, state_->boost, state_->budget, &root, state_->boost_nodes);
}

bool JsonPath::Matcher::operator()(core::packed::Ref root) {
  return first_match(*query_, state_->packed, state_->budget, root, state_->packed_nodes);
}

bool JsonPath::matches(const boost::json::value& root) const {
  auto budget = QueryBudget::unlimited();
  return matches(root, budget);
}

bool JsonPath::matches(const boost::json::value& root, QueryBudget& budget) const {
  return matches_once<Evaluator>(*query_, &root, budget);
}

bool JsonPath::matches(core::packed::Ref root) const {
  auto budget = QueryBudget::unlimited();
  return matches(root, budget);
}

bool JsonPath::matches(core::packed::Ref root, QueryBudget& budget) const {
  return matches_once<PackedEvaluator>(*query_, root, budget);
}

}  // namespace twinbridge::query
