#include "query/iregexp.hpp"

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "query/budget.hpp"
#include "query/unicode_category.hpp"
#include "query/utf8.hpp"

namespace twinbridge::query {

namespace {

constexpr std::uint32_t kUnbounded = std::numeric_limits<std::uint32_t>::max();

// Quantifier bounds above this cannot fit kMaxProgramSize anyway; stop reading digits there.
constexpr std::uint32_t kMaxQuantifier = 100000;

// The syntax tree of a pattern, which compile() then expands into instructions.
struct PatternNode {
  enum class Kind { atom, start, end, sequence, alternation, repeat };
  Kind kind = Kind::sequence;
  std::uint32_t class_index = 0;  // atom: the code points it matches
  std::uint32_t min = 0;          // repeat
  std::uint32_t max = 0;          // repeat; kUnbounded for '*', '+' and {n,}
  std::vector<PatternNode> children{};
};

// What SingleCharEsc may escape besides n, r and t (RFC 9485): ( ) * + - . ? [ \ ] ^ { | }
bool is_escapable(char32_t c) {
  return (c >= '(' && c <= '+') || c == '-' || c == '.' || c == '?' || (c >= '[' && c <= '^') ||
         (c >= '{' && c <= '}');
}

// NormalChar: any code point but the metacharacters ( ) * + . ? [ \ ] { | }
bool is_normal_char(char32_t c) {
  return !((c >= '(' && c <= '+') || c == '.' || c == '?' || (c >= '[' && c <= ']') ||
           (c >= '{' && c <= '}'));
}

// The names I-Regexp allows in \p{..} and \P{..}: every General Category but Cs, and the seven initials.
std::optional<std::uint32_t> iregexp_category_mask(std::u32string_view name) {
  if (name.empty() || name.size() > 2 || name == U"Cs") return std::nullopt;
  if (name.size() == 1 && std::u32string_view(U"LMNPZSC").find(name[0]) == std::u32string_view::npos) {
    return std::nullopt;
  }
  std::string ascii;
  for (const char32_t c : name) {
    if (c > 0x7F) return std::nullopt;
    ascii.push_back(static_cast<char>(c));
  }
  return unicode::category_mask(ascii);
}

}  // namespace

// Parses a pattern (RFC 9485 section 5 grammar) and emits the program of an IRegexp. Single use.
class IRegexpCompiler {
 public:
  using Range = IRegexp::Range;

  explicit IRegexpCompiler(std::u32string pattern) : pattern_(std::move(pattern)) {}

  std::expected<IRegexp, IRegexp::Failure> run() {
    PatternNode root;
    if (!parse_alternation(root, 0)) return std::unexpected(*failure_);
    if (pos_ != pattern_.size()) return std::unexpected(IRegexp::Failure::syntax);  // a stray ')'
    emit(root);
    push({IRegexp::Op::accept});
    if (failure_) return std::unexpected(*failure_);
    return std::move(result_);
  }

 private:
  bool fail(IRegexp::Failure failure) {
    if (!failure_) failure_ = failure;
    return false;
  }
  bool at_end() const { return pos_ >= pattern_.size(); }
  char32_t peek(std::size_t ahead = 0) const {
    return pos_ + ahead < pattern_.size() ? pattern_[pos_ + ahead] : utf8::kInvalid;
  }

  // i-regexp = branch *( "|" branch )
  bool parse_alternation(PatternNode& out, int depth) {
    PatternNode alternation{.kind = PatternNode::Kind::alternation};
    while (true) {
      PatternNode branch;
      if (!parse_branch(branch, depth)) return false;
      alternation.children.push_back(std::move(branch));
      if (peek() != '|') break;
      ++pos_;
    }
    if (alternation.children.size() == 1) {
      out = std::move(alternation.children.front());
    } else {
      out = std::move(alternation);
    }
    return true;
  }

