#include "connect/mqtt_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/mosquitto_broker.hpp"

extern char** environ;

namespace twinbridge::connect {
namespace {

using namespace std::chrono_literals;
using testing::MosquittoBroker;

constexpr auto kDeadline = 30s;

// Polls `done` until it holds or `timeout` passes.
template <class Pred>
bool eventually(Pred done, std::chrono::milliseconds timeout = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// The messages a client received, in order.
class Inbox {
 public:
  MqttClient::MessageHandler handler() {
    return [this](MqttMessage m) {
      std::lock_guard lock(mutex_);
      messages_.push_back(std::move(m));
    };
  }
  std::vector<MqttMessage> messages() const {
    std::lock_guard lock(mutex_);
    return messages_;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return messages_.size();
  }
  std::vector<std::string> topics() const {
    std::vector<std::string> out;
    for (const auto& m : messages()) out.push_back(m.topic);
    return out;
  }
  std::optional<MqttMessage> find(const std::string& topic) const {
    std::lock_guard lock(mutex_);
    for (const auto& m : messages_) {
      if (m.topic == topic) return m;
    }
    return std::nullopt;
  }
  bool wait_for(const std::string& topic) const {
    return eventually([&] { return find(topic).has_value(); });
  }

 private:
  mutable std::mutex mutex_;
  std::vector<MqttMessage> messages_;
};

// The state changes a client reported, in order.
class StateLog {
 public:
  MqttClient::StateHandler handler() {
    return [this](MqttState state, std::string_view detail) {
      std::lock_guard lock(mutex_);
      changes_.emplace_back(state, std::string(detail));
    };
  }
  std::vector<std::pair<MqttState, std::string>> changes() const {
    std::lock_guard lock(mutex_);
    return changes_;
  }
  bool saw(MqttState state) const {
    const auto all = changes();
    return std::any_of(all.begin(), all.end(), [&](const auto& c) { return c.first == state; });
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::pair<MqttState, std::string>> changes_;
};

// Runs mosquitto_pub (MQTT 5) against the broker and returns its exit code: it exits once the broker has
// acknowledged the message, so a QoS 1 message is then in the broker.
int mosquitto_pub(const MosquittoBroker& broker, std::vector<std::string> args) {
  std::vector<std::string> all = {"/usr/bin/mosquitto_pub",      "-h", "127.0.0.1", "-p",
                                  std::to_string(broker.port()), "-V", "5"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A broker that says goodbye, as brokers do when they shut down: it answers a CONNECT with CONNACK success,
// then sends an MQTT 5 DISCONNECT with reason 0x8B (server shutting down) and waits for the client to close.
class GoodbyeBroker {
 public:
  GoodbyeBroker() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 8) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("cannot listen");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~GoodbyeBroker() {
    ::shutdown(listener_, SHUT_RDWR);  // ends the blocked accept()
    thread_.join();
    ::close(listener_);
  }
  std::string url() const { return "mqtt://127.0.0.1:" + std::to_string(port_); }
  int goodbyes() const { return goodbyes_.load(); }

 private:
  static bool read_exactly(int fd, unsigned char* out, std::size_t n) {
    while (n > 0) {
      const auto got = ::read(fd, out, n);
      if (got <= 0) return false;
      out += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  }
  // Reads one MQTT packet (fixed header, variable length, body) and drops it.
  static bool read_packet(int fd) {
    unsigned char byte = 0;
    if (!read_exactly(fd, &byte, 1)) return false;
    std::size_t length = 0;
    for (int shift = 0; shift < 28; shift += 7) {
      if (!read_exactly(fd, &byte, 1)) return false;
      length |= static_cast<std::size_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) break;
    }
    std::vector<unsigned char> body(length);
    return length > 64 * 1024 ? false : read_exactly(fd, body.data(), length);
  }
  void serve() {
    for (;;) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      if (read_packet(fd)) {
        const unsigned char connack[] = {0x20, 0x03, 0x00, 0x00, 0x00};
        const unsigned char disconnect[] = {0xe0, 0x02, 0x8b, 0x00};
        if (::write(fd, connack, sizeof connack) == sizeof connack &&
            ::write(fd, disconnect, sizeof disconnect) == sizeof disconnect) {
          ++goodbyes_;
        }
        ::shutdown(fd, SHUT_WR);
        unsigned char sink[256];
        while (::read(fd, sink, sizeof sink) > 0) {
        }
      }
      ::close(fd);
    }
  }

  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<int> goodbyes_{0};
  std::thread thread_;
};

class MqttClientTest : public ::testing::Test {
 protected:
  MqttSettings settings(const std::string& client_id) const {
    MqttSettings s;
    s.broker_url = broker_.url();
    s.client_id = client_id;
    s.reconnect_min = 20ms;
    s.reconnect_max = 200ms;
    return s;
  }

  std::unique_ptr<MqttClient> client(MqttSettings s, Inbox& inbox, StateLog* log = nullptr) {
    auto made = MqttClient::create(std::move(s), inbox.handler(), log != nullptr ? log->handler() : nullptr);
    EXPECT_TRUE(made) << made.error().detail;
    return made ? std::move(*made) : nullptr;
  }

  // A client that has started and is connected.
  std::unique_ptr<MqttClient> connected(MqttSettings s, Inbox& inbox, StateLog* log = nullptr) {
    auto c = client(std::move(s), inbox, log);
    if (c == nullptr) return nullptr;
    EXPECT_TRUE(c->start());
    EXPECT_TRUE(eventually([&] { return c->connected(); })) << c->status().last_error;
    return c;
  }

  // Subscribes and waits for the broker's SUBACK.
  static void subscribe(MqttClient& c, const std::string& filter, int qos = 1) {
    const auto before = c.status().counters.subscribed;
    ASSERT_TRUE(c.subscribe(filter, qos));
    ASSERT_TRUE(eventually([&] { return c.status().counters.subscribed > before; }));
  }

  MosquittoBroker broker_;
  Inbox ignored_;
};

TEST_F(MqttClientTest, ReceivesQos1MessagesOnASubscribedFilter) {
  Inbox inbox;
  auto sub = connected(settings("sub"), inbox);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "plant/line1/temp");
  auto pub = connected(settings("pub"), ignored_);
  ASSERT_NE(pub, nullptr);

  ASSERT_TRUE(pub->publish("plant/line1/temp", "21.5", 1));
  ASSERT_TRUE(inbox.wait_for("plant/line1/temp"));
  const auto m = *inbox.find("plant/line1/temp");
  EXPECT_EQ(m.payload, "21.5");
  EXPECT_EQ(m.qos, 1);
  EXPECT_FALSE(m.retain);
  EXPECT_GT(m.mid, 0);
  EXPECT_EQ(sub->status().counters.received, 1u);
  EXPECT_EQ(pub->status().counters.published, 1u);
  EXPECT_EQ(sub->status().state, MqttState::connected);
}

TEST_F(MqttClientTest, WildcardFiltersMatchAsMqttSays) {
  Inbox inbox;
  auto sub = connected(settings("sub"), inbox);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "plant/+/temp");
  subscribe(*sub, "alarms/#");
  auto pub = connected(settings("pub"), ignored_);
  ASSERT_NE(pub, nullptr);

  for (const auto* topic : {"plant/a/temp", "plant/a/b/temp", "plant/b/humidity", "alarms", "alarms/x/y",
                            "alarmsx", "plant/z/temp"}) {
    ASSERT_TRUE(pub->publish(topic, "x", 1));
  }
  ASSERT_TRUE(eventually([&] { return inbox.size() >= 4; }));
  ASSERT_TRUE(inbox.wait_for("plant/z/temp"));  // the last one published
  const auto topics = inbox.topics();
  EXPECT_EQ(std::set<std::string>(topics.begin(), topics.end()),
            (std::set<std::string>{"plant/a/temp", "alarms", "alarms/x/y", "plant/z/temp"}));
  EXPECT_EQ(topics.size(), 4u);
}

TEST_F(MqttClientTest, UnsubscribeStopsDelivery) {
  Inbox inbox;
  auto sub = connected(settings("sub"), inbox);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "a/#");
  subscribe(*sub, "b/#");
  auto pub = connected(settings("pub"), ignored_);
  ASSERT_NE(pub, nullptr);
  ASSERT_TRUE(pub->publish("a/1", "one", 1));
  ASSERT_TRUE(inbox.wait_for("a/1"));

