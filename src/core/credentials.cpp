#include "core/credentials.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <cstdlib>

namespace twinbridge::core {

namespace {

constexpr std::string_view kPrefix = "tbk_";
constexpr std::size_t kKeyIdHex = 16;
constexpr std::size_t kSecretHex = 64;

std::string to_hex(const unsigned char* data, std::size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 0x0f];
  }
  return out;
}

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

std::string random_hex(std::size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) std::abort();
  return to_hex(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string sha256_hex(std::string_view data) {
  // Fetched once: EVP_sha256() makes every digest look the implementation up again in OpenSSL's provider
  // store (with its locks), which cost more than the digest of a key on each request.
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  if (sha256 == nullptr) std::abort();
  std::array<unsigned char, 32> digest{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest.data(), &len, sha256, nullptr) != 1) std::abort();
  return to_hex(digest.data(), len);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

IssuedApiKey issue_api_key() {
  IssuedApiKey key;
  key.key_id = random_hex(kKeyIdHex / 2);
  key.token = std::string(kPrefix) + key.key_id + "_" + random_hex(kSecretHex / 2);
  key.hash = sha256_hex(key.token);
  return key;
}

std::optional<std::string_view> api_key_id_of(std::string_view token) {
  if (token.size() != kPrefix.size() + kKeyIdHex + 1 + kSecretHex || !token.starts_with(kPrefix)) {
    return std::nullopt;
  }
  const auto id = token.substr(kPrefix.size(), kKeyIdHex);
  if (token[kPrefix.size() + kKeyIdHex] != '_' || !is_lower_hex(id) ||
      !is_lower_hex(token.substr(kPrefix.size() + kKeyIdHex + 1))) {
    return std::nullopt;
  }
  return id;
}

}  // namespace twinbridge::core