  // branch = *piece
  bool parse_branch(PatternNode& out, int depth) {
    out = PatternNode{.kind = PatternNode::Kind::sequence};
    while (!at_end() && peek() != '|' && peek() != ')') {
      PatternNode piece;
      if (!parse_piece(piece, depth)) return false;
      out.children.push_back(std::move(piece));
    }
    return true;
  }

  // piece = atom [ quantifier ]
  bool parse_piece(PatternNode& out, int depth) {
    PatternNode atom;
    if (!parse_atom(atom, depth)) return false;
    std::uint32_t min = 0;
    std::uint32_t max = 0;
    switch (peek()) {
      case '*':
        ++pos_;
        min = 0;
        max = kUnbounded;
        break;
      case '+':
        ++pos_;
        min = 1;
        max = kUnbounded;
        break;
      case '?':
        ++pos_;
        min = 0;
        max = 1;
        break;
      case '{':
        ++pos_;
        if (!parse_range_quantifier(min, max)) return false;
        break;
      default:
        out = std::move(atom);
        return true;
    }
    out = PatternNode{.kind = PatternNode::Kind::repeat, .min = min, .max = max};
    out.children.push_back(std::move(atom));
    return true;
  }

  // range-quantifier = "{" QuantExact [ "," [ QuantExact ] ] "}", after the "{"
  bool parse_range_quantifier(std::uint32_t& min, std::uint32_t& max) {
    if (!parse_quant_exact(min)) return false;
    max = min;
    if (peek() == ',') {
      ++pos_;
      max = kUnbounded;
      if (peek() != '}' && !parse_quant_exact(max)) return false;
    }
    if (peek() != '}') return fail(IRegexp::Failure::syntax);
    ++pos_;
    if (min > max) return fail(IRegexp::Failure::syntax);
    return true;
  }

  bool parse_quant_exact(std::uint32_t& value) {
    if (!(peek() >= '0' && peek() <= '9')) return fail(IRegexp::Failure::syntax);
    value = 0;
    while (peek() >= '0' && peek() <= '9') {
      value = value * 10 + (peek() - '0');
      if (value > kMaxQuantifier) return fail(IRegexp::Failure::too_complex);
      ++pos_;
    }
    return true;
  }

  // atom = NormalChar / charClass / ( "(" i-regexp ")" ), charClass = "." / SingleCharEsc / charClassEsc /
  // charClassExpr
  bool parse_atom(PatternNode& out, int depth) {
    if (at_end()) return fail(IRegexp::Failure::syntax);
    const char32_t c = pattern_[pos_++];
    if (c == '(') {
      if (depth + 1 > IRegexp::kMaxGroupDepth) return fail(IRegexp::Failure::too_complex);
      if (!parse_alternation(out, depth + 1)) return false;
      if (peek() != ')') return fail(IRegexp::Failure::syntax);
      ++pos_;
      return true;
    }
    if (c == '^' || c == '$') {
      out = PatternNode{.kind = c == '^' ? PatternNode::Kind::start : PatternNode::Kind::end};
      return true;
    }
    std::vector<Range> ranges;
    if (c == '.') {
      ranges = complement({{'\n', '\n'}, {'\r', '\r'}});
    } else if (c == '[') {
      if (!parse_class_expression(ranges)) return false;
    } else if (c == '\\') {
      if (peek() == 'p' || peek() == 'P') {
        if (!parse_category_escape(ranges)) return false;
      } else {
        char32_t escaped = 0;
        if (!parse_single_char_escape(escaped)) return false;
        ranges.push_back({escaped, escaped});
      }
    } else if (is_normal_char(c)) {
      ranges.push_back({c, c});
    } else {
      return fail(IRegexp::Failure::syntax);
    }
    out = PatternNode{.kind = PatternNode::Kind::atom, .class_index = add_class(std::move(ranges))};
    return true;
  }