  ASSERT_TRUE(sub->unsubscribe("a/#"));
  EXPECT_EQ(sub->subscriptions(), (std::vector<std::pair<std::string, int>>{{"b/#", 1}}));
  ASSERT_TRUE(pub->publish("a/2", "two", 1));
  ASSERT_TRUE(pub->publish("b/end", "end", 1));
  ASSERT_TRUE(inbox.wait_for("b/end"));
  EXPECT_FALSE(inbox.find("a/2").has_value());
  EXPECT_TRUE(sub->unsubscribe("never/subscribed")) << "removing what is not there is not an error";
}

TEST_F(MqttClientTest, AnOversizePayloadIsDroppedAndCountedAndTheNextMessageArrives) {
  Inbox inbox;
  auto s = settings("sub");
  s.max_payload_bytes = 1024;
  auto sub = connected(s, inbox);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "big/#");
  auto pub = connected(settings("pub"), ignored_);
  ASSERT_NE(pub, nullptr);

  ASSERT_TRUE(pub->publish("big/over", std::string(4096, 'x'), 1));
  ASSERT_TRUE(pub->publish("big/limit", std::string(1024, 'y'), 1));
  ASSERT_TRUE(pub->publish("big/small", "ok", 1));
  ASSERT_TRUE(inbox.wait_for("big/small"));
  EXPECT_EQ(inbox.topics(), (std::vector<std::string>{"big/limit", "big/small"}));
  EXPECT_EQ(inbox.find("big/limit")->payload.size(), 1024u);
  EXPECT_EQ(sub->status().counters.dropped_oversize, 1u);
  EXPECT_EQ(sub->status().counters.received, 2u);
  EXPECT_TRUE(sub->connected()) << "a dropped message does not cost the connection";
  // Our own publishes are bounded by the same setting.
  const auto refused = sub->publish("big/mine", std::string(1025, 'z'));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, core::Errc::validation_failed);
}

