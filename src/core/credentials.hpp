#pragma once
// API keys: random bearer secrets shown once at issue time and stored only as a SHA-256 hash. A key has the
// form "tbk_<key id>_<secret>": the key id (16 hex digits) finds the stored hash with one indexed lookup, the
// secret (256 random bits, hex) makes guessing hopeless, so a fast hash is enough and no salt is needed.

#include <optional>
#include <string>
#include <string_view>

namespace twinbridge::core {

struct IssuedApiKey {
  std::string key_id;  // public: listed, used to revoke
  std::string token;   // the secret bearer token; returned to the caller once, never stored
  std::string hash;    // hex SHA-256 of the token; what the store keeps
};

IssuedApiKey issue_api_key();

// The key id of a token of the API key form, or nullopt when `token` is not of that form.
std::optional<std::string_view> api_key_id_of(std::string_view token);

// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);

// Compares in time independent of where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

std::string random_hex(std::size_t bytes);

}  // namespace twinbridge::core
