#include "connect/http_client.hpp"

#include <gtest/gtest.h>
#include <netdb.h>
#include <unistd.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <thread>

#include "support/server_process.hpp"
#include "support/upstream_server.hpp"

namespace twinbridge::connect {
namespace {

using namespace std::chrono_literals;
using testing::UpstreamReply;
using testing::UpstreamRequest;
using testing::UpstreamServer;

// Test upstreams listen on loopback, which the outbound guard refuses unless the operator allows it.
HttpClientOptions loopback_allowed() {
  HttpClientOptions options;
  options.outbound = OutboundGuard::from_allow_list("loopback").value();
  return options;
}

class HttpClientTest : public ::testing::Test {
 protected:
  HttpClientTest() : work_(boost::asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~HttpClientTest() override {
    work_.reset();
    thread_.join();
  }

  core::Result<HttpResponse> call(HttpRequest request) {
    std::promise<core::Result<HttpResponse>> done;
    auto future = done.get_future();
    client_.send(std::move(request), [&done](core::Result<HttpResponse> r) { done.set_value(std::move(r)); });
    return future.get();
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  HttpClient client_{io_, loopback_allowed()};
  std::thread thread_;
};

TEST_F(HttpClientTest, SendsTheRequestAndReadsTheResponse) {
  UpstreamRequest seen;
  UpstreamServer upstream([&](const UpstreamRequest& r) {
    seen = r;
    return UpstreamReply{201, {{"Content-Type", "application/json"}, {"X-Answer", "42"}}, R"({"ok":true})"};
  });
  HttpRequest req;
  req.method = "POST";
  req.url = upstream.url("/api/v1/things?limit=5");
  req.headers = {{"Authorization", "Bearer abc"}};
  req.body = R"({"a":1})";
  auto r = call(req);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, R"({"ok":true})");
  EXPECT_EQ(r->header("x-answer"), "42");
  EXPECT_GT(r->elapsed.count(), 0);
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.target, "/api/v1/things?limit=5");
  EXPECT_EQ(seen.headers["host"], "127.0.0.1:" + std::to_string(upstream.port()));
  EXPECT_EQ(seen.headers["authorization"], "Bearer abc");
  EXPECT_EQ(seen.headers["user-agent"], "twinbridge");
  EXPECT_EQ(seen.body, R"({"a":1})");
}

TEST_F(HttpClientTest, AnEmptyPathIsTheRoot) {
  std::string target;
  UpstreamServer upstream([&](const UpstreamRequest& r) {
    target = r.target;
    return UpstreamReply{};
  });
  auto r = call({"GET", "http://127.0.0.1:" + std::to_string(upstream.port()), {}, {}, 2s, 1024});
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(target, "/");
}

TEST_F(HttpClientTest, ARefusedConnectionIsUnavailable) {
  UpstreamServer upstream([](const UpstreamRequest&) { return UpstreamReply{}; });
  const auto url = upstream.url("/health");
  upstream.stop();
  auto r = call({"GET", url, {}, {}, 2s, 1024});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::Errc::unavailable);
  EXPECT_EQ(r.error().detail, "connection refused while connecting");
}

TEST_F(HttpClientTest, AHangingPeerTimesOutAtTheDeadline) {
  UpstreamServer upstream([](const UpstreamRequest&) {
    UpstreamReply reply;
    reply.hang = true;
    return reply;
  });
  // How long the call takes against its deadline is measured by bench/http_client_bench.cpp.
  auto r = call({"GET", upstream.url("/health"), {}, {}, 300ms, 1024});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "timed out after 300 ms while reading the response");
}

TEST_F(HttpClientTest, AnOversizedBodyFailsInsteadOfBeingBuffered) {
  UpstreamServer upstream([](const UpstreamRequest&) {
    return UpstreamReply{200, {}, std::string(10 << 20, 'x')};
  });
  auto r = call({"GET", upstream.url("/big"), {}, {}, 10s, 64 * 1024});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "response body larger than 65536 bytes while reading the response");
}

TEST_F(HttpClientTest, APeerThatClosesWithoutAnsweringFails) {
  UpstreamServer upstream([](const UpstreamRequest&) {
    UpstreamReply reply;
    reply.close_without_reply = true;
    return reply;
  });
  auto r = call({"GET", upstream.url("/"), {}, {}, 2s, 1024});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::Errc::unavailable);
  EXPECT_NE(r.error().detail.find("connection closed before a complete response"), std::string::npos)
      << r.error().detail;
}

TEST_F(HttpClientTest, UrlsThatCannotBeCalledAreBadRequests) {
  for (const auto* url : {"not a url", "ftp://127.0.0.1/file", "mailto:a@b.c"}) {
    auto r = call({"GET", url, {}, {}, 1s, 1024});
    ASSERT_FALSE(r) << url;
    EXPECT_EQ(r.error().code, core::Errc::bad_request) << url;
  }
}