TEST_F(MqttClientTest, AfterABrokerRestartWithoutItsStateTheClientReconnectsAndResubscribes) {
  Inbox inbox;
  StateLog log;
  auto sub = connected(settings("sub"), inbox, &log);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "plant/#");
  const auto subscribed_before = sub->status().counters.subscribed;

  broker_.restart(/*forget_state=*/true);  // the broker no longer knows the session or its subscription
  ASSERT_TRUE(eventually([&] {
    const auto st = sub->status();
    return st.counters.reconnects >= 1 && st.state == MqttState::connected &&
           st.counters.subscribed > subscribed_before;
  })) << sub->status().last_error;
  EXPECT_TRUE(log.saw(MqttState::disconnected));
  EXPECT_EQ(log.changes().back(), std::make_pair(MqttState::connected, std::string("new session")));
  EXPECT_FALSE(sub->status().last_error.empty()) << "why the connection went is kept";

  auto pub = connected(settings("pub"), ignored_);
  ASSERT_NE(pub, nullptr);
  ASSERT_TRUE(pub->publish("plant/after-restart", "back", 1));
  ASSERT_TRUE(inbox.wait_for("plant/after-restart"));
  EXPECT_EQ(sub->status().counters.connects, 2u);
}

TEST_F(MqttClientTest, MessagesQueuedForThePersistentSessionWhileStoppedAreDelivered) {
  Inbox inbox;
  StateLog log;
  auto sub = connected(settings("sub"), inbox, &log);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "cmd/#");
  sub->stop();
  EXPECT_FALSE(sub->connected());
  EXPECT_EQ(sub->status().state, MqttState::stopped);

  ASSERT_EQ(mosquitto_pub(broker_, {"-q", "1", "-t", "cmd/1", "-m", "one"}), 0);
  ASSERT_EQ(mosquitto_pub(broker_, {"-q", "1", "-t", "cmd/2", "-m", "two"}), 0);
  ASSERT_TRUE(sub->start());
  ASSERT_TRUE(inbox.wait_for("cmd/2"));
  EXPECT_EQ(inbox.topics(), (std::vector<std::string>{"cmd/1", "cmd/2"}));
  EXPECT_EQ(log.changes().back(), std::make_pair(MqttState::connected, std::string("session present")));
  EXPECT_EQ(sub->status().counters.reconnects, 0u) << "a connection after start() is not a reconnect";

  // Once more: later connections (asynchronous in libmosquitto) ask for the same session expiry.
  sub->stop();
  ASSERT_EQ(mosquitto_pub(broker_, {"-q", "1", "-t", "cmd/again", "-m", "again"}), 0);
  ASSERT_TRUE(sub->start());
  ASSERT_TRUE(inbox.wait_for("cmd/again"));

  // A new client with the same id (twinbridge restarted) takes the session over, with what was queued.
  sub.reset();
  ASSERT_EQ(mosquitto_pub(broker_, {"-q", "1", "-t", "cmd/3", "-m", "three"}), 0);
  Inbox next_inbox;
  auto next = client(settings("sub"), next_inbox);
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(next->subscribe("cmd/#", 1));
  ASSERT_TRUE(next->start());
  ASSERT_TRUE(next_inbox.wait_for("cmd/3"));
  EXPECT_EQ(next_inbox.find("cmd/3")->payload, "three");
}

