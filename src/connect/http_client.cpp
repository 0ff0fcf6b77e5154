// The only translation unit of src/connect that includes Beast (build time: see the README).

#include "connect/http_client.hpp"

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include "core/text.hpp"

namespace twinbridge::connect {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = net::ip::tcp;
using core::Errc;

std::string_view HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (core::iequals(k, name)) return v;
  }
  return {};
}

struct HttpClient::Impl {
  Impl(net::io_context& context, HttpClientOptions opts) : io(context), options(std::move(opts)) {}
  net::io_context& io;
  HttpClientOptions options;
  ssl::context tls{ssl::context::tls_client};
};

namespace {

constexpr auto kUseTuple = net::as_tuple(net::use_awaitable);

struct Target {
  bool tls = false;
  std::string host;  // for resolution and TLS (IPv6 without brackets)
  std::string port;
  std::string host_header;
  std::string target;  // origin-form: path and query
};

core::Result<Target> parse_target(std::string_view url) {
  auto u = boost::urls::parse_uri(url);
  if (!u) return core::fail(Errc::bad_request, fmt::format("'{}' is not an absolute URI", url));
  Target t;
  if (u->scheme_id() == boost::urls::scheme::https) {
    t.tls = true;
  } else if (u->scheme_id() != boost::urls::scheme::http) {
    return core::fail(Errc::bad_request, fmt::format("cannot call '{}': only http and https URLs", url));
  }
  if (!u->has_authority() || u->host_address().empty()) {
    return core::fail(Errc::bad_request, fmt::format("'{}' has no host", url));
  }
  t.host = u->host_address();
  t.port = u->has_port() ? std::string(u->port()) : (t.tls ? "443" : "80");
  const bool ipv6 = u->host_type() == boost::urls::host_type::ipv6;
  t.host_header = ipv6 ? "[" + t.host + "]" : std::string(u->encoded_host());
  if (u->has_port()) t.host_header += ":" + t.port;
  t.target = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  if (u->has_query()) t.target += "?" + std::string(u->encoded_query());
  return t;
}

core::Error network_error(const boost::system::error_code& ec, const HttpRequest& req,
                          std::string_view stage) {
  std::string what;
  if (ec == beast::error::timeout || ec == net::error::operation_aborted) {
    what = fmt::format("timed out after {} ms", req.timeout.count());
  } else if (ec == net::error::connection_refused) {
    what = "connection refused";
  } else if (ec == bhttp::error::body_limit) {
    what = fmt::format("response body larger than {} bytes", req.max_response_body);
  } else if (ec == bhttp::error::header_limit) {
    what = "response head too large";
  } else if (ec == net::error::host_not_found || ec == net::error::host_not_found_try_again) {
    what = "host not found";
  } else if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
             ec == bhttp::error::partial_message || ec == net::error::connection_reset) {
    what = "connection closed before a complete response";
  } else if (ec.category() == net::error::get_ssl_category() ||
             ec.category() == net::ssl::error::get_stream_category()) {
    what = fmt::format("TLS: {}", ec.message());
  } else {
    what = ec.message();
  }
  return core::Error(Errc::unavailable, fmt::format("{} while {}", what, stage));
}

// Writes the request and reads the response over a connected stream.
template <class Stream>
net::awaitable<boost::system::error_code> exchange(Stream& stream, bhttp::request<bhttp::string_body>& req,
                                                   bhttp::response_parser<bhttp::string_body>& parser,
                                                   const char*& stage) {
  stage = "writing the request";
  auto [wec, written] = co_await bhttp::async_write(stream, req, kUseTuple);
  if (wec) co_return wec;
  stage = "reading the response";
  beast::flat_buffer buffer;
  auto [rec, read] = co_await bhttp::async_read(stream, buffer, parser, kUseTuple);
  co_return rec;
}

