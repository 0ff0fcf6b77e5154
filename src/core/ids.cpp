#include "core/ids.hpp"

#include <openssl/rand.h>
#include <utf8proc.h>

#include <fmt/format.h>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "core/utf8.hpp"

namespace twinbridge::core {

namespace {

bool is_id_char(unsigned char c) {
  if (c <= 0x20 || c >= 0x7f) return false;
  switch (c) {
    case '/':
    case '?':
    case '#':
    case '[':
    case ']':
    case '%':
    case '"':
    case '<':
    case '>':
    case '\\':
    case '^':
    case '`':
    case '{':
    case '|':
    case '}':
      return false;
    default:
      return true;
  }
}

}  // namespace

namespace {

std::string code_point_name(char32_t c) {
  return fmt::format("U+{:04X}", static_cast<std::uint32_t>(c));
}

// Why code point `c` may not be in an id of any kind, or nullptr.
const char* refused_category(char32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_CC:
      return "control character";
    case UTF8PROC_CATEGORY_CF:
      return "format character";
    case UTF8PROC_CATEGORY_CS:
      return "surrogate";
    case UTF8PROC_CATEGORY_CO:
      return "private-use character";
    case UTF8PROC_CATEGORY_CN:
      return "unassigned code point or noncharacter";
    case UTF8PROC_CATEGORY_ZS:
      return "space character";
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return "line or paragraph separator";
    default:
      return nullptr;
  }
}

// `text` in NFC, or nullopt when utf8proc refuses it (it is well-formed here, so only on memory exhaustion).
std::optional<std::string> to_nfc(std::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                              static_cast<utf8proc_ssize_t>(text.size()), &out,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) return std::nullopt;
  std::string nfc(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
  std::free(out);  // NOLINT(cppcoreguidelines-no-malloc): utf8proc allocates with malloc
  return nfc;
}

// Non-ASCII bytes as %XX, the way the id is written in a URL path.
std::string percent_encode_non_ascii(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace

Result<void> validate_id(std::string_view id, std::string_view field, IdKind kind, FieldIn in) {
  const auto refuse = [&](std::string detail) {
    return fail_in(Errc::validation_failed, in, std::string(field), std::move(detail));
  };
  if (id.empty()) return refuse("id must not be empty");
  if (id.size() > kMaxIdBytes) {
    return refuse(fmt::format("id is {} bytes long; at most {} are allowed", id.size(), kMaxIdBytes));
  }
  if (const auto bad = invalid_utf8_offset(id); bad != std::string_view::npos) {
    return refuse(fmt::format("id is not valid UTF-8: {}", describe_invalid_utf8(id, bad)));
  }
  bool ascii = true;
  for (std::size_t i = 0; i < id.size();) {
    utf8proc_int32_t c = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(id.data() + i),
                                    static_cast<utf8proc_ssize_t>(id.size() - i), &c);
    if (n <= 0) return refuse(fmt::format("id is not valid UTF-8 at offset {}", i));  // checked above
    const auto cp = static_cast<char32_t>(c);
    if (const char* what = refused_category(cp)) {
      return refuse(
          fmt::format("id contains a {} {} at offset {}; ids may not contain control characters, format "
                      "characters (bidi controls, zero-width characters, BOM), private-use characters, "
                      "unassigned code points or spaces",
                      what, code_point_name(cp), i));
    }
    if (kind == IdKind::token) {
      if (cp >= 0x80) {
        return refuse(
            fmt::format("id contains the non-ASCII character {} at offset {}; ids of principals "
                        "and systems are printable ASCII without space or /?#[]%\"<>\\^`{{|}}",
                        code_point_name(cp), i));
      }
      if (!is_id_char(static_cast<unsigned char>(cp))) {
        return refuse(
            fmt::format("id contains the character '{}' at offset {}; ids of principals and "
                        "systems are printable ASCII without space or /?#[]%\"<>\\^`{{|}}",
                        static_cast<char>(cp), i));
      }
    }
    ascii = ascii && cp < 0x80;
    i += static_cast<std::size_t>(n);
  }
  if (!ascii) {
    const auto nfc = to_nfc(id);
    if (!nfc) return refuse("id cannot be normalized");
    if (*nfc != id) {
      return refuse(
          fmt::format("id is not in Unicode Normalization Form C (NFC), so it could look like "
                      "another id; its NFC form is '{}' ({} in a URL path)",
                      *nfc, percent_encode_non_ascii(*nfc)));
    }
  }
  return {};
}

std::string new_uuid_v7() {
  std::array<unsigned char, 16> b{};
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1)
    std::abort();  // no entropy: a bug or a broken host
  const auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
  for (int i = 0; i < 6; ++i) b[static_cast<std::size_t>(i)] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  b[6] = static_cast<unsigned char>(0x70 | (b[6] & 0x0f));
  b[8] = static_cast<unsigned char>(0x80 | (b[8] & 0x3f));
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out += fmt::format("{:02x}", b[i]);
  }
  return out;
}

}  // namespace twinbridge::core
