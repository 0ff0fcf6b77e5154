#include "core/utf8.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <cstring>

namespace twinbridge::core {

namespace {

// The length of the well-formed sequence at text[pos], or, negated, the length of the maximal ill-formed
// subpart there (at least 1). Table 3-7 of the Unicode Standard gives the well-formed sequences.
std::ptrdiff_t sequence_at(std::string_view text, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  if (lead < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80;  // the range of the second byte; later bytes are 0x80..0xBF
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // shorter forms are overlong
    if (lead == 0xED) high = 0x9F;  // U+D800..U+DFFF are surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    return -1;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  for (std::size_t i = 1; i < length; ++i) {
    if (pos + i >= text.size()) return -static_cast<std::ptrdiff_t>(i);
    const unsigned char c = byte(pos + i);
    const unsigned char lo = i == 1 ? low : 0x80;
    const unsigned char hi = i == 1 ? high : 0xBF;
    if (c < lo || c > hi) return -static_cast<std::ptrdiff_t>(i);
  }
  return static_cast<std::ptrdiff_t>(length);
}

// The end of the run of ASCII bytes that starts at `pos`, eight at a time.
std::size_t skip_ascii(std::string_view text, std::size_t pos) {
  while (pos + 8 <= text.size()) {
    std::uint64_t word = 0;
    std::memcpy(&word, text.data() + pos, sizeof word);
    if ((word & 0x8080808080808080ULL) != 0) break;
    pos += 8;
  }
  while (pos < text.size() && static_cast<unsigned char>(text[pos]) < 0x80) ++pos;
  return pos;
}

}  // namespace

std::size_t invalid_utf8_offset(std::string_view text) {
  std::size_t pos = 0;
  for (;;) {
    pos = skip_ascii(text, pos);
    if (pos >= text.size()) return std::string_view::npos;
    const auto n = sequence_at(text, pos);
    if (n < 0) return pos;
    pos += static_cast<std::size_t>(n);
  }
}

std::string to_valid_utf8(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto ascii_end = skip_ascii(text, pos);
    out.append(text.substr(pos, ascii_end - pos));
    pos = ascii_end;
    if (pos >= text.size()) break;
    const auto n = sequence_at(text, pos);
    if (n > 0) {
      out.append(text.substr(pos, static_cast<std::size_t>(n)));
      pos += static_cast<std::size_t>(n);
    } else {
      out.append("\xEF\xBF\xBD");
      pos += static_cast<std::size_t>(-n);
    }
  }
  return out;
}

std::string describe_invalid_utf8(std::string_view text, std::size_t offset) {
  if (offset >= text.size()) return "the text is not well-formed UTF-8";
  const auto n = -sequence_at(text, offset);
  if (n > 1 || (n == 1 && offset + 1 >= text.size() && static_cast<unsigned char>(text[offset]) >= 0xC2 &&
                static_cast<unsigned char>(text[offset]) <= 0xF4)) {
    return fmt::format("the UTF-8 sequence at offset {} is incomplete", offset);
  }
  return fmt::format("byte 0x{:02X} at offset {} is not part of a well-formed UTF-8 sequence",
                     static_cast<unsigned char>(text[offset]), offset);
}

}  // namespace twinbridge::core