TEST_F(MqttClientTest, MessagesQueuedForTheSessionSurviveABrokerRestart) {
  Inbox inbox;
  auto sub = connected(settings("sub"), inbox);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "cmd/#");
  sub->stop();
  ASSERT_EQ(mosquitto_pub(broker_, {"-q", "1", "-t", "cmd/kept", "-m", "kept"}), 0);
  broker_.restart();  // with its persistence file
  ASSERT_TRUE(sub->start());
  ASSERT_TRUE(inbox.wait_for("cmd/kept"));
  EXPECT_EQ(inbox.find("cmd/kept")->qos, 1);
}

TEST_F(MqttClientTest, ConnectFailuresAreCountedUntilTheBrokerIsUp) {
  broker_.stop();
  Inbox inbox;
  StateLog log;
  auto c = client(settings("early"), inbox, &log);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->start());
  ASSERT_TRUE(eventually([&] { return c->status().counters.connect_failures >= 2; }));
  auto st = c->status();
  EXPECT_FALSE(c->connected());
  EXPECT_NE(st.last_error.find("refused"), std::string::npos) << st.last_error;
  EXPECT_TRUE(log.saw(MqttState::connecting));
  EXPECT_TRUE(log.saw(MqttState::disconnected));

  broker_.restart();
  ASSERT_TRUE(eventually([&] { return c->connected(); })) << c->status().last_error;
  st = c->status();
  EXPECT_EQ(st.counters.connects, 1u);
  EXPECT_EQ(st.counters.reconnects, 0u);
}

// libmosquitto's own loop thread ends for good on a DISCONNECT from the broker; this client reconnects.
TEST_F(MqttClientTest, ADisconnectFromTheBrokerIsReportedAndTheClientReconnects) {
  GoodbyeBroker goodbye;
  auto s = settings("told-to-go");
  s.broker_url = goodbye.url();
  StateLog log;
  auto c = client(s, ignored_, &log);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->start());
  ASSERT_TRUE(eventually([&] { return c->status().counters.reconnects >= 2; })) << c->status().last_error;
  EXPECT_GE(goodbye.goodbyes(), 3);
  EXPECT_EQ(c->status().last_error, "the broker disconnected: Server shutting down");
  EXPECT_EQ(c->status().counters.connect_failures, 0u);
  const auto changes = log.changes();
  EXPECT_NE(std::find(changes.begin(), changes.end(),
                      std::make_pair(MqttState::disconnected,
                                     std::string("the broker disconnected: Server shutting down"))),
            changes.end());
  c->stop();
}

TEST_F(MqttClientTest, ARefusedConnectionIsReportedAndRetriedAndCredentialsAreSent) {
  testing::TempDir dir;
  const auto passwords = (dir.path() / "passwords").string();
  ASSERT_EQ(std::system(("mosquitto_passwd -b -c " + passwords + " sensor s3cret 2>/dev/null").c_str()), 0);
  MosquittoBroker closed("allow_anonymous false\npassword_file " + passwords + "\n");

  auto anonymous = settings("anonymous");
  anonymous.broker_url = closed.url();
  Inbox unused;
  StateLog log;
  auto refused = client(anonymous, unused, &log);
  ASSERT_NE(refused, nullptr);
  ASSERT_TRUE(refused->start());
  ASSERT_TRUE(eventually([&] { return refused->status().counters.connect_failures >= 2; }));
  EXPECT_FALSE(refused->connected());
  EXPECT_EQ(refused->status().last_error, "the broker refused the connection: Not authorized");
  EXPECT_EQ(refused->status().counters.connects, 0u);

  auto with_password = anonymous;
  with_password.client_id = "sensor-1";
  with_password.username = "sensor";
  with_password.password = "s3cret";
  auto accepted = connected(with_password, unused);
  ASSERT_NE(accepted, nullptr);
  EXPECT_EQ(accepted->status().counters.connect_failures, 0u);
}