net::awaitable<core::Result<HttpResponse>> call(HttpClient::Impl& impl, HttpRequest request) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + request.timeout;
  if (auto allowed = impl.options.outbound.check_url(request.url); !allowed) {
    co_return std::unexpected(allowed.error());
  }
  auto target = parse_target(request.url);
  if (!target) co_return std::unexpected(target.error());
  const auto verb = bhttp::string_to_verb(request.method);
  if (verb == bhttp::verb::unknown) {
    co_return core::fail(Errc::bad_request, fmt::format("unknown method '{}'", request.method));
  }
  auto executor = co_await net::this_coro::executor;

  // Name resolution has no timeout of its own: a timer cancels it at the deadline.
  tcp::resolver resolver(executor);
  net::steady_timer guard(executor, deadline);
  guard.async_wait([&resolver](const boost::system::error_code& ec) {
    if (!ec) resolver.cancel();
  });
  auto [rec, endpoints] = co_await resolver.async_resolve(target->host, target->port, kUseTuple);
  guard.cancel();
  if (rec) co_return std::unexpected(network_error(rec, request, "resolving " + target->host));
  // DNS rebinding: every address the name resolved to now is checked, and only these are connected to.
  for (const auto& entry : endpoints) {
    const auto address = entry.endpoint().address();
    const auto checked = address.is_v4() ? IpAddress::v4(address.to_v4().to_uint())
                                         : IpAddress::v6(address.to_v6().to_bytes());
    if (auto allowed = impl.options.outbound.check_resolved(target->host, checked); !allowed) {
      co_return std::unexpected(allowed.error());
    }
  }

  bhttp::request<bhttp::string_body> req{verb, target->target, 11};
  req.set(bhttp::field::host, target->host_header);
  req.set(bhttp::field::user_agent, impl.options.user_agent);
  req.set(bhttp::field::connection, "close");
  for (const auto& [k, v] : request.headers) req.insert(k, v);
  if (!request.body.empty() || verb == bhttp::verb::post || verb == bhttp::verb::put ||
      verb == bhttp::verb::patch) {
    req.body() = std::move(request.body);
    req.prepare_payload();
  }
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(impl.options.max_response_head));
  parser.body_limit(request.max_response_body);
  if (verb == bhttp::verb::head) parser.skip(true);

  const char* stage = "connecting";
  boost::system::error_code ec;
  if (!target->tls) {
    beast::tcp_stream stream(executor);
    stream.expires_at(deadline);
    auto [cec, ep] = co_await stream.async_connect(endpoints, kUseTuple);
    // (No co_await inside a conditional expression: GCC 12 evaluates it whatever the condition.)
    ec = cec;
    if (!ec) ec = co_await exchange(stream, req, parser, stage);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  } else {
    beast::ssl_stream<beast::tcp_stream> stream(executor, impl.tls);
    // SNI (SSL_set_tlsext_host_name is a macro with a C cast).
    if (::SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                   const_cast<char*>(target->host.c_str())) != 1) {
      co_return core::fail(Errc::unavailable, "TLS: cannot set the server name");
    }
    stream.set_verify_callback(ssl::host_name_verification(target->host));
    beast::get_lowest_layer(stream).expires_at(deadline);
    auto [cec, ep] = co_await beast::get_lowest_layer(stream).async_connect(endpoints, kUseTuple);
    ec = cec;
    if (!ec) {
      stage = "shaking hands (TLS)";
      auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kUseTuple);
      ec = hec;
      if (!ec) ec = co_await exchange(stream, req, parser, stage);
    }
  }
  if (ec) co_return std::unexpected(network_error(ec, request, stage));

  HttpResponse out;
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  out.body = std::move(res.body());
  out.elapsed =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  co_return out;
}

}  // namespace

HttpClient::HttpClient(boost::asio::io_context& io, HttpClientOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))) {
  impl_->tls.set_verify_mode(ssl::verify_peer);
  if (impl_->options.ca_file.empty()) {
    impl_->tls.set_default_verify_paths();
  } else {
    impl_->tls.load_verify_file(impl_->options.ca_file);
  }
}

HttpClient::~HttpClient() = default;

void HttpClient::send(HttpRequest request, Done done) {
  net::co_spawn(impl_->io, call(*impl_, std::move(request)),
                [done = std::move(done)](std::exception_ptr e, core::Result<HttpResponse> result) mutable {
                  if (e) {
                    std::string what = "unexpected failure";
                    try {
                      std::rethrow_exception(e);
                    } catch (const std::exception& ex) {
                      what = ex.what();
                    } catch (...) {
                    }
                    done(core::fail(Errc::internal, "outbound call failed: " + what));
                    return;
                  }
                  done(std::move(result));
                });
}

}  // namespace twinbridge::connect
