// HTTP/1.1 requests as the server reads them (src/http/server.cpp): Beast's request_parser<string_body> with
// the server's default limits (ServerLimits: head size, body size), fed the input as the bytes that arrive on
// a connection which then closes; then what the session takes from a parsed request (method, target split
// into path and query, the headers routes use) and the router's decoding of path and query.
//
// The parser's set-up here must follow the session's in server.cpp (header_limit, body_limit, eager reading
// of the body after the head); when the session changes how it reads a request, change this target with it.
//
// Checks: a parsed request keeps within the limits (head within 2 x max_header_bytes, see below; body within
// max_body_bytes, a
// Content-Length equal to the body's size), and every error is one the session handles.

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <charconv>
#include <string>
#include <string_view>

#include "fuzz.hpp"
#include "http/router.hpp"
#include "http/server.hpp"

namespace {

using namespace twinbridge;
namespace bhttp = boost::beast::http;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const http::ServerLimits limits;
  bhttp::request_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
  parser.body_limit(limits.max_body_bytes);

  boost::asio::const_buffer input(data, size);
  boost::beast::error_code ec;
  std::size_t head_bytes = 0;
  while (!ec && !parser.is_done()) {
    const bool had_header = parser.is_header_done();
    const std::size_t used = parser.put(input, ec);
    input += used;
    if (!had_header && parser.is_header_done()) head_bytes = size - input.size();
    if (ec == bhttp::error::need_more) {
      if (input.size() > 0) continue;
      // The connection closes here. Before any byte the session only waits (it reads the first byte before it
      // starts a parser); after some, Beast's read tells the parser so.
      ec = {};
      if (parser.got_some()) parser.put_eof(ec);
      break;
    }
    if (!ec && used == 0 && !parser.is_done()) break;
  }

  if (parser.is_header_done()) {
    const auto& msg = parser.get();
    // Beast holds the request line and the header fields to header_limit apart (so at most twice the limit in
    // all); the session holds the whole head to the limit and answers 431 beyond it (server.cpp), so nothing
    // of a longer head is used.
    TB_FUZZ_CHECK(head_bytes <= 2 * limits.max_header_bytes);
    if (head_bytes > limits.max_header_bytes) return 0;
    const std::string target(msg.target());
    const auto q = target.find('?');
    const std::string path = target.substr(0, q);
    const std::string query = q == std::string::npos ? std::string() : target.substr(q + 1);
    const auto method = http::parse_method(msg.method_string());
    static_cast<void>(http::parse_query(query));
    for (auto field : {bhttp::field::content_type, bhttp::field::authorization, bhttp::field::if_match,
                       bhttp::field::if_none_match, bhttp::field::accept, bhttp::field::expect}) {
      static_cast<void>(std::string(msg[field]));
    }
    static_cast<void>(std::string(msg["X-Request-Id"]));
    static_cast<void>(std::string(msg["Last-Event-ID"]));
    http::Router router;
    router.add({http::Method::get, "/v1/principals/{id}", http::Auth::required, std::nullopt, {}});
    static_cast<void>(router.match(method, path));
  }
  if (ec) {
    TB_FUZZ_CHECK(ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category());
    return 0;
  }
  if (!parser.is_done()) return 0;
  const auto& msg = parser.get();
  TB_FUZZ_CHECK(msg.body().size() <= limits.max_body_bytes);
  const auto length = msg[bhttp::field::content_length];
  if (!length.empty() && !msg.chunked()) {
    // RFC 9110 8.6 lets a recipient accept a list of identical values ("0, 00"), as Beast does: each one must
    // be the body's length.
    std::string_view rest(length.data(), length.size());
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      auto item = rest.substr(0, comma);
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      std::size_t declared = 0;
      const auto [end, err] = std::from_chars(item.data(), item.data() + item.size(), declared);
      TB_FUZZ_CHECK(err == std::errc() && end == item.data() + item.size());
      TB_FUZZ_CHECK(declared == msg.body().size());
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  return 0;
}