  // SingleCharEsc after the backslash.
  bool parse_single_char_escape(char32_t& out) {
    const char32_t c = peek();
    ++pos_;
    switch (c) {
      case 'n':
        out = '\n';
        return true;
      case 'r':
        out = '\r';
        return true;
      case 't':
        out = '\t';
        return true;
      default:
        if (!is_escapable(c)) return fail(IRegexp::Failure::syntax);
        out = c;
        return true;
    }
  }

  // catEsc / complEsc after the backslash: p{Name} or P{Name}.
  bool parse_category_escape(std::vector<Range>& out) {
    const bool negated = pattern_[pos_] == 'P';
    ++pos_;
    if (peek() != '{') return fail(IRegexp::Failure::syntax);
    const std::size_t close = pattern_.find('}', pos_);
    if (close == std::u32string::npos) return fail(IRegexp::Failure::syntax);
    const auto mask = iregexp_category_mask(std::u32string_view(pattern_).substr(pos_ + 1, close - pos_ - 1));
    if (!mask) return fail(IRegexp::Failure::syntax);
    pos_ = close + 1;
    std::vector<Range> ranges = category_ranges(*mask);
    if (negated) ranges = complement(std::move(ranges));
    out.insert(out.end(), ranges.begin(), ranges.end());
    return true;
  }

  // charClassExpr = "[" [ "^" ] ( "-" / CCE1 ) *CCE1 [ "-" ] "]", after the "["
  bool parse_class_expression(std::vector<Range>& out) {
    const bool negated = peek() == '^';
    if (negated) ++pos_;
    bool empty = true;
    if (peek() == '-') {
      ++pos_;
      out.push_back({'-', '-'});
      empty = false;
    }
    while (true) {
      if (at_end()) return fail(IRegexp::Failure::syntax);
      if (peek() == ']') {
        if (empty) return fail(IRegexp::Failure::syntax);
        ++pos_;
        break;
      }
      if (peek() == '-') {  // only as the last character of the class
        if (peek(1) != ']') return fail(IRegexp::Failure::syntax);
        out.push_back({'-', '-'});
        pos_ += 2;
        break;
      }
      empty = false;
      if (peek() == '\\' && (peek(1) == 'p' || peek(1) == 'P')) {
        ++pos_;
        if (!parse_category_escape(out)) return false;
        continue;
      }
      char32_t first = 0;
      if (!parse_class_char(first)) return false;
      char32_t last = first;
      if (peek() == '-' && peek(1) != ']') {
        ++pos_;
        if (!parse_class_char(last)) return false;
        if (last < first) return fail(IRegexp::Failure::syntax);
      }
      out.push_back({first, last});
    }
    normalize(out);
    if (negated) out = complement(std::move(out));
    return true;
  }

  // CCchar = ( %x00-2C / %x2E-5A / %x5E-10FFFF ) / SingleCharEsc
  bool parse_class_char(char32_t& out) {
    if (at_end()) return fail(IRegexp::Failure::syntax);
    const char32_t c = pattern_[pos_];
    if (c == '\\') {
      ++pos_;
      if (peek() == 'p' || peek() == 'P')
        return fail(IRegexp::Failure::syntax);  // no category as a range end
      return parse_single_char_escape(out);
    }
    if (c == '-' || c == '[' || c == ']') return fail(IRegexp::Failure::syntax);
    ++pos_;
    out = c;
    return true;
  }

