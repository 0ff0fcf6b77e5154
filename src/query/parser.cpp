#include "query/parser.hpp"

#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include "query/utf8.hpp"

namespace twinbridge::query {

namespace {

// RFC 9535 I-JSON range for indices and slice bounds: +-(2^53 - 1).
constexpr std::int64_t kMaxSafeInteger = (std::int64_t{1} << 53) - 1;

struct FunctionSpec {
  FunctionKind kind;
  std::string_view name;
  ExprType result;
  std::size_t arity;
  std::array<ExprType, 2> parameters;
};

constexpr std::array<FunctionSpec, 5> kFunctions = {{
    {FunctionKind::length, "length", ExprType::value, 1, {ExprType::value, ExprType::value}},
    {FunctionKind::count, "count", ExprType::value, 1, {ExprType::nodes, ExprType::nodes}},
    {FunctionKind::match, "match", ExprType::logical, 2, {ExprType::value, ExprType::value}},
    {FunctionKind::search, "search", ExprType::logical, 2, {ExprType::value, ExprType::value}},
    {FunctionKind::value, "value", ExprType::value, 1, {ExprType::nodes, ExprType::nodes}},
}};

const FunctionSpec& spec_of(FunctionKind kind) {
  for (const FunctionSpec& spec : kFunctions) {
    if (spec.kind == kind) return spec;
  }
  return kFunctions.front();
}

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_lower(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_alpha(char c) {
  return is_lower(c) || (c >= 'A' && c <= 'Z');
}
bool is_non_ascii(char c) {
  return static_cast<unsigned char>(c) >= 0x80;
}
// name-first; the text is valid UTF-8, so every non-ASCII byte belongs to a non-surrogate code point.
bool is_name_first(char c) {
  return is_alpha(c) || c == '_' || is_non_ascii(c);
}
bool is_name_char(char c) {
  return is_name_first(c) || is_digit(c);
}

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Recursive descent over the RFC 9535 ABNF. Every parse_* function returns nothing after recording the first
// error; callers then unwind.
class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  core::Result<PathQuery> parse() {
    if (text_.size() > kMaxQueryLength) {
      return error(kMaxQueryLength, "query is longer than " + std::to_string(kMaxQueryLength) + " bytes");
    }
    if (const std::size_t bad = utf8::find_invalid(text_); bad != std::string_view::npos) {
      return error(bad, "invalid UTF-8");
    }
    if (peek() != '$') return error(0, "a query starts with '$'");
    ++pos_;
    PathQuery query{.absolute = true};
    if (!parse_segments(query)) return error();
    if (!at_end()) {
      return error(pos_, is_blank(peek()) ? "unexpected whitespace" : "expected '.', '..' or '['");
    }
    return query;
  }

 private:
  std::unexpected<core::Error> error() const { return error(error_offset_, error_message_); }
  static std::unexpected<core::Error> error(std::size_t offset, const std::string& message) {
    return core::fail_at(core::Errc::bad_request, "",
                         "invalid JSONPath at offset " + std::to_string(offset) + ": " + message);
  }

  // Records the first error (later ones are its consequences); returns std::nullopt to pass upwards.
  std::nullopt_t fail(std::size_t offset, std::string message) {
    if (!failed_) {
      failed_ = true;
      error_offset_ = offset;
      error_message_ = std::move(message);
    }
    return std::nullopt;
  }
  bool fail_bool(std::size_t offset, std::string message) {
    fail(offset, std::move(message));
    return false;
  }

  bool at_end() const { return pos_ >= text_.size(); }
  char peek(std::size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }
  void skip_blanks() {
    while (!at_end() && is_blank(text_[pos_])) ++pos_;
  }

  bool enter_nesting(std::size_t offset) {
    if (++depth_ > kMaxNesting) {
      return fail_bool(offset, "brackets and parentheses nest deeper than " + std::to_string(kMaxNesting));
    }
    return true;
  }
  void leave_nesting() { --depth_; }

  // segments = *(S segment)
  bool parse_segments(PathQuery& query) {
    while (true) {
      const std::size_t before = pos_;
      skip_blanks();
      if (peek() != '[' && peek() != '.') {
        pos_ = before;  // the blanks belong to whatever follows the query
        return true;
      }
      const std::size_t start = pos_;
      auto segment = parse_segment();
      if (!segment) return false;
      // name-segment / index-segment: one name or index, and no blanks inside the brackets.
      const bool tight = text_[start] != '[' || (!is_blank(text_[start + 1]) && !is_blank(text_[pos_ - 2]));
      const bool singular = !segment->descendant && segment->selectors.size() == 1 && tight &&
                            (segment->selectors.front().kind == SelectorKind::name ||
                             segment->selectors.front().kind == SelectorKind::index);
      query.singular = query.singular && singular;
      query.segments.push_back(std::move(*segment));
    }
  }

  // segment = child-segment / descendant-segment
  std::optional<Segment> parse_segment() {
    Segment segment;
    if (peek() == '[') {
      if (!parse_bracketed_selection(segment.selectors)) return std::nullopt;
      return segment;
    }
    // '.' or '..'
    segment.descendant = peek(1) == '.';
    pos_ += segment.descendant ? 2 : 1;
    if (segment.descendant && peek() == '[') {
      if (!parse_bracketed_selection(segment.selectors)) return std::nullopt;
      return segment;
    }
    if (peek() == '*') {
      ++pos_;
      segment.selectors.push_back(Selector{.kind = SelectorKind::wildcard});
      return segment;
    }
    if (!is_name_first(peek())) {
      return fail(pos_, segment.descendant ? "expected a member name, '*' or '[' after '..'"
                                           : "expected a member name or '*' after '.'");
    }
    const std::size_t start = pos_;
    while (!at_end() && is_name_char(peek())) ++pos_;
    segment.selectors.push_back(
        Selector{.kind = SelectorKind::name, .name = std::string(text_.substr(start, pos_ - start))});
    return segment;
  }

  // bracketed-selection = "[" S selector *(S "," S selector) S "]"
  bool parse_bracketed_selection(std::vector<Selector>& selectors) {
    if (!enter_nesting(pos_)) return false;
    ++pos_;
    skip_blanks();
    while (true) {
      auto selector = parse_selector();
      if (!selector) return false;
      selectors.push_back(std::move(*selector));
      skip_blanks();
      if (peek() == ',') {
        ++pos_;
        skip_blanks();
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        leave_nesting();
        return true;
      }
      return fail_bool(pos_, "expected ',' or ']'");
    }
  }

  std::optional<Selector> parse_selector() {
    const char c = peek();
    if (c == '\'' || c == '"') {
      auto name = parse_string_literal();
      if (!name) return std::nullopt;
      return Selector{.kind = SelectorKind::name, .name = std::move(*name)};
    }
    if (c == '*') {
      ++pos_;
      return Selector{.kind = SelectorKind::wildcard};
    }
    if (c == '?') {
      ++pos_;
      skip_blanks();
      auto filter = parse_logical_expression();
      if (!filter) return std::nullopt;
      return Selector{.kind = SelectorKind::filter,
                      .filter = std::make_unique<const Expr>(std::move(*filter))};
    }
    if (c == '-' || is_digit(c) || c == ':') return parse_index_or_slice();
    if (c == '@' || c == '$') return fail(pos_, "a query inside brackets must follow '?'");
    return fail(pos_, "expected a selector");
  }

  // index-selector = int; slice-selector = [start S] ":" S [end S] [":" [S step ]]
  std::optional<Selector> parse_index_or_slice() {
    std::optional<std::int64_t> first;
    if (peek() != ':') {
      first = parse_int();
      if (!first) return std::nullopt;
    }
    const std::size_t after_first = pos_;
    skip_blanks();
    if (peek() != ':') {
      pos_ = after_first;
      return Selector{.kind = SelectorKind::index, .index = *first};
    }
    ++pos_;
    skip_blanks();
    Selector slice{.kind = SelectorKind::slice, .start = first};
    if (peek() == '-' || is_digit(peek())) {
      slice.end = parse_int();
      if (!slice.end) return std::nullopt;
      skip_blanks();
    }
    if (peek() == ':') {
      ++pos_;
      skip_blanks();
      if (peek() == '-' || is_digit(peek())) {
        const auto step = parse_int();
        if (!step) return std::nullopt;
        slice.step = *step;
      }
    }
    return slice;
  }

  // int = "0" / (["-"] DIGIT1 *DIGIT), within +-(2^53 - 1)
  std::optional<std::int64_t> parse_int() {
    const std::size_t start = pos_;
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (!is_digit(peek())) return fail(pos_, "expected a digit");
    if (peek() == '0') {
      ++pos_;
      if (negative) return fail(start, "-0 is not an integer here");
      if (is_digit(peek())) return fail(start, "leading zeros are not allowed");
      return 0;
    }
    std::int64_t value = 0;
    bool too_large = false;
    while (is_digit(peek())) {
      if (!too_large) {
        value = value * 10 + (peek() - '0');
        too_large = value > kMaxSafeInteger;
      }
      ++pos_;
    }
    if (too_large) return fail(start, "integer out of range (at most 2^53-1 in magnitude)");
    return negative ? -value : value;
  }

  // string-literal = %x22 *double-quoted %x22 / %x27 *single-quoted %x27; returns the unescaped UTF-8.
  std::optional<std::string> parse_string_literal() {
    const std::size_t start = pos_;
    const char quote = peek();
    ++pos_;
    std::string value;
    while (true) {
      if (at_end()) return fail(start, "unterminated string literal");
      const char c = peek();
      if (c == quote) {
        ++pos_;
        return value;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        return fail(pos_, "control character in a string literal (write it as an escape)");
      }
      if (c != '\\') {
        value.push_back(c);
        ++pos_;
        continue;
      }
      const std::size_t escape = pos_;
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case 'b':
          value.push_back('\b');
          break;
        case 'f':
          value.push_back('\f');
          break;
        case 'n':
          value.push_back('\n');
          break;
        case 'r':
          value.push_back('\r');
          break;
        case 't':
          value.push_back('\t');
          break;
        case '/':
          value.push_back('/');
          break;
        case '\\':
          value.push_back('\\');
          break;
        case 'u': {
          const auto c32 = parse_unicode_escape(escape);
          if (!c32) return std::nullopt;
          utf8::append(value, *c32);
          break;
        }
        default:
          if (e != quote) return fail(escape, "invalid escape sequence");
          value.push_back(e);
      }
    }
  }

