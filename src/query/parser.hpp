#pragma once
// Parses RFC 9535 JSONPath text into a syntax tree and checks it is well-typed (section 2.4.3).

#include <cstddef>
#include <string_view>

#include "core/error.hpp"
#include "query/syntax.hpp"

namespace twinbridge::query {

// Bounds on untrusted query text: its length in bytes, and how deeply brackets and parentheses may nest.
inline constexpr std::size_t kMaxQueryLength = 4096;
inline constexpr int kMaxNesting = 64;

// On a malformed, ill-typed or over-long query: Errc::bad_request whose detail is
// "invalid JSONPath at offset N: <what>" (N a byte offset into text) and whose one field, with an empty
// pointer, repeats the detail.
core::Result<PathQuery> parse_path_query(std::string_view text);

}  // namespace twinbridge::query