  static void normalize(std::vector<Range>& ranges) {
    std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.first < b.first; });
    std::vector<Range> merged;
    for (const Range& r : ranges) {
      if (!merged.empty() && r.first <= merged.back().last + 1) {
        merged.back().last = std::max(merged.back().last, r.last);
      } else {
        merged.push_back(r);
      }
    }
    ranges = std::move(merged);
  }

  static std::vector<Range> complement(std::vector<Range> ranges) {
    normalize(ranges);
    std::vector<Range> result;
    char32_t next = 0;
    for (const Range& r : ranges) {
      if (r.first > next) result.push_back({next, r.first - 1});
      next = r.last + 1;
    }
    if (next <= unicode::kMaxCodePoint) result.push_back({next, unicode::kMaxCodePoint});
    return result;
  }

  static std::vector<Range> category_ranges(std::uint32_t mask) {
    const auto runs = unicode::category_runs();
    std::vector<Range> result;
    for (std::size_t i = 0; i < runs.size(); ++i) {
      if ((mask & (1U << (runs[i] & 0x1F))) == 0) continue;
      const char32_t first = runs[i] >> 5;
      const char32_t last = i + 1 < runs.size() ? (runs[i + 1] >> 5) - 1 : unicode::kMaxCodePoint;
      if (!result.empty() && result.back().last + 1 == first) {
        result.back().last = last;
      } else {
        result.push_back({first, last});
      }
    }
    return result;
  }

  std::uint32_t add_class(std::vector<Range> ranges) {
    normalize(ranges);
    result_.classes_.push_back(std::move(ranges));
    return static_cast<std::uint32_t>(result_.classes_.size() - 1);
  }

  std::uint32_t size() const { return static_cast<std::uint32_t>(result_.program_.size()); }

  std::uint32_t push(IRegexp::Instruction instruction) {
    if (result_.program_.size() >= IRegexp::kMaxProgramSize) {
      fail(IRegexp::Failure::too_complex);
      return 0;
    }
    result_.program_.push_back(instruction);
    return size() - 1;
  }

  // Appends the instructions for node. Stops early once the program is over its size bound.
  void emit(const PatternNode& node) {
    if (failure_) return;
    auto& program = result_.program_;
    switch (node.kind) {
      case PatternNode::Kind::atom:
        push({IRegexp::Op::consume, node.class_index});
        return;
      case PatternNode::Kind::start:
        push({IRegexp::Op::at_start});
        return;
      case PatternNode::Kind::end:
        push({IRegexp::Op::at_end});
        return;
      case PatternNode::Kind::sequence:
        for (const PatternNode& child : node.children) emit(child);
        return;
      case PatternNode::Kind::alternation: {
        // split L1 L2; L1: first; jump end; L2: split L2' L3; ...; last; end:
        std::vector<std::uint32_t> jumps;
        for (std::size_t i = 0; i < node.children.size() && !failure_; ++i) {
          if (i + 1 == node.children.size()) {
            emit(node.children[i]);
            break;
          }
          const std::uint32_t split = push({IRegexp::Op::split, size() + 1});
          emit(node.children[i]);
          jumps.push_back(push({IRegexp::Op::jump}));
          if (failure_) return;
          program[split].y = size();
        }
        if (failure_) return;
        for (const std::uint32_t jump : jumps) program[jump].x = size();
        return;
      }
      case PatternNode::Kind::repeat: {
        const PatternNode& child = node.children.front();
        for (std::uint32_t i = 0; i < node.min && !failure_; ++i) {
          const std::uint32_t before = size();
          emit(child);
          if (size() == before) return;  // child matches only the empty string: so does any repetition of it
        }
        if (node.max == kUnbounded) {
          // loop: split body end; body: child; jump loop; end:
          const std::uint32_t loop = push({IRegexp::Op::split, size() + 1});
          emit(child);
          push({IRegexp::Op::jump, loop});
          if (!failure_) program[loop].y = size();
          return;
        }
        // Each optional copy: split body end; body: child
        std::vector<std::uint32_t> splits;
        for (std::uint32_t i = node.min; i < node.max && !failure_; ++i) {
          splits.push_back(push({IRegexp::Op::split, size() + 1}));
          const std::uint32_t before = size();
          emit(child);
          if (size() == before) break;
        }
        if (failure_) return;
        for (const std::uint32_t split : splits) program[split].y = size();
        return;
      }
    }
  }

  std::u32string pattern_;
  std::size_t pos_ = 0;
  std::optional<IRegexp::Failure> failure_;
  IRegexp result_;
};

