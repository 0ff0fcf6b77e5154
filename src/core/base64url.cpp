#include "core/base64url.hpp"

#include <array>
#include <cstdint>

#include <openssl/evp.h>

namespace twinbridge::core {

namespace {

constexpr std::uint8_t kInvalid = 0xff;

constexpr std::array<std::uint8_t, 256> make_decode_table() {
  std::array<std::uint8_t, 256> table{};
  table.fill(kInvalid);
  constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<std::uint8_t>(i);
  }
  return table;
}

constexpr std::array<std::uint8_t, 256> kDecodeTable = make_decode_table();

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  // EVP_EncodeBlock writes standard, padded base64 plus a terminating NUL and takes an int length, so long
  // inputs go in chunks of a multiple of 3 bytes (only the last chunk can carry padding).
  constexpr std::size_t kChunk = 3 * 1024 * 1024;
  std::string out;
  out.reserve(4 * ((bytes.size() + 2) / 3) + 1);
  while (!bytes.empty()) {
    const std::string_view chunk = bytes.substr(0, kChunk);
    bytes.remove_prefix(chunk.size());
    const std::size_t at = out.size();
    out.resize(at + 4 * ((chunk.size() + 2) / 3) + 1);
    const int written =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data() + at),
                        reinterpret_cast<const unsigned char*>(chunk.data()), static_cast<int>(chunk.size()));
    out.resize(at + static_cast<std::size_t>(written));
  }
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') {
      c = '-';
    } else if (c == '/') {
      c = '_';
    }
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  const std::size_t tail = text.size() % 4;
  if (tail == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const std::uint8_t sextet = kDecodeTable[static_cast<unsigned char>(c)];
    if (sextet == kInvalid) return std::nullopt;
    acc = ((acc << 6) | sextet) & 0xffffU;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xffU));
    }
  }
  // Leftover bits (2 or 4) must be zero, otherwise two encodings would decode to the same bytes.
  if (bits > 0 && (acc & ((1U << bits) - 1U)) != 0) return std::nullopt;
  return out;
}

}  // namespace twinbridge::core
