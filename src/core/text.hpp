#pragma once
// Small text helpers for protocol tokens (header names, schemes, media types) and quoted strings.

#include <cctype>
#include <string>
#include <string_view>

namespace twinbridge::core {

// Case-insensitive comparison of ASCII text.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// `s` without leading and trailing spaces and tabs.
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Appends `s` between two `quote` characters, escaped as a JSON string literal (quote '"', as boost::json's
// serializer writes it) or a name of an RFC 9535 normalized path (quote '\'') is: the quote and backslash
// behind a backslash, \b \f \n \r \t, any other control character as \u00xx (lower-case hex); every other
// byte, UTF-8 included, as it is.
inline void append_quoted(std::string& out, std::string_view s, char quote) {
  constexpr std::string_view kHex = "0123456789abcdef";
  out += quote;
  std::size_t run = 0;  // start of the bytes not written yet
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != static_cast<unsigned char>(quote) && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    out += '\\';
    switch (c) {
      case '\b':
        out += 'b';
        break;
      case '\f':
        out += 'f';
        break;
      case '\n':
        out += 'n';
        break;
      case '\r':
        out += 'r';
        break;
      case '\t':
        out += 't';
        break;
      default:
        if (c >= 0x20) {  // the quote or a backslash
          out += static_cast<char>(c);
        } else {
          out += "u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
        }
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += quote;
}

}  // namespace twinbridge::core
