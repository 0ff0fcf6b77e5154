// RFC 9485 I-Regexp, the patterns of JSONPath match() and search(): the input is a pattern, then (after the
// first byte 0x1E, ASCII record separator) a text to match; without a separator the pattern is matched
// against the empty text and against itself.
//
// Checks: a full match is also a search hit; a pattern means the same in a group, "(p)"; search(p) agrees
// with a full match of ".*(p).*" on valid UTF-8 texts without line breaks (which '.' does not match).

#include <string>
#include <vector>

#include "fuzz.hpp"
#include "query/iregexp.hpp"
#include "query/utf8.hpp"

namespace {

using namespace twinbridge;

// JSON strings, the only texts JSONPath matches, are valid UTF-8; '.' never matches an ill-formed byte.
bool valid_utf8(std::string_view text) {
  for (std::size_t pos = 0; pos < text.size();) {
    if (query::utf8::decode(text, pos) == query::utf8::kInvalid) return false;
  }
  return true;
}

void check(const query::IRegexp& re, std::string_view pattern, std::string_view text) {
  const bool full = re.full_match(text);
  const bool found = re.search(text);
  if (full) TB_FUZZ_CHECK(found);

  if (auto grouped = query::IRegexp::compile("(" + std::string(pattern) + ")")) {
    TB_FUZZ_CHECK(grouped->full_match(text) == full);
    TB_FUZZ_CHECK(grouped->search(text) == found);
  }
  if (text.find_first_of("\r\n") == std::string_view::npos && valid_utf8(text)) {
    if (auto anywhere = query::IRegexp::compile(".*(" + std::string(pattern) + ").*")) {
      TB_FUZZ_CHECK(anywhere->full_match(text) == found);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto input = fuzz::as_text(data, size);
  const auto separator = input.find('\x1e');
  const auto pattern = input.substr(0, separator);
  auto re = query::IRegexp::compile(pattern);
  if (!re) return 0;
  if (separator != std::string_view::npos) {
    check(*re, pattern, input.substr(separator + 1));
  } else {
    check(*re, pattern, "");
    check(*re, pattern, pattern);
  }
  return 0;
}
