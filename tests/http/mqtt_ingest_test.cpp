// Physical -> virtual over MQTT (dtif/mqtt_sync.hpp) with the real server and a real Mosquitto broker: a twin
// system publishes on its state topic and on the topics its TDs' forms declare; twinbridge applies what it
// receives in order, once, and survives a broker restart; bad messages are dropped without disturbing the
// rest. Waits poll with a deadline.

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "connect/mqtt_client.hpp"
#include "core/credentials.hpp"
#include "core/ids.hpp"
#include "support/http_client.hpp"
#include "support/mosquitto_broker.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;

// A TD with a durable number property fed by its own MQTT topic, and others fed by the system's state topic.
boost::json::object robot(const std::string& id, const std::string& broker) {
  return {{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
          {"id", id},
          {"title", "Robot " + id},
          {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
          {"security", "nosec_sc"},
          {"properties",
           {{"temperature",
             {{"type", "number"},
              {"minimum", -50},
              {"maximum", 150},
              {"observable", true},
              {"forms", boost::json::array{{{"href", broker + "/cell7/" + id + "/temperature"},
                                            {"op", boost::json::array{"observeproperty"}}}}}}},
            {"humidity",
             {{"type", "number"},
              {"observable", true},
              // A wildcard filter: every cell's sensor publishes there (the same value for each robot).
              {"forms", boost::json::array{{{"href", broker},
                                            {"mqv:filter", "sensors/+/" + id + "/humidity"},
                                            {"op", boost::json::array{"observeproperty"}}}}}}},
            {"mode",
             {{"type", "string"},
              {"enum", boost::json::array{"idle", "running", "fault"}},
              {"forms", boost::json::array{{{"href", "https://cell7.example/mode"}}}}}},
            {"count",
             {{"type", "integer"}, {"forms", boost::json::array{{{"href", "https://cell7.example/c"}}}}}}}}};
}

class MqttIngestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    broker_ = std::make_unique<MosquittoBroker>();
    dir_ = std::make_unique<TempDir>();
    server_ = std::make_unique<ServerProcess>(
        dir_->path(),
        // More check threads than cores: a twin's changes must still be applied in their order.
        std::vector<std::string>{"--mqtt-url", broker_->url(), "--mqtt-client-id",
                                 "tb-" + core::random_hex(6), "--mqtt-workers", "3"},
        std::map<std::string, std::string>{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}});
    auto r = call(port(), "POST", "/v1/principals", kAdmin,
                  R"({"id":"cell7","kind":"twin-system","name":"cell7"})");
    ASSERT_EQ(r.status, 201) << r.body;
    key_ = std::string(r.json().at("api_key").at("token").as_string());
    boost::json::array twins{robot("urn:cell7:r1", broker_->url()), robot("urn:cell7:r2", broker_->url())};
    const boost::json::object system{{"id", "cell7"},
                                     {"type", "factory-cell"},
                                     {"name", "Cell 7"},
                                     {"endpoints", {{"base_url", "https://cell7.example"}}},
                                     {"twins", twins}};
    auto reg = call(port(), "POST", "/v1/twin-systems", key_, boost::json::serialize(system));
    ASSERT_EQ(reg.status, 201) << reg.body;
    connect::MqttSettings settings;
    settings.broker_url = broker_->url();
    settings.client_id = "cell7-publisher-" + core::random_hex(4);
    settings.max_payload_bytes = 4 * 1024 * 1024;
    settings.reconnect_max = 1s;
    auto created = connect::MqttClient::create(settings, [](connect::MqttMessage) {});
    ASSERT_TRUE(created) << created.error().detail;
    publisher_ = std::move(*created);
    ASSERT_TRUE(publisher_->start());
    // Messages published before twinbridge's session subscribed are not kept for it: publish until one
    // gets through, so every test starts with the sync connected and subscribed.
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    bool live = false;
    for (int n = 1; !live && std::chrono::steady_clock::now() < deadline; ++n) {
      if (publisher_->connected()) {
        publish_changes(
            boost::json::object{{"twin", "urn:cell7:r2"}, {"patch", {{"properties", {{"count", -n}}}}}});
      }
      std::this_thread::sleep_for(100ms);
      auto read = call(port(), "GET", "/v1/twins/urn:cell7:r2/state", kAdmin);
      live = read.status == 200 && read.json().at("properties").as_object().contains("count");
    }
    ASSERT_TRUE(live) << "the MQTT sync never applied a message: " << server_->log();
  }
  static void TearDownTestSuite() {
    publisher_.reset();
    if (server_) server_->stop(SIGTERM);
    server_.reset();
    dir_.reset();
    broker_.reset();
  }

  static std::uint16_t port() { return server_->port(); }

  static void publish(const std::string& topic, const std::string& payload) {
    ASSERT_TRUE(publisher_->publish(topic, payload, 1));
  }
  static void publish_changes(const boost::json::value& doc) {
    publish("twinbridge/state/cell7", boost::json::serialize(doc));
  }

  static boost::json::object state(const std::string& twin) {
    auto r = call(port(), "GET", "/v1/twins/" + twin + "/state", kAdmin);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? r.json().as_object() : boost::json::object{};
  }

  // Polls the state of `twin` until `ok` holds (20 s).
  static boost::json::object wait_state(const std::string& twin,
                                        const std::function<bool(const boost::json::object&)>& ok) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    boost::json::object last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = state(twin);
      if (ok(last)) return last;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "the state never got there: " << boost::json::serialize(last);
    return last;
  }

  static bool has(const boost::json::object& s, const std::string& property, const boost::json::value& v) {
    const auto* p = s.at("properties").as_object().if_contains(property);
    return p != nullptr && *p == v;
  }

  static inline std::unique_ptr<MosquittoBroker> broker_;
  static inline std::unique_ptr<TempDir> dir_;
  static inline std::unique_ptr<ServerProcess> server_;
  static inline std::unique_ptr<connect::MqttClient> publisher_;
  static inline std::string key_;
};