  // After "\u": four hex digits, and for a high surrogate a "\u" low surrogate after it.
  std::optional<char32_t> parse_unicode_escape(std::size_t escape) {
    const auto hex4 = [this]() -> std::optional<char32_t> {
      char32_t value = 0;
      for (int i = 0; i < 4; ++i) {
        const int digit = hex_value(peek());
        if (digit < 0) return std::nullopt;
        value = value * 16 + static_cast<char32_t>(digit);
        ++pos_;
      }
      return value;
    };
    const auto high = hex4();
    if (!high) return fail(escape, "\\u needs four hex digits");
    if (*high >= 0xDC00 && *high <= 0xDFFF) return fail(escape, "unpaired surrogate in \\u escape");
    if (*high < 0xD800 || *high > 0xDBFF) return *high;
    if (peek() != '\\' || peek(1) != 'u') return fail(escape, "unpaired surrogate in \\u escape");
    pos_ += 2;
    const auto low = hex4();
    if (!low || *low < 0xDC00 || *low > 0xDFFF) return fail(escape, "unpaired surrogate in \\u escape");
    return 0x10000 + ((*high - 0xD800) << 10) + (*low - 0xDC00);
  }

  // filter-selector = "?" S logical-expr, after the "?" and blanks
  std::optional<Expr> parse_logical_expression() {
    auto expr = parse_or();
    if (!expr) return std::nullopt;
    return to_logical(std::move(*expr));
  }

