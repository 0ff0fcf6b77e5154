#pragma once
// TdHttpClient: performs one W3C WoT Thing Description (TD 1.1) operation over the HTTP binding, as
// twinbridge does when it acquires or changes a twin's state through its owning digital twin system (FGMV-29
// DTIA, flow 9.2 steps 6 to 12). The operations: readproperty, readallproperties, readmultipleproperties,
// writeproperty and invokeaction.
//
// One call: select the form (the first form of the affordance, or of the Thing for readallproperties and
// readmultipleproperties, whose op lists the operation, whose href is http or https and whose content type is
// JSON), expand its href as an RFC 6570 URI template with the caller's URI variables, resolve it against the
// TD's base (RFC 3986), apply the security the form (or else the TD) requires with the caller's credentials,
// send it with connect::HttpClient (so the outbound guard checks every call, the deadline covers the whole
// call and redirects are not followed), and read the JSON value of a 2xx response.
//
// Ownership: TdHttpClient holds references to the io_context and the HttpClient given at construction; both
// must outlive it and every call in flight. Thread-safety: immutable after construction; perform() may be
// called from any thread, and `done` always runs on the io_context (never inside perform()).
//
// Errors (core::Error; a detail never contains a password, token or API key):
//  - not_found: the TD has no such property or action;
//  - bad_request: what the caller gave does not fit the operation or the TD: an affordance name missing or
//    given when it must not be, a URI variable the TD does not declare or of the wrong type, a missing input;
//  - validation_failed: the TD cannot be used for this operation by twinbridge: no form for the operation,
//    only forms that are not HTTP or not JSON, an href that is not a URI template or that cannot be resolved,
//    a security scheme twinbridge does not support (digest, oauth2, psk, ...);
//  - forbidden: twinbridge holds no credentials for a security scheme the TD requires, or the outbound guard
//    refuses the destination (the detail then starts with "refused by the outbound policy");
//  - unavailable: the network or the Thing failed: connection refused, timed out, a body over the limit, a
//    non-2xx status (the detail is "the Thing answered HTTP <status>" and a short excerpt of the body), a
//    response that is not JSON.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "connect/http_client.hpp"
#include "core/error.hpp"

namespace boost::asio {
class io_context;
}

namespace twinbridge::connect {

enum class TdOperation {
  readproperty,
  readallproperties,
  readmultipleproperties,
  writeproperty,
  invokeaction
};

// `s` percent-encoded for a URI component: every byte outside the unreserved set (RFC 3986 2.3) becomes %XX.
std::string percent_encoded(std::string_view s);

// The credentials of HTTP Basic authentication (RFC 7617): the base64 of "user:password", for
// "Authorization: Basic <credentials>".
std::string basic_credentials(std::string_view user, std::string_view password);

std::string_view to_string(TdOperation op);
// The operation of that TD name ("readproperty", ...); nullopt for any other name.
std::optional<TdOperation> parse_td_operation(std::string_view name);

// Values of URI template variables by name: a string, a number or a boolean each (null counts as not given).
using UriVariables = std::map<std::string, boost::json::value, std::less<>>;

// An RFC 6570 URI template of level 3: literals and the expressions {var}, {+var}, {#var}, {.var}, {/var},
// {;var}, {?var} and {&var}, each with one or more comma-separated variables. Values are scalars (a string,
// a number or a boolean); level 4 modifiers (prefix ":n", explode "*") are not supported.
class UriTemplate {
 public:
  // Errors: validation_failed naming what is wrong and where (an unclosed expression, an unknown operator, a
  // level 4 modifier, a malformed variable name).
  static core::Result<UriTemplate> parse(std::string_view text);

  // Expands with `values`; a variable without a value is left out (RFC 6570 §3.2.1). Values are
  // percent-encoded as the operator requires (UTF-8, upper-case hex). Errors: bad_request for a value that is
  // an object or an array.
  core::Result<std::string> expand(const UriVariables& values) const;

  // Every variable named in an expression, in order of appearance (with repeats).
  std::vector<std::string> variables() const;