TEST_F(MqttIngestTest, ABatchOnTheSystemsTopicAndAValueOnAFormsTopicAreApplied) {
  publish_changes(boost::json::parse(R"({"changes":[
      {"twin":"urn:cell7:r1","patch":{"properties":{"mode":"running","count":1}},"sourceSeq":1},
      {"twin":"urn:cell7:r2","patch":{"properties":{"mode":"idle"}}}]})"));
  publish("cell7/urn:cell7:r1/temperature", "21.5");
  const auto s = wait_state("urn:cell7:r1", [](const auto& st) {
    return has(st, "mode", "running") && has(st, "temperature", 21.5);
  });
  EXPECT_EQ(s.at("channel"), "mqtt");
  wait_state("urn:cell7:r2", [](const auto& st) { return has(st, "mode", "idle"); });
}

TEST_F(MqttIngestTest, AValueOnATopicMatchingAWildcardFilterIsApplied) {
  publish("sensors/hall-b/urn:cell7:r2/humidity", "41.5");
  wait_state("urn:cell7:r2", [](const auto& st) { return has(st, "humidity", 41.5); });
  // Another twin's filter does not match it.
  EXPECT_FALSE(state("urn:cell7:r1").at("properties").as_object().contains("humidity"));
}

TEST_F(MqttIngestTest, EachTwinsChangesWithoutSequenceAreAppliedInTheirArrivalOrder) {
  // Messages of many changes each, the twins interleaved, no sourceSeq: arrival order alone decides, while
  // the twins are dealt to several check threads.
  constexpr int kMessages = 40;
  constexpr int kPerMessage = 50;
  const auto version = [](const boost::json::object& st) { return st.at("version").as_int64(); };
  const auto r1_before = version(state("urn:cell7:r1"));
  const auto r2_before = version(state("urn:cell7:r2"));
  for (int m = 0; m < kMessages; ++m) {
    boost::json::array changes;
    for (int k = 0; k < kPerMessage; ++k) {
      const int n = 1000 + m * kPerMessage + k;
      changes.push_back(boost::json::object{{"twin", k % 2 == 0 ? "urn:cell7:r1" : "urn:cell7:r2"},
                                            {"patch", {{"properties", {{"count", n}}}}}});
    }
    publish_changes(boost::json::object{{"changes", std::move(changes)}});
  }
  constexpr int kLast = 1000 + kMessages * kPerMessage - 1;  // r2's last value; r1's is one less
  constexpr int kEach = kMessages * kPerMessage / 2;         // changes of each twin, all different values
  // The last value is there as the twin's kEach-th version since: it was applied last.
  const auto r2 = wait_state("urn:cell7:r2", [](const auto& st) { return has(st, "count", kLast); });
  const auto r1 = wait_state("urn:cell7:r1", [](const auto& st) { return has(st, "count", kLast - 1); });
  EXPECT_EQ(version(r1), r1_before + kEach);
  EXPECT_EQ(version(r2), r2_before + kEach);
}

