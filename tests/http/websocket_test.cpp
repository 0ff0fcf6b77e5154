// The WebSocket transport of the inbound HTTP adapter (server.cpp, message.hpp): the handshake through the
// whole pipeline (authentication, also by subprotocol; authorization; 426 without a handshake), messages both
// ways and in order, the limits (message size 1009, UTF-8 1007, binary 1003, the send queue 1008), closes by
// the session and by the server's shutdown (1001), metrics, and sends from other threads.
//
// The product has no WebSocket route yet, so these tests run the real server inside the test process
// (support/in_process_server.hpp) with routes of their own; they talk to it over sockets with a Beast client
// (support/ws_client.hpp).

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support/http_client.hpp"
#include "support/in_process_server.hpp"
#include "support/ws_client.hpp"

namespace twinbridge::testing {
namespace {

using http::WebSocketChannel;

std::shared_ptr<const std::string> text(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

// Polls `done` until it holds or `within` passes.
template <class Done>
bool eventually(Done done, std::chrono::milliseconds within = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A message of `n` bytes, all one letter that depends on n.
std::string sized(std::size_t n) {
  return std::string(n, static_cast<char>('a' + n % 26));
}

// Echoes every message; "count N" answers 0..N-1 as N messages; "size N" a message of N letters;
// "close CODE" closes with CODE.
class EchoSession final : public http::WebSocketSession {
 public:
  boost::asio::awaitable<void> run(std::shared_ptr<WebSocketChannel> channel) override {
    while (auto message = co_await channel->read()) {
      if (message->starts_with("count ")) {
        const int n = std::stoi(message->substr(6));
        for (int i = 0; i < n; ++i) channel->send(text(std::to_string(i)));
      } else if (message->starts_with("size ")) {
        channel->send(text(sized(std::stoul(message->substr(5)))));
      } else if (message->starts_with("close ")) {
        channel->close(std::stoi(message->substr(6)), "asked to");
      } else {
        channel->send(text(std::move(*message)));
      }
    }
  }
};

// What the flood session did: how many messages it queued, and whether the channel refused one.
struct Flood {
  std::atomic<std::size_t> queued{0};
  std::atomic<bool> refused{false};
};

// On "flood", sends 16 KiB messages as fast as the channel takes them (letting the writer run between two),
// until it refuses one.
class FloodSession final : public http::WebSocketSession {
 public:
  explicit FloodSession(std::shared_ptr<Flood> flood) : flood_(std::move(flood)) {}
  boost::asio::awaitable<void> run(std::shared_ptr<WebSocketChannel> channel) override {
    auto message = co_await channel->read();
    if (!message || *message != "flood") co_return;
    const auto chunk = text(std::string(16 * 1024, 'f'));
    auto executor = co_await boost::asio::this_coro::executor;
    while (channel->send(chunk)) {
      ++flood_->queued;
      co_await boost::asio::post(executor, boost::asio::use_awaitable);
    }
    flood_->refused = true;
  }

 private:
  std::shared_ptr<Flood> flood_;
};

// Hands its channel to the test, so that other threads send on it, then reads until the end.
struct Channels {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::shared_ptr<WebSocketChannel>> opened;

  std::shared_ptr<WebSocketChannel> wait(std::size_t index) {
    std::unique_lock lock(mutex);
    if (!cv.wait_for(lock, std::chrono::seconds(20), [&] { return opened.size() > index; })) return nullptr;
    return opened[index];
  }
};

class HoldSession final : public http::WebSocketSession {
 public:
  explicit HoldSession(std::shared_ptr<Channels> channels) : channels_(std::move(channels)) {}
  boost::asio::awaitable<void> run(std::shared_ptr<WebSocketChannel> channel) override {
    {
      std::lock_guard lock(channels_->mutex);
      channels_->opened.push_back(channel);
    }
    channels_->cv.notify_all();
    while (co_await channel->read()) {
    }
  }

 private:
  std::shared_ptr<Channels> channels_;
};

class WebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }

  void start(InProcessOptions options) {
    server_ = std::make_unique<InProcessServer>(std::move(options));
    auto add = [&](std::string path, core::Permission permission, auto make) {
      server_->router().add({http::Method::get, std::move(path), http::Auth::required, permission,
                             [make](http::RequestContext&, const http::Request&) -> http::HandlerResult {
                               http::Response r;
                               r.websocket = make();
                               co_return r;
                             }});
    };
    add("/test/ws/echo", core::Permission::twins_read, [] { return std::make_shared<EchoSession>(); });
    add("/test/ws/flood", core::Permission::twins_read,
        [flood = flood_] { return std::make_shared<FloodSession>(flood); });
    add("/test/ws/hold", core::Permission::twins_read,
        [channels = channels_] { return std::make_shared<HoldSession>(channels); });
    server_->start();
  }

  std::uint16_t port() const { return server_->port(); }

  static WsOptions admin() {
    WsOptions o;
    o.headers = bearer(kAdminToken);
    return o;
  }

  // Creates a principal of `kind`; returns its API key.
  std::string principal(const std::string& id, const std::string& kind) {
    auto r = call(port(), "POST", "/v1/principals", kAdminToken,
                  R"({"id":")" + id + R"(","kind":")" + kind + R"(","name":")" + id + "\"}");
    EXPECT_EQ(r.status, 201) << r.body;
    return std::string(r.json().at("api_key").at("token").as_string());
  }

