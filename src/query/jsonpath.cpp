#include "query/jsonpath.hpp"

#include <boost/json/value.hpp>

#include <limits>
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
  Evaluator evaluator(root, &budget);
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

std::vector<Node> JsonPath::select_nodes(const boost::json::value& root, QueryBudget& budget) const {
  Evaluator evaluator(root, &budget);
  std::vector<NodeRef> nodes;
  evaluator.select(*query_, evaluator.root(true), std::numeric_limits<std::size_t>::max(), nodes);
  std::vector<Node> result;
  result.reserve(nodes.size());
  for (const NodeRef& node : nodes) result.push_back({evaluator.normalized_path(node.path), node.value});
  return result;
}

JsonPath::Matcher::Matcher(const JsonPath& path, QueryBudget* budget)
    : query_(path.query_), evaluator_(std::make_unique<Evaluator>()) {
  evaluator_->set_budget(budget);
}

JsonPath::Matcher::~Matcher() = default;

bool JsonPath::Matcher::operator()(const boost::json::value& root) {
  evaluator_->reset(root);
  nodes_.clear();
  evaluator_->select(*query_, evaluator_->root(false), 1, nodes_);
  return !nodes_.empty();
}

bool JsonPath::matches(const boost::json::value& root) const {
  auto budget = QueryBudget::unlimited();
  return matches(root, budget);
}

bool JsonPath::matches(const boost::json::value& root, QueryBudget& budget) const {
  Evaluator evaluator(root, &budget);
  std::vector<NodeRef> nodes;
  evaluator.select(*query_, evaluator.root(false), 1, nodes);
  return !nodes.empty();
}

}  // namespace twinbridge::query