  // logical-or-expr = logical-and-expr *(S "||" S logical-and-expr). A lone operand comes back as it is (a
  // bare literal, query or function), which only a function argument may be; the caller decides.
  std::optional<Expr> parse_or() { return parse_chain(ExprKind::disjunction); }

  // logical-and-expr = basic-expr *(S "&&" S basic-expr)
  std::optional<Expr> parse_and() { return parse_chain(ExprKind::conjunction); }

  std::optional<Expr> parse_chain(ExprKind kind) {
    const bool is_or = kind == ExprKind::disjunction;
    const char symbol = is_or ? '|' : '&';
    const std::size_t start = pos_;
    auto first = is_or ? parse_and() : parse_basic();
    if (!first) return std::nullopt;
    Expr chain{.kind = kind, .offset = start};
    while (true) {
      const std::size_t before = pos_;
      skip_blanks();
      if (peek() != symbol || peek(1) != symbol) {
        pos_ = before;
        break;
      }
      pos_ += 2;
      skip_blanks();
      if (chain.operands.empty()) {
        auto logical = to_logical(std::move(*first));
        if (!logical) return std::nullopt;
        chain.operands.push_back(std::move(*logical));
      }
      auto next = is_or ? parse_and() : parse_basic();
      if (!next) return std::nullopt;
      auto logical = to_logical(std::move(*next));
      if (!logical) return std::nullopt;
      chain.operands.push_back(std::move(*logical));
    }
    if (chain.operands.empty()) return first;
    return chain;
  }