TEST_F(MqttIngestTest, ADuplicateIsAppliedOnceAndAnOlderChangeNeverOverwrites) {
  publish_changes(
      boost::json::parse(R"({"twin":"urn:cell7:r2","patch":{"properties":{"count":10}},"sourceSeq":100})"));
  const auto first = wait_state("urn:cell7:r2", [](const auto& st) { return has(st, "count", 10); });
  const auto version = first.at("version").as_int64();
  // The same change again (a redelivery), then an older one, then a newer one: only the newer one counts.
  publish_changes(
      boost::json::parse(R"({"twin":"urn:cell7:r2","patch":{"properties":{"count":10}},"sourceSeq":100})"));
  publish_changes(
      boost::json::parse(R"({"twin":"urn:cell7:r2","patch":{"properties":{"count":5}},"sourceSeq":99})"));
  publish_changes(
      boost::json::parse(R"({"twin":"urn:cell7:r2","patch":{"properties":{"count":11}},"sourceSeq":101})"));
  const auto last = wait_state("urn:cell7:r2", [](const auto& st) { return has(st, "count", 11); });
  EXPECT_EQ(last.at("version").as_int64(), version + 1);
  EXPECT_EQ(last.at("sourceSeq").as_int64(), 101);
}

TEST_F(MqttIngestTest, GarbageAndOversizeMessagesAreDroppedAndTheNextOneApplied) {
  publish("twinbridge/state/cell7", "this is not JSON");
  publish("twinbridge/state/cell7",
          R"({"changes":[{"twin":"urn:cell7:r1","patch":{"properties":{"mode":"exploded"}}}]})");
  publish("cell7/urn:cell7:r1/temperature", "\"hot\"");
  publish("cell7/urn:cell7:r1/temperature", "9999");
  publish("twinbridge/state/cell7", std::string(2 * 1024 * 1024, 'x'));  // over mqtt.max_payload_bytes
  publish_changes(boost::json::parse(R"({"twin":"urn:cell7:r1","patch":{"properties":{"mode":"fault"}}})"));
  const auto s = wait_state("urn:cell7:r1", [](const auto& st) { return has(st, "mode", "fault"); });
  // None of the bad values got in.
  EXPECT_FALSE(has(s, "temperature", 9999));
  EXPECT_FALSE(has(s, "temperature", "hot"));
  EXPECT_TRUE(server_->running());
  // Each outcome is counted on /metrics.
  const auto metrics = call(port(), "GET", "/metrics", "").body;
  const auto value = [&](const std::string& series) {
    const auto at = metrics.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(metrics.substr(at + series.size() + 2));
  };
  EXPECT_GE(value(R"(twinbridge_mqtt_messages_total{outcome="malformed"})"), 1) << metrics;
  EXPECT_GE(value(R"(twinbridge_mqtt_messages_total{outcome="rejected"})"), 2) << metrics;
  EXPECT_GE(value(R"(twinbridge_mqtt_messages_total{outcome="applied"})"), 1) << metrics;
  EXPECT_EQ(value("twinbridge_mqtt_connected"), 1) << metrics;
}

TEST_F(MqttIngestTest, AfterABrokerRestartTwinbridgeResubscribesAndKeepsWhatItHad) {
  publish_changes(boost::json::parse(R"({"twin":"urn:cell7:r1","patch":{"properties":{"count":500}}})"));
  wait_state("urn:cell7:r1", [](const auto& st) { return has(st, "count", 500); });
  // The broker comes back without any session: twinbridge must subscribe again by itself.
  broker_->restart(true);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  bool applied = false;
  int n = 501;
  while (!applied && std::chrono::steady_clock::now() < deadline) {
    if (publisher_->connected()) {
      publish_changes(
          boost::json::object{{"twin", "urn:cell7:r1"}, {"patch", {{"properties", {{"count", n}}}}}});
      const auto s = state("urn:cell7:r1");
      applied = s.contains("properties") && s.at("properties").as_object().contains("count") &&
                s.at("properties").at("count").as_int64() > 500;
      ++n;
    }
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(applied) << server_->log();
  // Nothing acknowledged before the restart was lost: the values only went forward.
  EXPECT_GE(state("urn:cell7:r1").at("properties").at("count").as_int64(), 501);
}

}  // namespace
}  // namespace twinbridge::testing
