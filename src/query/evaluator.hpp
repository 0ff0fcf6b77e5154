#pragma once
// Evaluates a parsed JSONPath query (syntax.hpp) against a JSON document, RFC 9535 section 2: a boost::json
// value (Node = const boost::json::value*) or packed bytes (Node = core::packed::Ref, core/packed_json.hpp),
// through the same code; evaluator.cpp instantiates both.
//
// One Evaluator serves one evaluation: it owns the scratch state of that run (the arena of normalized-path
// steps and a cache of regular expressions compiled from document strings) and is used by one thread.
// Every unit of work is charged to the evaluation's QueryBudget (budget.hpp): each node reached, each node
// selected by the outermost query, each pair compared, each step of a regular expression; once the budget is
// exhausted every loop stops, and what was selected is incomplete (the caller checks the budget).
// Segments are walked depth-first with an explicit stack, so a deep document cannot overflow the call stack;
// recursion only follows the nesting of filter expressions, which the parser bounds.

#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/packed_json.hpp"
#include "query/budget.hpp"
#include "query/syntax.hpp"

namespace twinbridge::query {

// A selected node: its value, and its normalized path as an index into the Evaluator's path arena (kNoPath
// when the evaluation does not record paths).
template <class Node>
struct BasicNodeRef {
  Node value{};
  std::uint32_t path = 0;
};

inline constexpr std::uint32_t kNoPath = std::numeric_limits<std::uint32_t>::max();
inline constexpr std::uint32_t kRootPath = 0;

template <class Node>
class BasicEvaluator {
 public:
  using NodeRef = BasicNodeRef<Node>;

  // `budget` (null: unlimited) must outlive the evaluator, or be replaced with set_budget() first.
  explicit BasicEvaluator(Node root, QueryBudget* budget = nullptr)
      : root_(root), budget_(budget != nullptr ? budget : &unlimited_) {}
  BasicEvaluator() : budget_(&unlimited_) {}  // reset() before use

  BasicEvaluator(const BasicEvaluator&) = delete;
  BasicEvaluator& operator=(const BasicEvaluator&) = delete;

  void set_budget(QueryBudget* budget) { budget_ = budget != nullptr ? budget : &unlimited_; }

  // Evaluates against another document from now on, keeping the scratch memory (and the compiled regular
  // expressions) of earlier runs: many documents, one query, few allocations.
  void reset(Node root) {
    root_ = root;
    steps_.clear();
  }

  // The root node, recording normalized paths for what is selected from it or not.
  NodeRef root(bool with_paths) const { return {root_, with_paths ? kRootPath : kNoPath}; }

  // Appends to out, in RFC 9535 order, the first `limit` nodes that query selects from start.
  void select(const PathQuery& query, NodeRef start, std::size_t limit, std::vector<NodeRef>& out);

  // The RFC 9535 normalized path of a node selected with paths, e.g. $['a'][0].
  std::string normalized_path(std::uint32_t path) const;

 private:
  // One step of a normalized path: a member name or an array index below the step `parent`.
  struct PathStep {
    std::uint32_t parent = kRootPath;
    bool is_name = false;
    std::string_view name{};
    std::size_t index = 0;
  };

  // A ValueType result (RFC 9535 section 2.4.1): a node of the document, a value of the query (a literal, or
  // what a function computed), or Nothing.
  class Value {
   public:
    Value() = default;
    explicit Value(Node node) : node_(node) {}
    explicit Value(std::size_t count) : computed_(count), has_computed_(true) {}
    static Value of_literal(const boost::json::value* literal) {
      Value v;
      v.literal_ = literal;
      return v;
    }
    // The node, if the value is one (else a null Node).
    Node node() const { return node_; }
    // The query's value, if the value is one (else nullptr).
    const boost::json::value* literal() const { return has_computed_ ? &computed_ : literal_; }
    bool nothing() const { return !node_ && literal() == nullptr; }

   private:
    Node node_{};
    const boost::json::value* literal_ = nullptr;
    boost::json::value computed_;
    bool has_computed_ = false;
  };

  void apply_segment(const Segment& segment, NodeRef node, std::size_t limit, std::vector<NodeRef>& out);
  void apply_selector(const Selector& selector, NodeRef node, std::size_t limit, std::vector<NodeRef>& out);
  NodeRef member(NodeRef parent, std::string_view name, Node value);
  NodeRef element(NodeRef parent, std::size_t index, Node value);

  // The one node a singular query selects, or a null Node.
  Node select_singular(const PathQuery& query, NodeRef current) const;
  NodeRef start_of(const PathQuery& query, NodeRef current) const;

  bool test(const Expr& expr, NodeRef current);
  Value evaluate_value(const Expr& expr, NodeRef current);
  bool call_logical(const Expr& call, NodeRef current);
  const IRegexp* regex_for(std::string_view pattern);

  struct Pending {
    NodeRef node;
    std::size_t segment;
  };
  // Scratch of select(), one level per nesting of filter queries (select() re-enters through them); a deque,
  // so that a deeper level never moves a shallower one.
  struct Scratch {
    std::vector<Pending> pending;
    std::vector<NodeRef> children;
  };

  bool visit(std::uint64_t nodes = 1) { return budget_->visit(nodes); }
  bool alive() const { return budget_->ok(); }

  Node root_{};
  std::vector<Node> elements_;  // scratch of slices
  QueryBudget unlimited_ = QueryBudget::unlimited();
  QueryBudget* budget_;
  std::deque<Scratch> scratch_;
  std::size_t depth_ = 0;
  std::vector<PathStep> steps_;  // path id n (n >= 1) is steps_[n - 1]; kRootPath is '$'
  std::vector<std::pair<std::string, std::optional<IRegexp>>> regex_cache_;
};

using Evaluator = BasicEvaluator<const boost::json::value*>;
using PackedEvaluator = BasicEvaluator<core::packed::Ref>;
using NodeRef = BasicNodeRef<const boost::json::value*>;

}  // namespace twinbridge::query
