#pragma once
// The syntax tree of an RFC 9535 JSONPath query, as parse_path_query() builds it and the Evaluator walks it.
// A tree is immutable once parsed and shared by every copy of the JsonPath that owns it.

#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "query/iregexp.hpp"

namespace twinbridge::query {

struct Expr;

// Members without a default of their own get {} so that designated initializers may leave them out.

enum class SelectorKind : std::uint8_t { name, wildcard, index, slice, filter };

struct Selector {
  SelectorKind kind = SelectorKind::wildcard;
  std::string name{};                    // name: the member name, unescaped UTF-8
  std::int64_t index = 0;                // index
  std::optional<std::int64_t> start{};   // slice
  std::optional<std::int64_t> end{};     // slice
  std::int64_t step = 1;                 // slice
  std::unique_ptr<const Expr> filter{};  // filter: a logical expression
};

struct Segment {
  bool descendant = false;  // a '..' segment: the selectors apply to the node and all its descendants
  std::vector<Selector> selectors{};
};

struct PathQuery {
  bool absolute = true;  // starts at the root '$'; otherwise at the current node '@'
  // An RFC 9535 singular query: child segments of one name or index each, so it selects at most one node.
  bool singular = true;
  std::vector<Segment> segments{};
};

enum class FunctionKind : std::uint8_t { length, count, match, search, value };

enum class CompareOp : std::uint8_t { eq, ne, lt, le, gt, ge };

// The declared types of RFC 9535 section 2.4.1.
enum class ExprType : std::uint8_t { value, logical, nodes };

enum class ExprKind : std::uint8_t {
  literal,      // a JSON literal: ValueType
  query,        // a filter query: NodesType
  function,     // a function call: the function's declared result type
  exists,       // operands[0], a query, selects at least one node: LogicalType
  negation,     // !operands[0]
  conjunction,  // every operand holds
  disjunction,  // some operand holds
  comparison,   // operands[0] op operands[1]
};

struct Expr {
  ExprKind kind = ExprKind::literal;
  std::size_t offset = 0;  // where it starts in the query text, for error messages
  boost::json::value literal{};
  PathQuery query{};
  FunctionKind function = FunctionKind::length;
  CompareOp op = CompareOp::eq;
  std::vector<Expr> operands{};  // function arguments, or the operands of the logical kinds and comparison
  // match()/search() whose pattern is a string literal: compiled at parse time. constant_pattern with no
  // regex means the literal is no I-Regexp, so the function is false for every input.
  bool constant_pattern = false;
  std::optional<IRegexp> regex{};
};

std::string_view function_name(FunctionKind function);

// The declared result type of an expression used as a function argument.
ExprType type_of(const Expr& expr);

}  // namespace twinbridge::query