TEST_F(HttpClientTest, RedirectsAreNotFollowed) {
  UpstreamServer elsewhere([](const UpstreamRequest&) { return UpstreamReply{}; });
  UpstreamServer upstream([&](const UpstreamRequest&) {
    return UpstreamReply{302, {{"Location", elsewhere.url("/secret")}}, ""};
  });
  auto r = call({"GET", upstream.url("/health"), {}, {}, 2s, 1024});
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status, 302);
  EXPECT_EQ(r->header("location"), elsewhere.url("/secret"));
  EXPECT_EQ(elsewhere.requests(), 0u);
}

TEST_F(HttpClientTest, ConnectsToLocalhostWhenLoopbackIsAllowed) {
  UpstreamServer upstream([](const UpstreamRequest&) { return UpstreamReply{200, {}, "ok"}; });
  auto r = call({"GET", "http://localhost:" + std::to_string(upstream.port()) + "/health", {}, {}, 2s, 1024});
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(upstream.requests(), 1u);
}

TEST_F(HttpClientTest, HttpsToAPlainHttpPeerFailsTheHandshake) {
  UpstreamServer upstream([](const UpstreamRequest&) { return UpstreamReply{}; });
  // The peer waits for an HTTP head that never comes; the handshake ends at the deadline.
  auto r = call({"GET", "https://127.0.0.1:" + std::to_string(upstream.port()) + "/", {}, {}, 300ms, 1024});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail, "timed out after 300 ms while shaking hands (TLS)");
}

}  // namespace
}  // namespace twinbridge::connect

namespace twinbridge::connect {
namespace {

// A real TLS peer: Python's http.server wrapped in ssl, with a certificate made by the openssl command for
// `name` (a DNS name or IP:<address> subjectAltName). Prints its port; killed by the destructor.
class TlsUpstream {
 public:
  TlsUpstream(const std::filesystem::path& dir, const std::string& san) {
    cert_ = (dir / "cert.pem").string();
    const auto key = (dir / "key.pem").string();
    const auto openssl =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "
        "/CN=twinbridge-test -addext subjectAltName=" +
        san + " -keyout " + key + " -out " + cert_ + " 2>/dev/null";
    if (std::system(openssl.c_str()) != 0) throw std::runtime_error("openssl req failed");
    const auto script = (dir / "tls_server.py").string();
    std::ofstream(script) << R"(import http.server, os, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"status":"pass"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/health+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = c.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], os.getpid(), flush=True)
s.serve_forever()
)";
    pipe_ = ::popen(("exec python3 " + script + " " + cert_ + " " + key).c_str(), "r");
    if (pipe_ == nullptr || std::fscanf(pipe_, "%hu %d", &port_, &pid_) != 2) {
      throw std::runtime_error("the TLS upstream did not start");
    }
  }
  ~TlsUpstream() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
    if (pipe_ != nullptr) ::pclose(pipe_);
  }
  std::string url(const std::string& host) const {
    return "https://" + host + ":" + std::to_string(port_) + "/health";
  }
  const std::string& cert() const { return cert_; }

 private:
  std::string cert_;
  FILE* pipe_ = nullptr;
  std::uint16_t port_ = 0;
  pid_t pid_ = 0;
};

core::Result<HttpResponse> call_with(const HttpClientOptions& options, const std::string& url) {
  boost::asio::io_context io;
  HttpClient client(io, options);
  std::optional<core::Result<HttpResponse>> out;
  client.send({"GET", url, {}, {}, 5s, 1024}, [&](core::Result<HttpResponse> r) { out = std::move(r); });
  io.run();
  return std::move(*out);
}

TEST(HttpsTest, VerifiesThePeerAgainstTheConfiguredCa) {
  testing::TempDir dir;
  TlsUpstream upstream(dir.path(), "IP:127.0.0.1");
  auto trusted = loopback_allowed();
  trusted.ca_file = upstream.cert();
  auto ok = call_with(trusted, upstream.url("127.0.0.1"));
  ASSERT_TRUE(ok) << ok.error().detail;
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, R"({"status":"pass"})");
  // The system's trust store does not know the test CA.
  auto untrusted = call_with(loopback_allowed(), upstream.url("127.0.0.1"));
  ASSERT_FALSE(untrusted);
  EXPECT_NE(untrusted.error().detail.find("TLS"), std::string::npos) << untrusted.error().detail;
  EXPECT_NE(untrusted.error().detail.find("while shaking hands (TLS)"), std::string::npos)
      << untrusted.error().detail;
}

