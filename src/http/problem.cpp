#include "http/problem.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include "core/utf8.hpp"

namespace twinbridge::http {

using core::Errc;

namespace {

struct ProblemInfo {
  int status;
  std::string_view type;
  std::string_view title;
};

ProblemInfo info(Errc code) {
  switch (code) {
    case Errc::bad_request:
      return {400, "urn:twinbridge:problem:bad-request", "Bad request"};
    case Errc::unauthenticated:
      return {401, "urn:twinbridge:problem:unauthenticated", "Authentication required"};
    case Errc::forbidden:
      return {403, "urn:twinbridge:problem:forbidden", "Forbidden"};
    case Errc::not_found:
      return {404, "urn:twinbridge:problem:not-found", "Not found"};
    case Errc::method_not_allowed:
      return {405, "urn:twinbridge:problem:method-not-allowed", "Method not allowed"};
    case Errc::not_acceptable:
      return {406, "urn:twinbridge:problem:not-acceptable", "Not acceptable"};
    case Errc::conflict:
      return {409, "urn:twinbridge:problem:conflict", "Conflict"};
    case Errc::gone:
      return {410, "urn:twinbridge:problem:gone", "Gone"};
    case Errc::precondition_failed:
      return {412, "urn:twinbridge:problem:precondition-failed", "Precondition failed"};
    case Errc::payload_too_large:
      return {413, "urn:twinbridge:problem:payload-too-large", "Payload too large"};
    case Errc::unsupported_media_type:
      return {415, "urn:twinbridge:problem:unsupported-media-type", "Unsupported media type"};
    case Errc::validation_failed:
      return {422, "urn:twinbridge:problem:validation-failed", "Validation failed"};
    case Errc::too_costly:
      return {422, "urn:twinbridge:problem:query-too-costly", "Query too costly"};
    case Errc::upgrade_required:
      return {426, "urn:twinbridge:problem:upgrade-required", "Upgrade required"};
    case Errc::rate_limited:
      return {429, "urn:twinbridge:problem:rate-limited", "Too many requests"};
    case Errc::header_too_large:
      return {431, "urn:twinbridge:problem:header-too-large", "Request header fields too large"};
    case Errc::internal:
      return {500, "urn:twinbridge:problem:internal", "Internal server error"};
    case Errc::unavailable:
      return {503, "urn:twinbridge:problem:unavailable", "Service unavailable"};
  }
  return {500, "urn:twinbridge:problem:internal", "Internal server error"};
}

std::string_view field_key(core::FieldIn in) {
  switch (in) {
    case core::FieldIn::body:
      return "pointer";
    case core::FieldIn::query:
      return "parameter";
    case core::FieldIn::header:
      return "header";
    case core::FieldIn::path:
      return "parameter";  // with "in": "path"
  }
  return "pointer";
}

}  // namespace

int status_of(Errc code) {
  return info(code).status;
}
std::string_view problem_type(Errc code) {
  return info(code).type;
}

namespace {

// Details echo what the client sent (an id, a header, the path): never answered as ill-formed UTF-8.
std::string text(std::string_view s) {
  return core::is_valid_utf8(s) ? std::string(s) : core::to_valid_utf8(s);
}

}  // namespace

boost::json::object problem_summary(const core::Error& error) {
  const auto i = info(error.code);
  boost::json::object out{{"status", i.status},
                          {"title", i.title},
                          {"detail", error.detail.empty() ? std::string(i.title) : text(error.detail)}};
  if (!error.fields.empty() && error.fields.front().in == core::FieldIn::body) {
    out["pointer"] = text(error.fields.front().pointer);
  }
  return out;
}

Response problem_response(const core::Error& error, std::string_view instance, std::string_view request_id) {
  const auto i = info(error.code);
  boost::json::object body{{"type", i.type},
                           {"title", i.title},
                           {"status", i.status},
                           {"detail", error.detail.empty() ? std::string(i.title) : text(error.detail)},
                           {"instance", text(instance)},
                           {"request_id", text(request_id)}};
  if (!error.fields.empty()) {
    boost::json::array errors;
    for (const auto& f : error.fields) {
      boost::json::object field{{field_key(f.in), text(f.pointer)}, {"detail", text(f.detail)}};
      if (f.in == core::FieldIn::path) field["in"] = "path";
      errors.push_back(std::move(field));
    }
    body["errors"] = std::move(errors);
  }
  Response r;
  r.status = i.status;
  r.content_type = "application/problem+json";
  r.body = boost::json::serialize(body);
  if (error.retry_after_seconds > 0) r.header("Retry-After", std::to_string(error.retry_after_seconds));
  if (error.code == Errc::unauthenticated) r.header("WWW-Authenticate", "Bearer realm=\"twinbridge\"");
  return r;
}

}  // namespace twinbridge::http
