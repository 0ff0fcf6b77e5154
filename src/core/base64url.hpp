#pragma once
// Base64url without padding (RFC 4648 §5, as JWS requires in RFC 7515 §2). Pure functions, thread-safe.

#include <optional>
#include <string>
#include <string_view>

namespace twinbridge::core {

// Encodes bytes with the URL-safe alphabet and no '=' padding.
std::string base64url_encode(std::string_view bytes);

// Decodes strictly: only the URL-safe alphabet, no padding, no whitespace, no impossible length (4n+1) and no
// non-zero bits after the last full byte (so every byte string has exactly one accepted encoding).
// Returns nullopt on any violation.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace twinbridge::core