TEST(HttpsTest, RefusesACertificateForAnotherHost) {
  testing::TempDir dir;
  TlsUpstream upstream(dir.path(), "DNS:elsewhere.example");
  auto trusted = loopback_allowed();
  trusted.ca_file = upstream.cert();
  auto r = call_with(trusted, upstream.url("127.0.0.1"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("while shaking hands (TLS)"), std::string::npos) << r.error().detail;
}

// A name that resolves to a refused address: this host's own name, which /etc/hosts maps to loopback on
// Debian (127.0.1.1) and here, or to a private address in a container.
std::optional<std::string> name_resolving_to_refused_address() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return std::nullopt;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name, "80", &hints, &found) != 0) return std::nullopt;
  bool refused = found != nullptr;
  const OutboundGuard strict;
  for (auto* a = found; a != nullptr; a = a->ai_next) {
    std::optional<IpAddress> address;
    if (a->ai_family == AF_INET) {
      address = IpAddress::v4(ntohl(reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr.s_addr));
    } else if (a->ai_family == AF_INET6) {
      std::array<std::uint8_t, 16> bytes{};
      std::memcpy(bytes.data(), &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, 16);
      address = IpAddress::v6(bytes);
    }
    if (!address || strict.check_resolved(name, *address)) refused = false;
  }
  ::freeaddrinfo(found);
  if (!refused || !OutboundGuard().check_url(std::string("http://") + name + "/")) return std::nullopt;
  return std::string(name);
}

TEST(OutboundTest, ANameThatResolvesToARefusedAddressIsNotConnectedTo) {
  const auto name = name_resolving_to_refused_address();
  if (!name) GTEST_SKIP() << "this host's name does not resolve to loopback or a private address";
  UpstreamServer upstream([](const UpstreamRequest&) { return UpstreamReply{}; });
  auto r =
      call_with(HttpClientOptions{}, "http://" + *name + ":" + std::to_string(upstream.port()) + "/health");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::Errc::forbidden);
  EXPECT_TRUE(r.error().detail.starts_with("refused by the outbound policy: '" + *name + "' resolves to "))
      << r.error().detail;
  EXPECT_EQ(upstream.requests(), 0u);
}

TEST(OutboundTest, LoopbackIsRefusedUnlessAllowed) {
  UpstreamServer upstream([](const UpstreamRequest&) { return UpstreamReply{}; });
  const auto port = std::to_string(upstream.port());
  for (const auto& url : {"http://localhost:" + port + "/", "http://127.0.0.1:" + port + "/",
                          "http://[::ffff:127.0.0.1]:" + port + "/", "http://2130706433:" + port + "/",
                          "http://127.1:" + port + "/", "http://evil.example@127.0.0.1:" + port + "/"}) {
    auto r = call_with(HttpClientOptions{}, url);
    ASSERT_FALSE(r) << url;
    EXPECT_NE(r.error().code, core::Errc::unavailable) << url << ": " << r.error().detail;
  }
  EXPECT_EQ(call_with(HttpClientOptions{}, "http://localhost:" + port + "/").error().detail,
            "refused by the outbound policy: 'localhost' is a loopback name");
  EXPECT_EQ(upstream.requests(), 0u);
  auto allowed = call_with(loopback_allowed(), "http://localhost:" + port + "/");
  ASSERT_TRUE(allowed) << allowed.error().detail;
  EXPECT_EQ(upstream.requests(), 1u);
}

// A registry reader sees the probe's reason: for a refused destination it must not tell an open port from a
// closed one.
TEST(OutboundTest, ARefusedDestinationLooksTheSameOpenOrClosed) {
  UpstreamServer open([](const UpstreamRequest&) { return UpstreamReply{}; });
  UpstreamServer closed([](const UpstreamRequest&) { return UpstreamReply{}; });
  closed.stop();
  auto to_open =
      call_with(HttpClientOptions{}, "http://127.0.0.1:" + std::to_string(open.port()) + "/health");
  auto to_closed =
      call_with(HttpClientOptions{}, "http://127.0.0.1:" + std::to_string(closed.port()) + "/health");
  ASSERT_FALSE(to_open);
  ASSERT_FALSE(to_closed);
  EXPECT_EQ(to_open.error().detail, to_closed.error().detail);
  EXPECT_EQ(to_open.error().detail,
            "refused by the outbound policy: 127.0.0.1 is a loopback address (127.0.0.0/8)");
  EXPECT_EQ(open.requests(), 0u);
  // With loopback allowed, the difference is the caller's to see again.
  EXPECT_TRUE(call_with(loopback_allowed(), "http://127.0.0.1:" + std::to_string(open.port()) + "/health"));
  EXPECT_EQ(call_with(loopback_allowed(), "http://127.0.0.1:" + std::to_string(closed.port()) + "/health")
                .error()
                .detail,
            "connection refused while connecting");
}

TEST(HttpsTest, AnUnreadableCaFileFailsAtStartUp) {
  boost::asio::io_context io;
  HttpClientOptions options;
  options.ca_file = "/nonexistent/ca.pem";
  EXPECT_ANY_THROW(HttpClient(io, options));
}

}  // namespace
}  // namespace twinbridge::connect
