#include "connect/mqtt_forms.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace twinbridge::connect {
namespace {

using enum MqttControlPacket;

constexpr const char* kFormPointer = "/properties/temp/forms/0";

MqttFormContext at_form(std::optional<MqttControlPacket> default_packet = std::nullopt,
                        std::string base = "") {
  return {kFormPointer, std::move(base), default_packet};
}

struct Valid {
  const char* form;
  MqttFormContext context;
  MqttFormTarget expected;
};

TEST(MqttFormsTest, FormsOfTheBindingAreRead) {
  const MqttBroker broker{"mqtt", "broker.com", 1883};
  const std::vector<Valid> cases = {
      // The binding's own examples.
      {R"({"href": "mqtt://broker.com:1883", "op": ["subscribeevent", "unsubscribeevent"],
           "mqv:filter": "thing1/events/overheating"})",
       at_form(),
       {broker, subscribe, "", {"thing1/events/overheating"}, 0, false}},
      {R"({"href": "mqtt://broker.com:1883", "op": ["invokeaction"],
           "mqv:topic": "application/devices/thing1/program/commands/reset"})",
       at_form(),
       {broker, publish, "application/devices/thing1/program/commands/reset", {}, 0, false}},
      {R"({"href": "mqtts://broker.com", "op": ["readproperty", "observeproperty"], "mqv:qos": "1",
           "mqv:retain": true, "mqv:filter": "application/devices/thing1/properties/test"})",
       at_form(),
       {{"mqtts", "broker.com", 8883},
        subscribe,
        "",
        {"application/devices/thing1/properties/test"},
        1,
        true}},
      {R"({"href": "mqtt://broker.com:1883", "op": "observeallproperties",
           "mqv:filter": "application/devices/thing1/properties/#"})",
       at_form(),
       {broker, subscribe, "", {"application/devices/thing1/properties/#"}, 0, false}},
      // An array of filters; QoS 2.
      {R"({"href": "mqtt://broker.com:1883", "op": "observeproperty", "mqv:filter": ["a/+/t", "b/#"],
           "mqv:qos": "2"})",
       at_form(),
       {broker, subscribe, "", {"a/+/t", "b/#"}, 2, false}},
      // mqv:controlPacket decides over op; earlier drafts wrote it with the prefix.
      {R"({"href": "mqtt://broker.com:1883", "op": "readproperty", "mqv:controlPacket": "unsubscribe",
           "mqv:filter": "x"})",
       at_form(),
       {broker, unsubscribe, "", {"x"}, 0, false}},
      {R"({"href": "mqtt://broker.com:1883", "mqv:controlPacket": "mqv:subscribe", "mqv:filter": "x"})",
       at_form(),
       {broker, subscribe, "", {"x"}, 0, false}},
      {R"({"href": "mqtt://broker.com:1883", "op": "unobserveproperty", "mqv:filter": "x"})",
       at_form(),
       {broker, unsubscribe, "", {"x"}, 0, false}},
      // An operation MQTT does nothing for is passed over.
      {R"({"href": "mqtt://broker.com:1883", "op": ["invokeaction", "queryaction"], "mqv:topic": "cmd"})",
       at_form(),
       {broker, publish, "cmd", {}, 0, false}},
      // A subscription may name its one topic with mqv:topic.
      {R"({"href": "mqtt://broker.com:1883", "op": "subscribeevent", "mqv:topic": "e/1"})",
       at_form(),
       {broker, subscribe, "", {"e/1"}, 0, false}},
      // Earlier drafts: the topic in the href's path ('#' written %23); a term naming the same topic is fine.
      {R"({"href": "mqtt://broker.com:1884/plant/%2B/%23", "op": "observeproperty"})",
       at_form(),
       {{"mqtt", "broker.com", 1884}, subscribe, "", {"plant/+/#"}, 0, false}},
      {R"({"href": "mqtt://broker.com:1883/x/y", "op": "writeproperty", "mqv:topic": "x/y"})",
       at_form(),
       {broker, publish, "x/y", {}, 0, false}},
      // A relative href against the TD's base.
      {R"({"href": "/plant/temp", "op": "observeproperty"})",
       at_form(std::nullopt, "mqtt://broker.com:1883"),
       {broker, subscribe, "", {"plant/temp"}, 0, false}},
      // Neither op nor mqv:controlPacket: the caller's default.
      {R"({"href": "mqtt://broker.com:1883", "mqv:filter": "d"})",
       at_form(subscribe),
       {broker, subscribe, "", {"d"}, 0, false}},
  };
  for (const auto& c : cases) {
    const auto r = parse_mqtt_form(boost::json::parse(c.form), c.context);
    ASSERT_TRUE(r) << c.form << "\n" << r.error().detail;
    EXPECT_EQ(r->broker, c.expected.broker) << c.form;
    EXPECT_EQ(r->control_packet, c.expected.control_packet) << c.form;
    EXPECT_EQ(r->topic, c.expected.topic) << c.form;
    EXPECT_EQ(r->filters, c.expected.filters) << c.form;
    EXPECT_EQ(r->qos, c.expected.qos) << c.form;
    EXPECT_EQ(r->retain, c.expected.retain) << c.form;
  }
}

