#include "core/error.hpp"

namespace twinbridge::core {

std::string_view to_string(Errc code) {
  switch (code) {
    case Errc::bad_request:
      return "bad_request";
    case Errc::unauthenticated:
      return "unauthenticated";
    case Errc::forbidden:
      return "forbidden";
    case Errc::not_found:
      return "not_found";
    case Errc::method_not_allowed:
      return "method_not_allowed";
    case Errc::not_acceptable:
      return "not_acceptable";
    case Errc::conflict:
      return "conflict";
    case Errc::gone:
      return "gone";
    case Errc::precondition_failed:
      return "precondition_failed";
    case Errc::payload_too_large:
      return "payload_too_large";
    case Errc::unsupported_media_type:
      return "unsupported_media_type";
    case Errc::validation_failed:
      return "validation_failed";
    case Errc::too_costly:
      return "too_costly";
    case Errc::upgrade_required:
      return "upgrade_required";
    case Errc::rate_limited:
      return "rate_limited";
    case Errc::header_too_large:
      return "header_too_large";
    case Errc::internal:
      return "internal";
    case Errc::unavailable:
      return "unavailable";
  }
  return "internal";
}

}  // namespace twinbridge::core
