#pragma once
// RFC 9485 I-Regexp, the regular expressions of the JSONPath match() and search() functions.
//
// compile() checks a pattern against the I-Regexp grammar and turns it into a small NFA program over Unicode
// code points; matching simulates that program over a UTF-8 string Thompson-style: no backtracking and no
// recursion, so time is at most (code points of the text) x (program size) and neither a hostile pattern nor
// a long document string can blow the stack or take exponential time.
//
// Semantics are I-Regexp's, not ECMAScript's: '.' matches any code point except U+000A and U+000D, \p{..} and
// \P{..} are Unicode General Category tests (unicode_category.hpp), and there are no other escapes, no
// backreferences, lookaround, lazy quantifiers or flags. One deviation from the RFC 9485 grammar, as with the
// mappings to ECMAScript and PCRE in its section 5 and as the JSONPath compliance test suite expects: an
// unescaped '^' or '$' outside a class asserts the start or the end of the text instead of matching itself.
//
// An IRegexp is immutable once compiled; any number of threads may match with the same one at once. A match
// may run under a QueryBudget: each thread of the simulation at each position of the text is a step, and the
// match stops (answering false) once the budget is exhausted, so a large program over a long text costs what
// the budget allows and no more.

#include <cstddef>
#include <cstdint>
#include <expected>
#include <string_view>
#include <vector>

namespace twinbridge::query {

class QueryBudget;

class IRegexp {
 public:
  enum class Failure {
    syntax,       // the pattern is not an I-Regexp
    too_complex,  // an I-Regexp, but past kMaxProgramSize or kMaxGroupDepth
  };

  // Bounds on what one pattern may cost: instructions after expanding {n,m}, and nesting of parentheses.
  static constexpr std::size_t kMaxProgramSize = 10000;
  static constexpr int kMaxGroupDepth = 64;

  static std::expected<IRegexp, Failure> compile(std::string_view pattern);

  // RFC 9535 match(): the whole of text matches the pattern. With a budget (may be null), false also when
  // the budget ran out.
  bool full_match(std::string_view text, QueryBudget* budget = nullptr) const {
    return run(text, true, budget);
  }
  // RFC 9535 search(): some substring of text matches the pattern.
  bool search(std::string_view text, QueryBudget* budget = nullptr) const { return run(text, false, budget); }

  // Instructions of the compiled program: the cost of one step over one code point, at most.
  std::size_t program_size() const { return program_.size(); }

 private:
  friend class IRegexpCompiler;

  // A set of code points as sorted, disjoint, non-adjacent closed intervals.
  struct Range {
    char32_t first;
    char32_t last;
  };
  enum class Op : std::uint8_t {
    consume,   // the next code point is in class x: go on at the next instruction
    split,     // go on at both x and y
    jump,      // go on at x
    at_start,  // only at the start of the text: go on at the next instruction
    at_end,    // only at the end of the text: go on at the next instruction
    accept,
  };
  struct Instruction {
    Op op;
    std::uint32_t x = 0;
    std::uint32_t y = 0;
  };

  bool run(std::string_view text, bool whole, QueryBudget* budget) const;
  bool in_class(std::uint32_t index, char32_t c) const;

  std::vector<Instruction> program_;
  std::vector<std::vector<Range>> classes_;
};

}  // namespace twinbridge::query
