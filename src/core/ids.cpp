#include "core/ids.hpp"

#include <openssl/rand.h>

#include <fmt/format.h>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>

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

Result<void> validate_id(std::string_view id, std::string_view pointer) {
  if (id.empty()) return fail_at(Errc::validation_failed, std::string(pointer), "id must not be empty");
  if (id.size() > kMaxIdBytes) {
    return fail_at(Errc::validation_failed, std::string(pointer),
                   fmt::format("id is {} bytes long; at most {} are allowed", id.size(), kMaxIdBytes));
  }
  for (std::size_t i = 0; i < id.size(); ++i) {
    const auto c = static_cast<unsigned char>(id[i]);
    if (!is_id_char(c)) {
      std::string what = c < 0x20 || c == 0x7f ? fmt::format("control character U+{:04X}", c)
                         : c >= 0x80           ? std::string("non-ASCII byte")
                                               : fmt::format("character '{}'", static_cast<char>(c));
      return fail_at(Errc::validation_failed, std::string(pointer),
                     fmt::format("id contains a {} at offset {}; ids are printable ASCII without space or "
                                 "/?#[]%\"<>\\^`{{|}}",
                                 what, i));
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