 private:
  struct Part {
    std::string literal;  // a literal when `op` is 0
    char op = 0;          // 0: literal; ' ': simple expression; else the operator
    std::vector<std::string> names;
  };
  std::vector<Part> parts_;
};

// A user name and password (basic) or a token (bearer, apikey).
struct UserPassword {
  std::string username;
  std::string password;
};
struct Token {
  std::string token;
};
using Secret = std::variant<UserPassword, Token>;

// The credentials twinbridge holds for one Thing, by the name of the security definition
// (securityDefinitions) they are for. For a combo scheme, give credentials for the schemes it names.
struct TdCredentials {
  std::map<std::string, Secret, std::less<>> by_scheme_name;
};

// The form chosen for an operation, with what the TD says about the call.
struct TdForm {
  std::string pointer;       // RFC 6901 pointer of the form in the TD, e.g. "/properties/temp/forms/1"
  std::string href;          // as written: possibly relative, possibly a URI template
  std::string method;        // htv:methodName, else the operation's default (GET, PUT or POST)
  std::string content_type;  // contentType, else application/json
  std::vector<std::string> security;  // the form's security names, else the TD's
  boost::json::object uri_variables;  // data schemas: the TD's uriVariables, overridden by the affordance's
};

// Picks the first form of `affordance` (a property for readproperty and writeproperty, an action for
// invokeaction; empty for readallproperties and readmultipleproperties, which use the Thing's forms) whose op
// includes `op` (a form without op has the TD 1.1 defaults: readproperty and writeproperty on a property,
// less writeproperty when it is readOnly and readproperty when it is writeOnly; invokeaction on an action),
// whose href is http or https (a relative href takes the scheme of the TD's base) and whose content type is
// JSON. Errors: not_found, bad_request, validation_failed as above.
core::Result<TdForm> select_form(const boost::json::object& td, TdOperation op, std::string_view affordance);

// The http and https URLs a TD's forms name, checked by `guard` when the TD is registered (each call checks
// again, on the resolved address): every form's href (the Thing's, its properties', actions' and events'),
// expanded without variables and resolved against the TD's base. Returns the refused ones as field errors at
// the href's pointer under `pointer`. An href whose template writes the host, that does not make a URI or
// that has no base to resolve against is left to the call, which refuses it then.
std::vector<core::FieldError> refused_form_urls(const boost::json::object& td, const OutboundGuard& guard,
                                                std::string_view pointer);

struct TdHttpSettings {
  std::chrono::milliseconds timeout{5'000};  // the whole call
  std::size_t max_response_body = 1024 * 1024;
  std::size_t max_json_depth = 64;
};

// One operation to perform.
struct TdCall {
  TdOperation op = TdOperation::readproperty;
  std::string affordance;  // the property or action; empty for readallproperties and readmultipleproperties
  // readmultipleproperties: the properties to read (at least one). The HTTP binding defines no way to name
  // them in the request: the form is called as it is, and the answer is cut down to these.
  std::vector<std::string> properties;
  UriVariables uri_variables;
  std::optional<boost::json::value> input;  // writeproperty: the value (required); invokeaction: the input
};

struct TdResponse {
  int status = 0;
  // readproperty: the value; readallproperties: an object of every value the Thing returned;
  // readmultipleproperties: an object of the requested properties the Thing returned (others are dropped);
  // writeproperty, invokeaction: the response's JSON value, or null when the body is empty.
  boost::json::value value;
  std::chrono::microseconds elapsed{0};
  // The URL called: the form's href expanded and resolved, before the query parameters a security scheme
  // adds (an API key "in": "query"), so that it never holds a secret.
  std::string url;
};

class TdHttpClient {
 public:
  using Done = std::move_only_function<void(core::Result<TdResponse>)>;

  TdHttpClient(boost::asio::io_context& io, HttpClient& http, TdHttpSettings settings = {});

  // Performs `call` on the Thing that `td` describes (a TD as core::parse_thing_description validated it).
  // `td` and `credentials` are read before perform() returns.
  void perform(const boost::json::object& td, const TdCall& call, const TdCredentials& credentials,
               Done done);

  const TdHttpSettings& settings() const { return settings_; }

 private:
  boost::asio::io_context& io_;
  HttpClient& http_;
  TdHttpSettings settings_;
};

}  // namespace twinbridge::connect
