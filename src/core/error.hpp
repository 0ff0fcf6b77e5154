#pragma once
// The one error type of twinbridge. Every expected failure is a value: Result<T> = std::expected<T, Error>.
// The HTTP layer maps Errc to a status code and an RFC 9457 problem document in exactly one place
// (src/http/problem.cpp); nothing else assembles error bodies.

#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twinbridge::core {

enum class Errc {
  bad_request,             // malformed syntax: unparsable JSON, bad query parameter (400)
  unauthenticated,         // no or invalid credentials (401)
  forbidden,               // authenticated but not allowed (403)
  not_found,               // no such resource or route (404)
  method_not_allowed,      // route exists, method does not (405)
  not_acceptable,          // Accept header cannot be satisfied (406)
  conflict,                // id already taken, concurrent change without If-Match (409)
  gone,                    // resource existed and expired (410)
  precondition_failed,     // If-Match did not match (412)
  payload_too_large,       // body over the configured limit (413)
  unsupported_media_type,  // wrong Content-Type (415)
  validation_failed,       // well-formed JSON that breaks the schema (422)
  too_costly,              // a valid query that exceeds its budget (422, query-too-costly)
  upgrade_required,        // a WebSocket endpoint asked for without a WebSocket handshake (426)
  rate_limited,            // too many requests (429)
  header_too_large,        // request head over the configured limit (431)
  internal,                // a bug or an unexpected store failure (500)
  unavailable,             // the store or a dependency is not reachable, or shutting down (503)
};

// Where an invalid field of a request is.
enum class FieldIn { body, query, header, path };

// One invalid field of a request and what is wrong with it. For the body, `pointer` is the RFC 6901 JSON
// pointer of the member ("" is the whole document); otherwise it is the name of the query parameter, header
// or path parameter.
struct FieldError {
  std::string pointer;
  std::string detail;
  FieldIn in = FieldIn::body;
};

struct Error {
  Errc code = Errc::internal;
  std::string detail;              // a human-readable sentence specific to this occurrence
  std::vector<FieldError> fields;  // for validation errors: every bad field found
  int retry_after_seconds = 0;     // for rate_limited and unavailable, when known
  // What only the server's log may say (a database's own message names tables, columns and constraints):
  // never sent to a client. The HTTP layer logs it with the request id.
  std::string log_detail;

  Error() = default;
  Error(Errc c, std::string d) : code(c), detail(std::move(d)) {}
  Error(Errc c, std::string d, std::string pointer) : code(c), detail(std::move(d)) {
    fields.push_back({std::move(pointer), detail});
  }
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(Errc code, std::string detail) {
  return std::unexpected(Error(code, std::move(detail)));
}

inline std::unexpected<Error> fail_at(Errc code, std::string pointer, std::string detail) {
  return std::unexpected(Error(code, std::move(detail), std::move(pointer)));
}

// An error about a query parameter, header or path parameter named `name`.
inline std::unexpected<Error> fail_in(Errc code, FieldIn in, std::string name, std::string detail) {
  Error e(code, detail);
  e.fields.push_back({std::move(name), std::move(detail), in});
  return std::unexpected(std::move(e));
}

std::string_view to_string(Errc code);

}  // namespace twinbridge::core