  std::shared_ptr<Flood> flood_ = std::make_shared<Flood>();
  std::shared_ptr<Channels> channels_ = std::make_shared<Channels>();
  std::unique_ptr<InProcessServer> server_;
};

TEST_F(WebSocketTest, UpgradesAndEchoesTextMessages) {
  auto options = admin();
  options.headers.emplace_back("X-Request-Id", "ws-echo-1");
  options.protocols = {"twinbridge.v1"};
  WsClient ws(port(), "/test/ws/echo", options);
  ASSERT_TRUE(ws.accepted()) << ws.handshake().status << " " << ws.handshake().body;
  EXPECT_EQ(ws.handshake().status, 101);
  EXPECT_EQ(ws.handshake().header("Sec-WebSocket-Protocol"), "twinbridge.v1");
  EXPECT_EQ(ws.handshake().header("X-Request-Id"), "ws-echo-1");
  EXPECT_EQ(ws.handshake().header("Server"), "twinbridge");
  ASSERT_TRUE(ws.send("hello"));
  EXPECT_EQ(ws.read(), "hello");
  const std::string unicode = "caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC";  // "café 東京"
  ASSERT_TRUE(ws.send(unicode));
  EXPECT_EQ(ws.read(), unicode);
  ASSERT_TRUE(ws.send(""));
  EXPECT_EQ(ws.read(), "");
  EXPECT_TRUE(ws.close(1000));
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(WebSocketTest, EchoesNoSubprotocolUnlessTwinbridgeV1IsOffered) {
  WsClient none(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(none.accepted());
  EXPECT_EQ(none.handshake().header("Sec-WebSocket-Protocol"), "");
  auto options = admin();
  options.protocols = {"chat", "twinbridge.v1"};
  WsClient offered(port(), "/test/ws/echo", options);
  ASSERT_TRUE(offered.accepted());
  EXPECT_EQ(offered.handshake().header("Sec-WebSocket-Protocol"), "twinbridge.v1");
}

TEST_F(WebSocketTest, ManyMessagesArriveInOrderBothWays) {
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  constexpr int kMessages = 2000;
  for (int i = 0; i < kMessages; ++i) ASSERT_TRUE(ws.send("m" + std::to_string(i)));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(ws.read(), "m" + std::to_string(i));
  ASSERT_TRUE(ws.send("count 5000"));
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(ws.read(), std::to_string(i));
}

// The server writes queued messages in batches of frames it frames itself: every length encoding of RFC 6455
// (7 bits, 16 bits, 64 bits) and the boundaries between them come back whole, alone and several in one batch.
TEST_F(WebSocketTest, MessagesOfEveryFrameLengthEncodingArriveWhole) {
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  const std::vector<std::size_t> sizes = {0, 1, 125, 126, 127, 65535, 65536, 65537, 300000};
  for (auto n : sizes) {
    ASSERT_TRUE(ws.send("size " + std::to_string(n)));
    ASSERT_EQ(ws.read(), sized(n));
  }
  for (auto n : sizes) ASSERT_TRUE(ws.send("size " + std::to_string(n)));
  for (auto n : sizes) ASSERT_EQ(ws.read(), sized(n));
}

// Pings from the client while the server writes a flood of messages to a slow reader: Beast's pongs go
// between two batches, never inside one, so every message arrives whole and in order, every pong comes back,
// and the client's messages are still read during the flood.
TEST_F(WebSocketTest, PingsDuringAFloodAreAnsweredWithoutCuttingAFrame) {
  auto options = admin();
  options.receive_buffer_bytes = 4096;  // the server's writes end partly written: the gate holds the pongs
  WsClient ws(port(), "/test/ws/echo", options);
  ASSERT_TRUE(ws.accepted());
  constexpr int kMessages = 20000;
  ASSERT_TRUE(ws.send("count " + std::to_string(kMessages)));
  std::vector<std::string> pinged;
  std::vector<std::string> echoes_sent;
  std::vector<std::string> echoes;
  // The next message that is not the echo of one of the client's messages.
  auto next_counted = [&]() -> std::optional<std::string> {
    for (;;) {
      auto message = ws.read();
      if (!message || !message->starts_with("echo ")) return message;
      echoes.push_back(std::move(*message));
    }
  };
  for (int i = 0; i < kMessages; ++i) {
    if (i % 500 == 0) {
      pinged.push_back("p" + std::to_string(i));
      ASSERT_TRUE(ws.ping(pinged.back()));
      echoes_sent.push_back("echo " + std::to_string(i));
      ASSERT_TRUE(ws.send(echoes_sent.back()));
    }
    ASSERT_EQ(next_counted(), std::to_string(i));
  }
  ASSERT_TRUE(ws.send("end"));
  ASSERT_EQ(next_counted(), "end");
  EXPECT_EQ(echoes, echoes_sent);
  EXPECT_EQ(ws.pongs(), pinged);
}

TEST_F(WebSocketTest, AMessageOverTheLimitClosesWith1009) {
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  const std::string largest(64 * 1024, 'a');  // limits.max_ws_message_bytes, by default
  ASSERT_TRUE(ws.send(largest));
  EXPECT_EQ(ws.read(), largest);
  ASSERT_TRUE(ws.send(largest + "b"));
  EXPECT_EQ(ws.wait_close(std::chrono::seconds(10)), 1009);
}

TEST_F(WebSocketTest, TheMessageLimitIsASetting) {
  server_->stop();
  InProcessOptions options;
  options.limits.max_ws_message_bytes = 1000;
  start(options);
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  ASSERT_TRUE(ws.send(std::string(1000, 'a')));
  EXPECT_EQ(ws.read(), std::string(1000, 'a'));
  ASSERT_TRUE(ws.send(std::string(1001, 'a')));
  EXPECT_EQ(ws.wait_close(std::chrono::seconds(10)), 1009);
}

TEST_F(WebSocketTest, TextThatIsNotUtf8ClosesWith1007) {
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  ASSERT_TRUE(ws.send("caf\xC3"));  // a truncated sequence
  EXPECT_EQ(ws.wait_close(std::chrono::seconds(10)), 1007);
}

TEST_F(WebSocketTest, ABinaryMessageClosesWith1003) {
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  ASSERT_TRUE(ws.send_binary(std::string("\x00\x01", 2)));
  EXPECT_EQ(ws.wait_close(std::chrono::seconds(10)), 1003);
  EXPECT_EQ(ws.close_reason(), "twinbridge accepts text messages only");
}

TEST_F(WebSocketTest, ASessionClosesWithItsOwnCodeAfterWhatItQueued) {
  WsClient ws(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(ws.accepted());
  ASSERT_TRUE(ws.send("count 100"));
  ASSERT_TRUE(ws.send("close 4001"));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(ws.read(), std::to_string(i));
  EXPECT_EQ(ws.wait_close(std::chrono::seconds(10)), 4001);
  EXPECT_EQ(ws.close_reason(), "asked to");
  EXPECT_EQ(ws.dropped(), 0u);
}

TEST_F(WebSocketTest, AHandshakeWithoutCredentialsIs401BeforeAnyUpgrade) {
  WsClient anonymous(port(), "/test/ws/echo");
  EXPECT_FALSE(anonymous.accepted());
  EXPECT_EQ(anonymous.handshake().status, 401);
  EXPECT_EQ(anonymous.handshake().header("Content-Type"), "application/problem+json");
  EXPECT_EQ(anonymous.handshake().header("WWW-Authenticate"), "Bearer realm=\"twinbridge\"");
  EXPECT_EQ(anonymous.handshake().json().at("type"), "urn:twinbridge:problem:unauthenticated");

  WsOptions wrong;
  wrong.headers = bearer("not-the-token-at-all");
  EXPECT_EQ(WsClient(port(), "/test/ws/echo", wrong).handshake().status, 401);

  // A token in the URL is not accepted: URLs end up in logs and histories.
  EXPECT_EQ(WsClient(port(), "/test/ws/echo?access_token=" + kAdminToken).handshake().status, 401);
}

TEST_F(WebSocketTest, ABrowserOffersItsCredentialAsASubprotocolWhichIsNeverEchoed) {
  const auto key = principal("ws-viewer", "metaverse-system");
  WsOptions browser;
  browser.protocols = {"twinbridge.v1", "bearer." + key};
  WsClient ws(port(), "/test/ws/echo", browser);
  ASSERT_TRUE(ws.accepted()) << ws.handshake().status << " " << ws.handshake().body;
  EXPECT_EQ(ws.handshake().header("Sec-WebSocket-Protocol"), "twinbridge.v1");
  for (const auto& [name, value] : ws.handshake().headers) {
    EXPECT_EQ(value.find(key), std::string::npos) << name;
  }
  ASSERT_TRUE(ws.send("hi"));
  EXPECT_EQ(ws.read(), "hi");

  WsOptions wrong;
  wrong.protocols = {"twinbridge.v1", "bearer.not-a-key-of-anyone"};
  EXPECT_EQ(WsClient(port(), "/test/ws/echo", wrong).handshake().status, 401);
}

TEST_F(WebSocketTest, ACredentialSubprotocolWithoutTwinbridgeV1OrBesideAnotherCredentialIs400) {
  auto refused = [&](WsOptions options) {
    WsClient ws(port(), "/test/ws/echo", std::move(options));
    EXPECT_FALSE(ws.accepted());
    EXPECT_EQ(ws.handshake().status, 400) << ws.handshake().body;
    if (ws.handshake().status == 400) {
      const auto problem = ws.handshake().json();
      EXPECT_EQ(problem.at("errors").at(0).at("header"), "Sec-WebSocket-Protocol");
      EXPECT_EQ(ws.handshake().body.find(kAdminToken), std::string::npos);
    }
  };
  WsOptions alone;
  alone.protocols = {"bearer." + kAdminToken};
  refused(alone);
  WsOptions two;
  two.protocols = {"twinbridge.v1", "bearer." + kAdminToken, "bearer." + kAdminToken};
  refused(two);
  auto both = admin();
  both.protocols = {"twinbridge.v1", "bearer." + kAdminToken};
  refused(both);
}

TEST_F(WebSocketTest, AHandshakeWithoutThePermissionIs403) {
  const auto key = principal("ws-twin-system", "twin-system");  // no twins:read
  WsOptions options;
  options.headers = bearer(key);
  WsClient ws(port(), "/test/ws/echo", options);
  EXPECT_FALSE(ws.accepted());
  EXPECT_EQ(ws.handshake().status, 403);
  EXPECT_EQ(ws.handshake().json().at("type"), "urn:twinbridge:problem:forbidden");
}

TEST_F(WebSocketTest, AWebSocketRouteAskedForWithoutAHandshakeIs426) {
  auto plain = call(port(), "GET", "/test/ws/echo", kAdminToken);
  EXPECT_EQ(plain.status, 426);
  EXPECT_EQ(plain.header("Content-Type"), "application/problem+json");
  EXPECT_EQ(plain.header("Upgrade"), "websocket");
  EXPECT_EQ(plain.header("Sec-WebSocket-Version"), "13");
  EXPECT_EQ(plain.json().at("type"), "urn:twinbridge:problem:upgrade-required");
  EXPECT_NE(std::string(plain.json().at("detail").as_string()).find("/test/ws/echo"), std::string::npos);

  // A handshake of another protocol version is no valid handshake either (RFC 6455 4.4).
  auto v8 = fetch(port(), {"GET",
                           "/test/ws/echo",
                           "",
                           {{"Authorization", "Bearer " + kAdminToken},
                            {"Connection", "Upgrade"},
                            {"Upgrade", "websocket"},
                            {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                            {"Sec-WebSocket-Version", "8"}}});
  EXPECT_EQ(v8.status, 426);
  EXPECT_EQ(v8.header("Sec-WebSocket-Version"), "13");
  // Nor is one without a proper key.
  auto keyless = fetch(port(), {"GET",
                                "/test/ws/echo",
                                "",
                                {{"Authorization", "Bearer " + kAdminToken},
                                 {"Connection", "Upgrade"},
                                 {"Upgrade", "websocket"},
                                 {"Sec-WebSocket-Version", "13"}}});
  EXPECT_EQ(keyless.status, 426);
}

TEST_F(WebSocketTest, AHandshakeToAnOrdinaryRouteGetsItsUsualAnswer) {
  WsClient health(port(), "/healthz");
  EXPECT_FALSE(health.accepted());
  EXPECT_EQ(health.handshake().status, 200);
  EXPECT_EQ(health.handshake().json().at("status"), "ok");
  WsClient principals(port(), "/v1/principals/me", admin());
  EXPECT_FALSE(principals.accepted());
  EXPECT_EQ(principals.handshake().status, 200);
  EXPECT_EQ(principals.handshake().json().at("id").as_string(), http::kAdminTokenPrincipal);
}

TEST_F(WebSocketTest, AClientThatDoesNotReadIsClosedWith1008AndOthersAreUnaffected) {
  server_->stop();
  InProcessOptions options;
  options.limits.max_ws_queue_bytes = 256 * 1024;
  start(options);
  WsClient other(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(other.accepted());
  auto slow_options = admin();
  slow_options.receive_buffer_bytes = 4096;
  WsClient slow(port(), "/test/ws/flood", slow_options);
  ASSERT_TRUE(slow.accepted());
  ASSERT_TRUE(slow.send("flood"));
  // The session queues until the channel refuses: the socket's buffers are full and 256 KiB wait.
  ASSERT_TRUE(eventually([&] { return flood_->refused.load(); }));
  EXPECT_GT(flood_->queued.load(), 16u);
  // The other connection (maybe on the same I/O thread) is served meanwhile.
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(other.send("still here " + std::to_string(i)));
    ASSERT_EQ(other.read(), "still here " + std::to_string(i));
  }
  // Reading now, the slow client gets what had left the queue, then the close frame.
  EXPECT_EQ(slow.wait_close(std::chrono::seconds(20)), 1008);
  EXPECT_EQ(slow.close_reason(), "client too slow");
  EXPECT_GT(slow.dropped(), 0u);
  EXPECT_LT(slow.dropped(), flood_->queued.load());
  ASSERT_TRUE(other.send("after"));
  EXPECT_EQ(other.read(), "after");
  EXPECT_TRUE(eventually([&] {
    return server_->metrics().find(R"(twinbridge_websocket_closes_total{reason="too_slow"} 1)") !=
           std::string::npos;
  }));
}

TEST_F(WebSocketTest, StoppingTheServerClosesWebSocketsWith1001) {
  server_->stop();
  InProcessOptions options;
  options.limits.write_timeout = std::chrono::milliseconds(1000);  // bounds the closing handshake
  start(options);
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(std::make_unique<WsClient>(port(), "/test/ws/echo", admin()));
    ASSERT_TRUE(clients.back()->accepted());
    ASSERT_TRUE(clients.back()->send("ping"));
    ASSERT_EQ(clients.back()->read(), "ping");
  }
  // One client never answers the close frame: the server drops it when the closing handshake times out.
  WsClient deaf(port(), "/test/ws/echo", admin());
  ASSERT_TRUE(deaf.accepted());
  std::atomic<bool> stopped{false};
  bool clean = false;
  std::thread stopper([&] {
    clean = server_->stop(std::chrono::seconds(10));
    stopped = true;
  });
  for (auto& c : clients) {
    EXPECT_EQ(c->wait_close(std::chrono::seconds(10)), 1001);
    EXPECT_EQ(c->close_reason(), "server shutting down");
  }
  stopper.join();
  EXPECT_TRUE(clean);
  EXPECT_EQ(deaf.wait_close(std::chrono::seconds(5)), 1001);  // the frame was sent; its answer came late
  const auto metrics = server_->metrics();
  EXPECT_NE(metrics.find(R"(twinbridge_websocket_closes_total{reason="shutdown"} 5)"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("twinbridge_websocket_connections 0"), std::string::npos) << metrics;
}

TEST_F(WebSocketTest, MetricsCountConnectionsMessagesAndCloses) {
  {
    WsClient ws(port(), "/test/ws/echo", admin());
    ASSERT_TRUE(ws.accepted());
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(ws.send("x"));
      ASSERT_TRUE(ws.read());
    }
    EXPECT_TRUE(eventually(
        [&] { return server_->metrics().find("twinbridge_websocket_connections 1") != std::string::npos; }));
    EXPECT_TRUE(ws.close(1000));
  }
  EXPECT_TRUE(eventually([&] {
    return server_->metrics().find(R"(twinbridge_websocket_closes_total{reason="peer"} 1)") !=
           std::string::npos;
  }));
  const auto metrics = server_->metrics();
  EXPECT_NE(metrics.find("twinbridge_websocket_connections 0"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(twinbridge_websocket_messages_total{direction="in"} 3)"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(twinbridge_websocket_messages_total{direction="out"} 3)"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find(R"(route="/test/ws/echo",status="101")"), std::string::npos) << metrics;
}

// Other threads send on a channel while its client reads: every message arrives once, whole, and in the
// order each thread sent it; queued_bytes() and is_open() are read meanwhile; after the connection ends,
// send() refuses and the channel outlives the server.
TEST(WebSocketConcurrencyTest, SendsFromOtherThreadsArriveWholeAndInOrder) {
  auto channels = std::make_shared<Channels>();
  auto server = std::make_unique<InProcessServer>();
  server->router().add({http::Method::get, "/test/ws/hold", http::Auth::required,
                        core::Permission::twins_read,
                        [channels](http::RequestContext&, const http::Request&) -> http::HandlerResult {
                          http::Response r;
                          r.websocket = std::make_shared<HoldSession>(channels);
                          co_return r;
                        }});
  server->start();
  WsOptions options;
  options.headers = bearer(kAdminToken);
  WsClient ws(server->port(), "/test/ws/hold", options);
  ASSERT_TRUE(ws.accepted());
  auto channel = channels->wait(0);
  ASSERT_TRUE(channel);
  constexpr int kThreads = 4;
  constexpr int kEach = 2000;
  std::atomic<int> refused{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        if (!channel->send(text(std::to_string(t) + ":" + std::to_string(i)))) ++refused;
        if (i % 64 == 0) {
          static_cast<void>(channel->queued_bytes());
          static_cast<void>(channel->is_open());
        }
      }
    });
  }
  // (No ASSERT before the senders are joined: sends never block, so they end whatever the client does.)
  std::vector<int> next(kThreads, 0);
  for (int n = 0; n < kThreads * kEach; ++n) {
    auto message = ws.read();
    if (!message) {
      ADD_FAILURE() << "no message after " << n;
      break;
    }
    const auto colon = message->find(':');
    const int t = std::stoi(message->substr(0, colon));
    if (std::stoi(message->substr(colon + 1)) != next[t]) {
      ADD_FAILURE() << "thread " << t << ": " << *message << " where " << next[t] << " was due";
      break;
    }
    ++next[t];
  }
  for (auto& s : senders) s.join();
  ASSERT_EQ(next, std::vector<int>(kThreads, kEach));
  EXPECT_EQ(refused.load(), 0);
  EXPECT_TRUE(eventually([&] { return channel->queued_bytes() == 0; }));
  // A close from another thread, racing sends from others.
  std::vector<std::thread> racers;
  for (int t = 0; t < kThreads; ++t) {
    racers.emplace_back([&, t] {
      if (t == 0) channel->close(4000, "done");
      for (int i = 0; i < 200; ++i) channel->send(text("late"));
    });
  }
  for (auto& r : racers) r.join();
  EXPECT_EQ(ws.wait_close(std::chrono::seconds(10)), 4000);
  EXPECT_FALSE(channel->is_open());
  EXPECT_FALSE(channel->send(text("after the end")));
  EXPECT_TRUE(server->stop());
  server.reset();
  // The channel outlives the server: it holds no I/O object any more.
  EXPECT_FALSE(channel->send(text("after the server")));
  channel->close(1000, "");
  EXPECT_EQ(channel->queued_bytes(), 0u);
}

// The server is started and stopped while WebSocket clients echo, flood and idle on other threads: every
// stop drains in time and the loops return (in the ASan and TSan builds, without a report).
TEST(WebSocketConcurrencyTest, StopsCleanlyUnderWebSocketLoad) {
  for (int cycle = 0; cycle < 4; ++cycle) {
    auto flood = std::make_shared<Flood>();
    InProcessOptions options;
    options.limits.write_timeout = std::chrono::milliseconds(1000);
    options.limits.max_ws_queue_bytes = 64 * 1024;
    InProcessServer server(options);
    server.router().add({http::Method::get, "/test/ws/echo", http::Auth::required,
                         core::Permission::twins_read,
                         [](http::RequestContext&, const http::Request&) -> http::HandlerResult {
                           http::Response r;
                           r.websocket = std::make_shared<EchoSession>();
                           co_return r;
                         }});
    server.router().add({http::Method::get, "/test/ws/flood", http::Auth::required,
                         core::Permission::twins_read,
                         [flood](http::RequestContext&, const http::Request&) -> http::HandlerResult {
                           http::Response r;
                           r.websocket = std::make_shared<FloodSession>(flood);
                           co_return r;
                         }});
    server.start();
    std::atomic<bool> stop{false};
    std::atomic<int> echoed{0};
    std::vector<std::thread> clients;
    for (int w = 0; w < 3; ++w) {
      clients.emplace_back([&, w] {
        while (!stop) {
          try {
            WsOptions o;
            o.headers = bearer(kAdminToken);
            o.timeout = std::chrono::milliseconds(2000);
            WsClient ws(server.port(), w == 2 ? "/test/ws/flood" : "/test/ws/echo", o);
            if (!ws.accepted()) return;
            if (w == 2) {
              ws.send("flood");
              ws.wait_close(std::chrono::milliseconds(2000));
              continue;
            }
            for (int i = 0; i < 20 && !stop; ++i) {
              if (!ws.send("e") || !ws.read()) break;
              ++echoed;
            }
          } catch (const std::exception&) {
            return;  // the server is gone
          }
        }
      });
    }
    ASSERT_TRUE(eventually([&] { return echoed.load() > 50; })) << "cycle " << cycle;
    const bool clean = server.stop(std::chrono::seconds(5));
    stop = true;
    for (auto& c : clients) c.join();
    ASSERT_TRUE(clean) << "cycle " << cycle;
  }
}

}  // namespace
}  // namespace twinbridge::testing