TEST_F(MqttClientTest, StopTwiceIsSafeAndTheClientCanStartAgain) {
  StateLog log;
  auto c = connected(settings("stopper"), ignored_, &log);
  ASSERT_NE(c, nullptr);
  c->stop();
  c->stop();
  EXPECT_FALSE(c->connected());
  EXPECT_EQ(c->status().state, MqttState::stopped);
  EXPECT_EQ(log.changes().back().first, MqttState::stopped);
  // A clean DISCONNECT (the broker keeps the session), not a dropped connection.
  EXPECT_TRUE(eventually([&] {
    return broker_.log().find("Client stopper disconnected") != std::string::npos;
  })) << broker_.log();
  const auto refused = c->publish("a/b", "x");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, core::Errc::unavailable);

  ASSERT_TRUE(c->start());
  EXPECT_TRUE(eventually([&] { return c->connected(); }));
  EXPECT_TRUE(c->start()) << "starting a started client does nothing";
}

TEST_F(MqttClientTest, StopEndsTheBackOffAtOnce) {
  broker_.stop();
  auto s = settings("waiting");
  s.reconnect_min = 60s;
  s.reconnect_max = 60s;
  auto c = client(s, ignored_);
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->start());
  ASSERT_TRUE(eventually([&] { return c->status().counters.connect_failures >= 1; }));
  c->stop();  // would hang for a minute if the back-off did not wake up
  EXPECT_EQ(c->status().state, MqttState::stopped);
}

TEST_F(MqttClientTest, Mqtt5PropertiesReachTheHandler) {
  Inbox inbox;
  auto sub = connected(settings("sub"), inbox);
  ASSERT_NE(sub, nullptr);
  subscribe(*sub, "props/#");
  ASSERT_EQ(mosquitto_pub(broker_, {"-q",
                                    "1",
                                    "-t",
                                    "props/1",
                                    "-m",
                                    R"({"a":1})",
                                    "-D",
                                    "publish",
                                    "content-type",
                                    "application/json",
                                    "-D",
                                    "publish",
                                    "user-property",
                                    "unit",
                                    "celsius",
                                    "-D",
                                    "publish",
                                    "response-topic",
                                    "props/reply",
                                    "-D",
                                    "publish",
                                    "correlation-data",
                                    "req-7",
                                    "-D",
                                    "publish",
                                    "payload-format-indicator",
                                    "1",
                                    "-D",
                                    "publish",
                                    "message-expiry-interval",
                                    "3600"}),
            0);
  ASSERT_TRUE(inbox.wait_for("props/1"));
  const auto m = *inbox.find("props/1");
  EXPECT_EQ(m.payload, R"({"a":1})");
  EXPECT_EQ(m.content_type, "application/json");
  EXPECT_EQ(m.response_topic, "props/reply");
  EXPECT_EQ(m.correlation_data, "req-7");
  EXPECT_EQ(m.payload_is_utf8, std::optional<bool>(true));
  ASSERT_TRUE(m.message_expiry.has_value());
  EXPECT_LE(*m.message_expiry, 3600u);
  EXPECT_EQ(m.user_properties, (std::vector<std::pair<std::string, std::string>>{{"unit", "celsius"}}));
}

// libmosquitto's own loop (select()) fails for descriptors of 1024 and more; this client polls.
TEST_F(MqttClientTest, WorksWhenItsSocketDescriptorIsAbove1023) {
  rlimit limit{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &limit), 0);
  if (limit.rlim_cur < 2048) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 2048);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < 2048)
    GTEST_SKIP() << "cannot open 1100 descriptors (RLIMIT_NOFILE " << limit.rlim_cur << ")";
  std::vector<int> held;
  while (held.size() < 1100) held.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_GE(held.back(), 1024);

  Inbox inbox;
  auto sub = connected(settings("high-fd"), inbox);
  if (sub != nullptr) {
    subscribe(*sub, "fd/#");
    ASSERT_EQ(mosquitto_pub(broker_, {"-q", "1", "-t", "fd/1", "-m", "x"}), 0);
    EXPECT_TRUE(inbox.wait_for("fd/1"));
  }
  sub.reset();
  for (const int fd : held) ::close(fd);
}

