#pragma once
// UTF-8 well-formedness, as Unicode defines it (chapter 3, table 3-7): no overlong encodings, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequences. Every text twinbridge accepts from a
// client is checked with these, and every text it answers is well-formed (to_valid_utf8 is the last line of
// defence for text that could still be ill-formed, such as rows written by an older binary).

#include <cstddef>
#include <string>
#include <string_view>

namespace twinbridge::core {

// The byte offset of the first ill-formed sequence of `text`, or npos when it is well-formed UTF-8.
std::size_t invalid_utf8_offset(std::string_view text);

inline bool is_valid_utf8(std::string_view text) {
  return invalid_utf8_offset(text) == std::string_view::npos;
}

// `text` with each maximal ill-formed subpart replaced by U+FFFD (the Unicode "best practice" substitution,
// as the WHATWG Encoding Standard decodes). ASCII bytes are never replaced, so the result of repairing
// serialized JSON is still JSON with the same structure.
std::string to_valid_utf8(std::string_view text);

// What is wrong at invalid_utf8_offset(text), for a problem detail: "byte 0xFF at offset 10 is not part of a
// well-formed UTF-8 sequence".
std::string describe_invalid_utf8(std::string_view text, std::size_t offset);

}  // namespace twinbridge::core