  // basic-expr = paren-expr / comparison-expr / test-expr
  std::optional<Expr> parse_basic() {
    const std::size_t start = pos_;
    if (peek() == '!') {
      ++pos_;
      skip_blanks();
      std::optional<Expr> operand;
      if (peek() == '(') {
        operand = parse_parenthesized();
      } else {
        operand = parse_primary();
        if (operand && operand->kind == ExprKind::literal) {
          return fail(operand->offset, "'!' must be followed by a query, a function or '('");
        }
        if (operand) operand = to_logical(std::move(*operand));
      }
      if (!operand) return std::nullopt;
      Expr negation{.kind = ExprKind::negation, .offset = start};
      negation.operands.push_back(std::move(*operand));
      return negation;
    }
    if (peek() == '(') return parse_parenthesized();

    auto left = parse_primary();
    if (!left) return std::nullopt;
    const std::size_t before = pos_;
    skip_blanks();
    const auto op = parse_comparison_op();
    if (!op) {
      pos_ = before;
      return left;
    }
    skip_blanks();
    auto right = parse_primary();
    if (!right) return std::nullopt;
    if (!check_comparable(*left) || !check_comparable(*right)) return std::nullopt;
    Expr comparison{.kind = ExprKind::comparison, .offset = start, .op = *op};
    comparison.operands.push_back(std::move(*left));
    comparison.operands.push_back(std::move(*right));
    return comparison;
  }

  std::optional<CompareOp> parse_comparison_op() {
    const char c = peek();
    const bool equals_follows = peek(1) == '=';
    if (c == '=' && equals_follows) {
      pos_ += 2;
      return CompareOp::eq;
    }
    if (c == '!' && equals_follows) {
      pos_ += 2;
      return CompareOp::ne;
    }
    if (c == '<' || c == '>') {
      pos_ += equals_follows ? 2 : 1;
      if (c == '<') return equals_follows ? CompareOp::le : CompareOp::lt;
      return equals_follows ? CompareOp::ge : CompareOp::gt;
    }
    return std::nullopt;
  }

  // paren-expr = "(" S logical-expr S ")", at the "("
  std::optional<Expr> parse_parenthesized() {
    if (!enter_nesting(pos_)) return std::nullopt;
    ++pos_;
    skip_blanks();
    auto inner = parse_logical_expression();
    if (!inner) return std::nullopt;
    skip_blanks();
    if (peek() != ')') return fail(pos_, "expected ')'");
    ++pos_;
    leave_nesting();
    return inner;
  }