std::expected<IRegexp, IRegexp::Failure> IRegexp::compile(std::string_view pattern) {
  std::u32string code_points;
  code_points.reserve(pattern.size());
  std::size_t pos = 0;
  while (pos < pattern.size()) {
    const char32_t c = utf8::decode(pattern, pos);
    if (c == utf8::kInvalid) return std::unexpected(Failure::syntax);
    code_points.push_back(c);
  }
  return IRegexpCompiler(std::move(code_points)).run();
}

bool IRegexp::in_class(std::uint32_t index, char32_t c) const {
  const std::vector<Range>& ranges = classes_[index];
  // The first range that ends at or after c holds c if it starts at or before it.
  const auto it = std::lower_bound(ranges.begin(), ranges.end(), c,
                                   [](const Range& r, char32_t value) { return r.last < value; });
  return it != ranges.end() && it->first <= c;
}

namespace {

// The threads of a simulation step: a sparse set of program counters (O(1) insert, test and clear).
class ThreadSet {
 public:
  explicit ThreadSet(std::size_t capacity) : dense_(capacity), sparse_(capacity) {}

  bool contains(std::uint32_t pc) const { return sparse_[pc] < size_ && dense_[sparse_[pc]] == pc; }
  void insert(std::uint32_t pc) {
    sparse_[pc] = size_;
    dense_[size_++] = pc;
  }
  void clear() {
    size_ = 0;
    accepting = false;
  }
  bool empty() const { return size_ == 0; }
  std::uint32_t size() const { return size_; }
  std::uint32_t operator[](std::uint32_t i) const { return dense_[i]; }

  bool accepting = false;  // the accept instruction is among the threads

 private:
  std::vector<std::uint32_t> dense_;
  std::vector<std::uint32_t> sparse_;
  std::uint32_t size_ = 0;
};

}  // namespace

bool IRegexp::run(std::string_view text, bool whole, QueryBudget* budget) const {
  const std::size_t n = program_.size();
  ThreadSet current(n);
  ThreadSet next(n);
  std::vector<std::uint32_t> stack;
  // Adds pc and everything reachable from it without consuming input, at text position pos.
  const auto add = [&](ThreadSet& set, std::uint32_t start, std::size_t pos) {
    stack.push_back(start);
    while (!stack.empty()) {
      const std::uint32_t pc = stack.back();
      stack.pop_back();
      if (set.contains(pc)) continue;
      set.insert(pc);
      const Instruction& instruction = program_[pc];
      switch (instruction.op) {
        case Op::consume:
          break;
        case Op::accept:
          set.accepting = true;
          break;
        case Op::at_start:
          if (pos == 0) stack.push_back(pc + 1);
          break;
        case Op::at_end:
          if (pos == text.size()) stack.push_back(pc + 1);
          break;
        case Op::jump:
          stack.push_back(instruction.x);
          break;
        case Op::split:
          stack.push_back(instruction.y);
          stack.push_back(instruction.x);
          break;
      }
    }
  };

  std::size_t pos = 0;
  add(current, 0, pos);
  while (true) {
    if (!whole && current.accepting) return true;
    if (pos == text.size()) return current.accepting;
    if (whole && current.empty()) return false;
    if (budget != nullptr && !budget->regex(current.size() + 1)) return false;
    const char32_t c = utf8::decode(text, pos);
    next.clear();
    for (std::uint32_t i = 0; i < current.size(); ++i) {
      const std::uint32_t pc = current[i];
      const Instruction& instruction = program_[pc];
      if (instruction.op == Op::consume && in_class(instruction.x, c)) add(next, pc + 1, pos);
    }
    std::swap(current, next);
    if (!whole) add(current, 0, pos);  // a match may start at every position
  }
}

}  // namespace twinbridge::query
