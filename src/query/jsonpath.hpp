#pragma once
// RFC 9535 JSONPath queries over boost::json documents and packed ones (core/packed_json.hpp, the form the
// twin index keeps TDs in): discovery filters and the CLI select twins with them.
//
// JsonPath::parse() checks a query once (syntax, well-typedness of filters and functions, bounds) and keeps
// the parsed form; select*/matches then evaluate it against any number of documents. A JsonPath is a cheap
// handle to an immutable parsed query: copies share it, and any number of threads may evaluate the same
// JsonPath at once. The nodes returned point into the document passed in and are valid as long as it is.
//
// Supported: every selector (name, wildcard, index, slice, filter), child and descendant segments,
// comparisons,
// &&, ||, !, parentheses, existence tests, and the functions length, count, match, search and value, whose
// match/search patterns are RFC 9485 I-Regexps (see iregexp.hpp). Bounds: a query is at most kMaxQueryLength
// bytes and nests brackets and parentheses at most kMaxNesting deep (parser.hpp); indices are within
// +-(2^53-1).
//
// Evaluation may run under a QueryBudget (budget.hpp): a query from a client always does. The overloads that
// take one stop as soon as it is exhausted and return what they found so far; the caller checks budget.ok()
// and answers budget.error() instead.

#include <boost/json/fwd.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/packed_json.hpp"
#include "query/budget.hpp"

namespace twinbridge::query {

struct PathQuery;

// A selected node: its RFC 9535 normalized path (e.g. $['a'][0]) and its value inside the queried document.
struct Node {
  std::string path;
  const boost::json::value* value;
};
// The same in a packed document.
struct PackedNode {
  std::string path;
  core::packed::Ref value;
};

class JsonPath {
 public:
  // Parses and well-type-checks a query. On error: core::Errc::bad_request with a detail such as
  // "invalid JSONPath at offset 7: expected ']'" (a byte offset into query) and one FieldError whose pointer
  // is empty and whose detail repeats the message; the HTTP layer fills in the parameter's pointer.
  static core::Result<JsonPath> parse(std::string_view query);

  // The nodelist the query selects from root, in RFC 9535 order: values only.
  std::vector<const boost::json::value*> select(const boost::json::value& root) const;
  std::vector<const boost::json::value*> select(const boost::json::value& root, QueryBudget& budget) const;

  // The same nodelist with the normalized path of each node.
  std::vector<Node> select_nodes(const boost::json::value& root) const;
  std::vector<Node> select_nodes(const boost::json::value& root, QueryBudget& budget) const;
  std::vector<PackedNode> select_nodes(core::packed::Ref root) const;
  std::vector<PackedNode> select_nodes(core::packed::Ref root, QueryBudget& budget) const;

  // Whether the query selects at least one node; stops at the first one found.
  bool matches(const boost::json::value& root) const;
  bool matches(const boost::json::value& root, QueryBudget& budget) const;
  bool matches(core::packed::Ref root) const;
  bool matches(core::packed::Ref root, QueryBudget& budget) const;

  // matches() for many documents in a row (one thread): keeps the evaluation's scratch memory between them.
  // With a budget (may be null; it must outlive the matcher), every document's evaluation is charged to it.
  class Matcher {
   public:
    explicit Matcher(const JsonPath& path, QueryBudget* budget = nullptr);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    bool operator()(const boost::json::value& root);
    bool operator()(core::packed::Ref root);

   private:
    struct State;
    std::shared_ptr<const PathQuery> query_;
    std::unique_ptr<State> state_;
  };

  // The query text as given to parse().
  const std::string& text() const { return text_; }

 private:
  JsonPath(std::string text, std::shared_ptr<const PathQuery> query);

  std::string text_;
  std::shared_ptr<const PathQuery> query_;
};

}  // namespace twinbridge::query