TEST_F(MqttClientTest, ConnectsOverTlsAndRefusesABrokerItCannotVerify) {
  testing::TempDir certs;
  const auto cert = (certs.path() / "broker.pem").string();
  const auto key = (certs.path() / "broker.key").string();
  const auto other = (certs.path() / "other.pem").string();
  const auto other_key = (certs.path() / "other.key").string();
  const auto make = [](const std::string& c, const std::string& k) {
    const auto command =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "
        "/CN=twinbridge-test "
        "-addext subjectAltName=IP:127.0.0.1 -keyout " +
        k + " -out " + c + " 2>/dev/null";
    return std::system(command.c_str()) == 0;
  };
  ASSERT_TRUE(make(cert, key));
  ASSERT_TRUE(make(other, other_key));
  MosquittoBroker tls_broker("certfile " + cert + "\nkeyfile " + key + "\n");

  auto s = settings("tls");
  s.broker_url = tls_broker.url(/*tls=*/true);
  s.ca_file = cert;
  Inbox inbox;
  auto c = connected(s, inbox);
  ASSERT_NE(c, nullptr);
  subscribe(*c, "secure/#");
  auto p = s;
  p.client_id = "tls-pub";
  auto pub = connected(p, ignored_);
  ASSERT_NE(pub, nullptr);
  ASSERT_TRUE(pub->publish("secure/1", "sealed", 1));
  ASSERT_TRUE(inbox.wait_for("secure/1"));

  auto wrong = s;
  wrong.client_id = "tls-wrong";
  wrong.ca_file = other;
  Inbox unused;
  auto w = client(wrong, unused);
  ASSERT_NE(w, nullptr);
  ASSERT_TRUE(w->start());
  ASSERT_TRUE(eventually([&] { return w->status().counters.connect_failures >= 1; }));
  EXPECT_FALSE(w->connected());
  EXPECT_NE(w->status().last_error.find("certificate verify failed"), std::string::npos)
      << w->status().last_error;
}

TEST_F(MqttClientTest, BadSettingsAreRefusedWithAClearError) {
  struct Case {
    std::string url;
    std::string detail;  // a part of the error's detail
  };
  const std::vector<Case> urls = {
      {"http://127.0.0.1:1883", "scheme"},
      {"mqtt://", "has no host"},
      {"mqtt://127.0.0.1:99999", "the port \"99999\""},
      {"mqtt://127.0.0.1:0", "the port \"0\""},
      {"mqtt://user:secret@127.0.0.1", "userinfo"},
      {"mqtt://127.0.0.1/plant/temp", "has a path"},
      {"mqtt://127.0.0.1/?x=1", "query"},
      {"mqtt://127.0.0.1/#", "fragment"},
      {"mqtt://exa mple", "is not a URI"},
      {"mqtt://bad!host", "not a DNS name"},
      {"", "is not a URI"},
  };
  for (const auto& c : urls) {
    auto s = settings("x");
    s.broker_url = c.url;
    const auto made = MqttClient::create(s, ignored_.handler());
    ASSERT_FALSE(made) << c.url;
    EXPECT_EQ(made.error().code, core::Errc::validation_failed) << c.url;
    EXPECT_NE(made.error().detail.find(c.detail), std::string::npos) << c.url << ": " << made.error().detail;
  }
  const auto refused = [&](MqttSettings s, const std::string& detail) {
    const auto made = MqttClient::create(std::move(s), ignored_.handler());
    ASSERT_FALSE(made) << detail;
    EXPECT_NE(made.error().detail.find(detail), std::string::npos) << made.error().detail;
  };
  refused(settings(""), "client_id is empty");
  auto s = settings("x");
  s.keepalive = 1s;
  refused(s, "keepalive");
  s = settings("x");
  s.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  refused(s, "ca_file is set but");
  s = settings("x");
  s.broker_url = "mqtts://127.0.0.1";
  s.ca_file = "/nonexistent/ca.pem";
  refused(s, "cannot be read");
  s = settings("x");
  s.password = "secret";
  refused(s, "password is set without a username");
  s = settings("x");
  s.max_payload_bytes = 0;
  refused(s, "max_payload_bytes");
  s = settings("x");
  s.reconnect_max = 1ms;
  refused(s, "reconnect_max");
  const auto no_handler = MqttClient::create(settings("x"), nullptr);
  ASSERT_FALSE(no_handler);

  auto v6 = settings("x");
  v6.broker_url = "MQTTS://[::1]:8884/";
  EXPECT_TRUE(MqttClient::create(v6, ignored_.handler()));
}