  // A literal, a filter query or a function expression.
  std::optional<Expr> parse_primary() {
    const std::size_t start = pos_;
    const char c = peek();
    if (c == '@' || c == '$') {
      ++pos_;
      Expr expr{.kind = ExprKind::query, .offset = start};
      expr.query.absolute = c == '$';
      if (!parse_segments(expr.query)) return std::nullopt;
      return expr;
    }
    if (c == '\'' || c == '"') {
      auto value = parse_string_literal();
      if (!value) return std::nullopt;
      return Expr{.kind = ExprKind::literal, .offset = start, .literal = boost::json::string(*value)};
    }
    if (c == '-' || is_digit(c)) return parse_number();
    if (is_lower(c)) {
      while (is_lower(peek()) || is_digit(peek()) || peek() == '_') ++pos_;
      const std::string_view name = text_.substr(start, pos_ - start);
      if (peek() == '(') return parse_function(name, start);
      if (name == "true" || name == "false") {
        return Expr{.kind = ExprKind::literal, .offset = start, .literal = name == "true"};
      }
      if (name == "null") return Expr{.kind = ExprKind::literal, .offset = start, .literal = nullptr};
      for (const FunctionSpec& spec : kFunctions) {
        if (spec.name == name) return fail(pos_, "expected '(' right after the function name");
      }
    }
    return fail(start, "expected a literal, a query or a function");
  }

