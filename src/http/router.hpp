#pragma once
// The route table. Patterns are literal segments and {name} parameters ("/v1/principals/{id}"); a literal
// segment wins over a parameter at the same place, so "/v1/principals/me" can sit beside
// "/v1/principals/{id}". Segments are percent-decoded after the split, so "%2F" inside an id never creates a
// segment.
//
// The table is built at start-up and read-only afterwards (safe to share between threads). The OpenAPI
// coverage test walks routes() to prove that every route is documented.

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/access.hpp"
#include "core/error.hpp"
#include "http/message.hpp"

namespace twinbridge::http {

// A handler answers a request or returns the Error that the pipeline turns into a problem response; handlers
// never build error bodies themselves.
using HandlerResult = boost::asio::awaitable<core::Result<Response>>;
using Handler = std::function<HandlerResult(RequestContext&, const Request&)>;

enum class Auth { none, required };

struct Route {
  Method method;
  std::string pattern;
  Auth auth = Auth::required;
  std::optional<core::Permission> permission;  // checked centrally; object-level rules are the handler's
  Handler handler;
};

struct RouteMatch {
  const Route* route = nullptr;
  std::vector<std::pair<std::string, std::string>> params;
};

class Router {
 public:
  void add(Route route);

  // The route for method+path. Errors: not_found (no pattern matches the path), method_not_allowed (a pattern
  // matches, the method does not; `allowed` lists the methods that would), bad_request (bad
  // percent-encoding; a path parameter that is not valid UTF-8 once decoded, naming the parameter).
  core::Result<RouteMatch> match(Method method, std::string_view path,
                                 std::vector<Method>* allowed = nullptr) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
  std::vector<std::vector<std::string>> segments_;  // segments_[i]: the split pattern of routes_[i]
};

// Percent-decodes one path segment or query component ('+' is a space only when `plus_is_space`).
std::optional<std::string> percent_decode(std::string_view in, bool plus_is_space);

// Percent-encodes one path segment (everything but RFC 3986 unreserved characters and sub-delims and ':'
// '@').
std::string percent_encode_segment(std::string_view in);

// The query parameters of `query` ("a=1&b=2"), decoded. Errors: bad_request with the parameter name, for a
// bad percent-encoding or a name or value that is not valid UTF-8 once decoded.
core::Result<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query);

Method parse_method(std::string_view text);

}  // namespace twinbridge::http
