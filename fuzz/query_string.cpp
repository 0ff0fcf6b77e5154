// Query strings and paths as the router reads them (src/http/router.cpp): the input is a request target's
// query (parse_query) and, as a path, is matched against a table of twinbridge's route patterns
// (Router::match, which percent-decodes each segment after splitting).
//
// Checks: the parameters parse_query returns, percent-encoded again, parse back to the same list; a decoded
// path segment encoded again decodes to itself; a matched route yields one decoded value per {parameter}.

#include <string>
#include <utility>
#include <vector>

#include "fuzz.hpp"
#include "http/router.hpp"

namespace {

using namespace twinbridge;

std::string encode_component(std::string_view in) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kDigits[c >> 4]);
      out.push_back(kDigits[c & 0x0f]);
    }
  }
  return out;
}

const http::Router& router() {
  static const http::Router r = [] {
    http::Router table;
    for (const char* pattern :
         {"/healthz", "/v1/principals", "/v1/principals/me", "/v1/principals/{id}",
          "/v1/principals/{id}/keys/{key}", "/v1/twin-systems/{id}", "/v1/twin-systems/{id}/twins/{twin}",
          "/v1/twins/{id}", "/things/{id}", "/search/jsonpath", "/events/{type}"}) {
      table.add({http::Method::get, pattern, http::Auth::required, std::nullopt, {}});
    }
    table.add({http::Method::put, "/things/{id}", http::Auth::required, std::nullopt, {}});
    return table;
  }();
  return r;
}

std::size_t parameters_in(std::string_view pattern) {
  std::size_t n = 0;
  for (char c : pattern) n += c == '{' ? 1 : 0;
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = fuzz::as_text(data, size);

  if (auto params = http::parse_query(text)) {
    std::string again;
    for (const auto& [name, value] : *params) {
      if (!again.empty()) again += '&';
      again += encode_component(name) + "=" + encode_component(value);
    }
    const auto reparsed = http::parse_query(again);
    TB_FUZZ_CHECK(reparsed.has_value());
    TB_FUZZ_CHECK(*reparsed == *params);
  } else {
    TB_FUZZ_CHECK(params.error().code == core::Errc::bad_request);
  }

  if (auto decoded = http::percent_decode(text, false)) {
    TB_FUZZ_CHECK(http::percent_decode(http::percent_encode_segment(*decoded), false) == decoded);
  }

  std::vector<http::Method> allowed;
  const auto method = text.size() % 2 == 0 ? http::Method::get : http::Method::put;
  if (auto match = router().match(method, text, &allowed)) {
    TB_FUZZ_CHECK(match->route != nullptr);
    TB_FUZZ_CHECK(match->params.size() == parameters_in(match->route->pattern));
  } else {
    const auto code = match.error().code;
    TB_FUZZ_CHECK(code == core::Errc::not_found || code == core::Errc::method_not_allowed ||
                  code == core::Errc::bad_request);
    if (code == core::Errc::method_not_allowed) TB_FUZZ_CHECK(!allowed.empty());
  }
  return 0;
}