  // number = (int / "-0") [ frac ] [ exp ]
  std::optional<Expr> parse_number() {
    const std::size_t start = pos_;
    if (peek() == '-') ++pos_;
    if (!is_digit(peek())) return fail(pos_, "expected a digit");
    if (peek() == '0') {
      ++pos_;
      if (is_digit(peek())) return fail(start, "leading zeros are not allowed");
    } else {
      while (is_digit(peek())) ++pos_;
    }
    bool integer = true;
    if (peek() == '.') {
      ++pos_;
      if (!is_digit(peek())) return fail(pos_, "expected a digit after '.'");
      while (is_digit(peek())) ++pos_;
      integer = false;
    }
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit(peek())) return fail(pos_, "expected a digit in the exponent");
      while (is_digit(peek())) ++pos_;
      integer = false;
    }
    const std::string_view token = text_.substr(start, pos_ - start);
    Expr expr{.kind = ExprKind::literal, .offset = start};
    if (integer) {
      std::int64_t value = 0;
      const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
      if (ec == std::errc() && end == token.data() + token.size()) {
        expr.literal = value;
        return expr;
      }
    }
    double value = 0;
    const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value);
    if (ec != std::errc() || end != token.data() + token.size()) return fail(start, "number out of range");
    expr.literal = value;
    return expr;
  }

  // function-expr = function-name "(" S [function-argument *(S "," S function-argument)] S ")", at the "("
  std::optional<Expr> parse_function(std::string_view name, std::size_t start) {
    const FunctionSpec* spec = nullptr;
    for (const FunctionSpec& candidate : kFunctions) {
      if (candidate.name == name) spec = &candidate;
    }
    if (spec == nullptr) return fail(start, "unknown function '" + std::string(name) + "'");
    if (!enter_nesting(pos_)) return std::nullopt;
    ++pos_;
    skip_blanks();
    Expr call{.kind = ExprKind::function, .offset = start, .function = spec->kind};
    if (peek() != ')') {
      while (true) {
        auto argument = parse_or();
        if (!argument) return std::nullopt;
        call.operands.push_back(std::move(*argument));
        skip_blanks();
        if (peek() == ',') {
          ++pos_;
          skip_blanks();
          continue;
        }
        if (peek() == ')') break;
        return fail(pos_, "expected ',' or ')'");
      }
    }
    ++pos_;
    leave_nesting();

    const std::string display = std::string(name) + "()";
    if (call.operands.size() != spec->arity) {
      return fail(start, display + " takes " + std::to_string(spec->arity) +
                             (spec->arity == 1 ? " argument" : " arguments"));
    }
    for (std::size_t i = 0; i < call.operands.size(); ++i) {
      if (!check_argument(call.operands[i], spec->parameters[i], display, i + 1)) return std::nullopt;
    }
    if (spec->kind == FunctionKind::match || spec->kind == FunctionKind::search) {
      const Expr& pattern = call.operands[1];
      if (pattern.kind == ExprKind::literal && pattern.literal.is_string()) {
        const boost::json::string& text = pattern.literal.get_string();
        auto regex = IRegexp::compile(std::string_view(text.data(), text.size()));
        if (!regex && regex.error() == IRegexp::Failure::too_complex) {
          return fail(pattern.offset, "regular expression is too complex");
        }
        call.constant_pattern = true;
        if (regex) call.regex = std::move(*regex);
      }
    }
    return call;
  }

  // RFC 9535 section 2.4.3: whether an argument fits its parameter's declared type; converts a query or a
  // NodesType function to LogicalType where that parameter asks for it.
  bool check_argument(Expr& argument, ExprType parameter, const std::string& function, std::size_t position) {
    const std::string where = "argument " + std::to_string(position) + " of " + function;
    const ExprType type = type_of(argument);
    switch (parameter) {
      case ExprType::value:
        if (argument.kind == ExprKind::query && !argument.query.singular) {
          return fail_bool(
              argument.offset,
              where + " must be a singular query: one name or index per segment, no blanks inside brackets");
        }
        if (argument.kind == ExprKind::query || type == ExprType::value) return true;
        return fail_bool(argument.offset, where +
                                              " must be a value: a literal, a singular query or a function "
                                              "returning a value");
      case ExprType::nodes:
        if (type == ExprType::nodes) return true;
        return fail_bool(argument.offset, where + " must be a query");
      case ExprType::logical: {
        auto logical = to_logical(std::move(argument));
        if (!logical) return false;
        argument = std::move(*logical);
        return true;
      }
    }
    return true;
  }

  // A literal, a singular query or a ValueType function: what may stand on either side of a comparison.
  bool check_comparable(const Expr& expr) {
    if (expr.kind == ExprKind::query && !expr.query.singular) {
      return fail_bool(expr.offset,
                       "only a singular query can be compared: one name or index per segment, no blanks "
                       "inside brackets");
    }
    if (expr.kind == ExprKind::function && type_of(expr) != ExprType::value) {
      return fail_bool(expr.offset, "the result of " + std::string(function_name(expr.function)) +
                                        "() cannot be compared");
    }
    return true;
  }

  // Where a logical expression is due: a query becomes an existence test; a literal or a ValueType function
  // is not well-typed there.
  std::optional<Expr> to_logical(Expr expr) {
    switch (expr.kind) {
      case ExprKind::literal:
        return fail(expr.offset, "a literal cannot be a filter on its own; compare it with something");
      case ExprKind::query: {
        Expr exists{.kind = ExprKind::exists, .offset = expr.offset};
        exists.operands.push_back(std::move(expr));
        return exists;
      }
      case ExprKind::function:
        if (type_of(expr) == ExprType::value) {
          return fail(expr.offset, "the result of " + std::string(function_name(expr.function)) +
                                       "() must be compared with something");
        }
        return expr;
      default:
        return expr;
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  int depth_ = 0;
  bool failed_ = false;
  std::size_t error_offset_ = 0;
  std::string error_message_;
};

}  // namespace

std::string_view function_name(FunctionKind function) {
  return spec_of(function).name;
}

ExprType type_of(const Expr& expr) {
  switch (expr.kind) {
    case ExprKind::literal:
      return ExprType::value;
    case ExprKind::query:
      return ExprType::nodes;
    case ExprKind::function:
      return spec_of(expr.function).result;
    default:
      return ExprType::logical;
  }
}

core::Result<PathQuery> parse_path_query(std::string_view text) {
  return Parser(text).parse();
}

}  // namespace twinbridge::query
