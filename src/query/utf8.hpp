#pragma once
// UTF-8 helpers shared by the JSONPath parser, evaluator and the I-Regexp engine, which all work on code
// points.

#include <cstddef>
#include <string>
#include <string_view>

namespace twinbridge::query::utf8 {

// What decode() returns for an ill-formed sequence; no code point has this value.
inline constexpr char32_t kInvalid = 0xFFFFFFFF;

// Decodes the code point that starts at text[pos] (pos < text.size()) and moves pos past it. An ill-formed
// sequence (truncated, overlong, a surrogate, above U+10FFFF) yields kInvalid and moves pos by one byte.
inline char32_t decode(std::string_view text, std::size_t& pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) {
    ++pos;
    return lead;
  }
  // Sequence length, payload bits of the lead byte, and the smallest code point that needs this length.
  std::size_t length = 4;
  char32_t c = lead & 0x07;
  char32_t min = 0x10000;
  if ((lead & 0xE0) == 0xC0) {
    length = 2;
    c = lead & 0x1F;
    min = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    c = lead & 0x0F;
    min = 0x800;
  } else if ((lead & 0xF8) != 0xF0) {
    ++pos;
    return kInvalid;
  }
  if (text.size() - pos < length) {
    ++pos;
    return kInvalid;
  }
  for (std::size_t i = 1; i < length; ++i) {
    const unsigned char next = byte(pos + i);
    if ((next & 0xC0) != 0x80) {
      ++pos;
      return kInvalid;
    }
    c = (c << 6) | (next & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
    ++pos;
    return kInvalid;
  }
  pos += length;
  return c;
}

// The byte offset of the first ill-formed sequence in text, or npos when text is well-formed UTF-8.
inline std::size_t find_invalid(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t start = pos;
    if (decode(text, pos) == kInvalid) return start;
  }
  return std::string_view::npos;
}

// The number of code points in well-formed UTF-8 (every byte that does not continue a sequence starts one).
inline std::size_t count_code_points(std::string_view text) {
  std::size_t count = 0;
  for (const char ch : text) count += (static_cast<unsigned char>(ch) & 0xC0) != 0x80 ? 1 : 0;
  return count;
}

// Appends the UTF-8 encoding of a Unicode scalar value.
inline void append(std::string& out, char32_t c) {
  const auto put = [&](unsigned value) { out.push_back(static_cast<char>(value)); };
  if (c < 0x80) {
    put(c);
  } else if (c < 0x800) {
    put(0xC0 | (c >> 6));
    put(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    put(0xE0 | (c >> 12));
    put(0x80 | ((c >> 6) & 0x3F));
    put(0x80 | (c & 0x3F));
  } else {
    put(0xF0 | (c >> 18));
    put(0x80 | ((c >> 12) & 0x3F));
    put(0x80 | ((c >> 6) & 0x3F));
    put(0x80 | (c & 0x3F));
  }
}

}  // namespace twinbridge::query::utf8
