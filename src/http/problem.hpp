#pragma once
// RFC 9457 problem details: the one place where an error becomes an HTTP status and body. Every problem has a
// stable `type` URI (urn:twinbridge:problem:<slug>), `title`, `status`, `detail`, `instance` (the request
// path) and `request_id`; validation problems list every bad field in `errors` with its JSON `pointer` (body)
// or `parameter` / `header` name (a path parameter is a `parameter` with "in": "path"). Every text of the
// problem is well-formed UTF-8: what echoes the client's input is repaired with U+FFFD if it is not.

#include <boost/json/object.hpp>

#include <string_view>

#include "core/error.hpp"
#include "http/message.hpp"

namespace twinbridge::http {

int status_of(core::Errc code);
std::string_view problem_type(core::Errc code);

// The members of an error message on a stream (/v1/stream): status, title, detail, and the JSON pointer of
// the first bad member of the command when there is one.
boost::json::object problem_summary(const core::Error& error);

Response problem_response(const core::Error& error, std::string_view instance, std::string_view request_id);

}  // namespace twinbridge::http