struct Invalid {
  const char* form;
  MqttFormContext context;
  std::string pointer;  // of the bad member
  std::string detail;   // a part of what is said about it
};

TEST(MqttFormsTest, BadFormsAreRefusedAtTheirMembersPointer) {
  const std::string f = kFormPointer;
  const std::vector<Invalid> cases = {
      {R"([])", at_form(), f, "must be an object"},
      {R"({"op": "observeproperty", "mqv:filter": "a"})", at_form(), f + "/href", "is missing"},
      {R"({"href": "http://broker.com", "op": "observeproperty", "mqv:filter": "a"})", at_form(), f + "/href",
       "scheme"},
      {R"({"href": "mqtt://broker.com:70000", "op": "observeproperty", "mqv:filter": "a"})", at_form(),
       f + "/href", "port"},
      {R"({"href": "mqtt://broker.com/a/#", "op": "observeproperty"})", at_form(), f + "/href", "fragment"},
      {R"({"href": "/a", "op": "observeproperty"})", at_form(), f + "/href",
       "relative and the TD has no base"},
      {R"({"href": "mqtt://broker.com/a/b", "op": "observeproperty", "mqv:filter": "c"})", at_form(),
       f + "/href", "in its path"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": "a", "mqv:qos": "3"})", at_form(),
       f + "/mqv:qos", "\"0\", \"1\" or \"2\""},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": "a", "mqv:qos": 1})", at_form(),
       f + "/mqv:qos", "(a string)"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": "a", "mqv:retain": "yes"})", at_form(),
       f + "/mqv:retain", "must be a boolean"},
      {R"({"href": "mqtt://b", "mqv:controlPacket": "read", "mqv:filter": "a"})", at_form(),
       f + "/mqv:controlPacket", "\"publish\", \"subscribe\" or \"unsubscribe\""},
      {R"({"href": "mqtt://b", "op": ["readproperty", "writeproperty"], "mqv:topic": "a"})", at_form(),
       f + "/op", "give mqv:controlPacket"},
      {R"({"href": "mqtt://b", "op": "queryaction", "mqv:topic": "a"})", at_form(), f + "/op",
       "no operation that the MQTT binding maps"},
      {R"({"href": "mqtt://b", "op": 5, "mqv:topic": "a"})", at_form(), f + "/op", "a string or an array"},
      {R"({"href": "mqtt://b", "op": ["readproperty", 1], "mqv:topic": "a"})", at_form(), f + "/op/1",
       "must be a string"},
      {R"({"href": "mqtt://b", "mqv:topic": "a"})", at_form(), f, "names neither mqv:controlPacket nor op"},
      {R"({"href": "mqtt://b", "op": "writeproperty", "mqv:topic": "a/#"})", at_form(), f + "/mqv:topic",
       "wildcard"},
      {R"({"href": "mqtt://b", "op": "writeproperty", "mqv:filter": "a"})", at_form(), f + "/mqv:filter",
       "is for subscribing"},
      {R"({"href": "mqtt://b", "op": "writeproperty"})", at_form(), f, "names no topic to publish to"},
      {R"({"href": "mqtt://b", "op": "observeproperty"})", at_form(), f, "names no topic filter"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": "a/#/b"})", at_form(),
       f + "/mqv:filter", "misplaces a wildcard"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": ["ok", "a+"]})", at_form(),
       f + "/mqv:filter/1", "misplaces a wildcard"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": []})", at_form(), f + "/mqv:filter",
       "from 1 to 64"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": {}})", at_form(), f + "/mqv:filter",
       "a string or an array of strings"},
      {R"({"href": "mqtt://b", "op": "observeproperty", "mqv:filter": "a/\u0000"})", at_form(),
       f + "/mqv:filter", "NUL"},
      {R"({"href": "mqtt://b/%2B", "op": "writeproperty"})", at_form(), f + "/href", "wildcard"},
  };
  for (const auto& c : cases) {
    const auto r = parse_mqtt_form(boost::json::parse(c.form), c.context);
    ASSERT_FALSE(r) << c.form;
    EXPECT_EQ(r.error().code, core::Errc::validation_failed) << c.form;
    const auto& fields = r.error().fields;
    const auto at =
        std::find_if(fields.begin(), fields.end(), [&](const auto& e) { return e.pointer == c.pointer; });
    ASSERT_NE(at, fields.end()) << c.form << "\nexpected an error at " << c.pointer
                                << ", got: " << r.error().detail;
    EXPECT_NE(at->detail.find(c.detail), std::string::npos) << c.form << "\n" << at->detail;
  }
}

TEST(MqttFormsTest, EveryBadMemberIsListed) {
  const auto r = parse_mqtt_form(
      boost::json::parse(
          R"({"href": "ftp://b", "op": "observeproperty", "mqv:filter": "a#", "mqv:qos": "high",
                             "mqv:retain": 1})"),
      at_form());
  ASSERT_FALSE(r);
  std::vector<std::string> pointers;
  for (const auto& e : r.error().fields) pointers.push_back(e.pointer);
  std::sort(pointers.begin(), pointers.end());
  const std::string f = kFormPointer;
  EXPECT_EQ(pointers,
            (std::vector<std::string>{f + "/href", f + "/mqv:filter", f + "/mqv:qos", f + "/mqv:retain"}));
}

}  // namespace
}  // namespace twinbridge::connect