TEST_F(MqttClientTest, BadTopicsAndFiltersAreRefusedWithAClearError) {
  auto s = settings("x");
  s.max_subscriptions = 2;
  auto c = client(s, ignored_);
  ASSERT_NE(c, nullptr);
  const auto refused = [](const core::Result<void>& r, const std::string& detail) {
    ASSERT_FALSE(r) << detail;
    EXPECT_EQ(r.error().code, core::Errc::validation_failed);
    EXPECT_NE(r.error().detail.find(detail), std::string::npos) << r.error().detail;
  };
  refused(c->subscribe("a/#/b"), "misplaces a wildcard");
  refused(c->subscribe("a+"), "misplaces a wildcard");
  refused(c->subscribe("a/b#"), "misplaces a wildcard");
  refused(c->subscribe(""), "is empty");
  refused(c->subscribe(std::string("a\0b", 3)), "NUL");
  refused(c->subscribe("a/\xff"), "not UTF-8");
  refused(c->subscribe("a/\x01"), "control character");
  refused(c->subscribe(std::string(65536, 'a')), "longer than 65535 bytes");
  refused(c->subscribe("$share/group"), "no filter after its group");
  refused(c->subscribe("a/b", 3), "QoS");
  refused(c->unsubscribe("a/#/b"), "misplaces a wildcard");
  EXPECT_TRUE(c->subscribe("a/+/c", 0));
  EXPECT_TRUE(c->subscribe("$share/g/a/#", 2));
  const auto full = c->subscribe("one/more");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, core::Errc::unavailable);
  EXPECT_TRUE(c->subscribe("a/+/c", 1)) << "changing the QoS of a filter is not one more";
  EXPECT_EQ(c->subscriptions(),
            (std::vector<std::pair<std::string, int>>{{"$share/g/a/#", 2}, {"a/+/c", 1}}));

  refused(c->publish("a/+", "x"), "contains a wildcard");
  refused(c->publish("a/#", "x"), "contains a wildcard");
  refused(c->publish("$SYS/x", "x"), "reserved for the broker");
  refused(c->publish("a/b", "x", -1), "QoS");
}

TEST(MqttTopicTest, TopicsAndFiltersFollowTheMqttRules) {
  for (const auto* ok : {"a", "a/b", "/a", "a/", "a//b", "température/°C", " "}) {
    EXPECT_TRUE(check_mqtt_topic(ok)) << ok;
    EXPECT_TRUE(check_mqtt_topic_filter(ok)) << ok;
  }
  EXPECT_TRUE(check_mqtt_topic(std::string(65535, 'a')));
  EXPECT_FALSE(check_mqtt_topic(std::string(65536, 'a')));
  for (const auto* ok : {"#", "+", "a/#", "a/+/b", "+/+", "/#", "$SYS/#", "$share/g/+/x"}) {
    EXPECT_TRUE(check_mqtt_topic_filter(ok)) << ok;
    EXPECT_FALSE(check_mqtt_topic(ok)) << ok;
  }
  for (const auto* bad : {"a#", "#/a", "a/#/b", "a+", "+a", "a/b+/c", "##"}) {
    EXPECT_FALSE(check_mqtt_topic_filter(bad)) << bad;
  }
  EXPECT_FALSE(check_mqtt_topic("\xc0\xaf"));      // overlong '/'
  EXPECT_FALSE(check_mqtt_topic("\xef\xbf\xbf"));  // U+FFFF, a noncharacter
}

TEST(MqttUrlTest, UrlsAreTakenApart) {
  const auto u = parse_mqtt_url("mqtt://Broker.Example");
  ASSERT_TRUE(u) << u.error().detail;
  EXPECT_EQ(u->broker, (MqttBroker{"mqtt", "broker.example", 1883}));
  EXPECT_EQ(u->broker.url(), "mqtt://broker.example:1883");
  EXPECT_TRUE(u->topic.empty());
  const auto t = parse_mqtt_url("mqtts://[::1]/plant/%23");
  ASSERT_TRUE(t) << t.error().detail;
  EXPECT_EQ(t->broker, (MqttBroker{"mqtts", "::1", 8883}));
  EXPECT_EQ(t->broker.url(), "mqtts://[::1]:8883");
  EXPECT_EQ(t->topic, "plant/#");
  EXPECT_TRUE(parse_mqtt_url("mqtt://10.0.0.7:1884/")->topic.empty());
}

}  // namespace
}  // namespace twinbridge::connect
