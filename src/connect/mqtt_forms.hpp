#pragma once
// Reads the MQTT forms of W3C WoT Thing Descriptions (the WoT MQTT binding, vocabulary prefix `mqv:`) into
// what the MQTT client does with them: which broker, which control packet, which topic (publish) or topic
// filters (subscribe, unsubscribe), which QoS, whether retained. For example
//   {"href": "mqtt://broker.example:1883", "op": "observeproperty", "mqv:filter": "plant/+/temp", "mqv:qos":
//   "1"}
// is a subscription to plant/+/temp at QoS 1 on broker.example:1883.
//
// The members read:
//  - `href`: the broker, mqtt://host[:port] or mqtts://host[:port] (ports 1883 and 8883 by default); relative
//  to
//    the TD's `base` when the caller gives one. TDs written for earlier drafts of the binding name the topic
//    in the path (mqtt://broker/plant/line1/temp, '#' written %23): read as the topic when no term names one;
//    when both do they must agree.
//  - `mqv:controlPacket`: "publish", "subscribe" or "unsubscribe". Without it the packet follows from `op` as
//    the binding's default mappings say (readproperty, observeproperty, readallproperties,
//    readmultipleproperties, observeallproperties, subscribeevent, subscribeallevents: subscribe; the un-
//    variants: unsubscribe; writeproperty, writeallproperties, writemultipleproperties, invokeaction:
//    publish). A form whose operations include both subscribing ones and their un- variants is a
//    subscription; one that mixes publishing and subscribing operations needs mqv:controlPacket. Without
//    either, the caller's default (the affordance's default operations) decides.
//  - `mqv:topic`: a topic name (no wildcards); `mqv:filter`: a topic filter or an array of them. A publish
//  uses
//    mqv:topic; a subscription uses mqv:filter, else mqv:topic (a topic is a filter that matches itself).
//  - `mqv:qos`: "0", "1" or "2" (default 0); `mqv:retain`: a boolean (default false).
// Topics and filters are checked as MQTT requires (check_mqtt_topic, check_mqtt_topic_filter). Other members
// of the form are left alone (TDs are extensible).
//
// No I/O and no state: callable from any thread. The broker is not checked against the outbound guard here:
// whoever connects to a TD's broker must (see connect/README.md). Errors: validation_failed listing every bad
// member with its RFC 6901 pointer under the caller's `pointer` ("/properties/temp/forms/0/mqv:qos").

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connect/mqtt_client.hpp"
#include "core/error.hpp"

namespace twinbridge::connect {

enum class MqttControlPacket { publish, subscribe, unsubscribe };

std::string_view to_string(MqttControlPacket packet);

struct MqttFormTarget {
  MqttBroker broker;
  MqttControlPacket control_packet = MqttControlPacket::subscribe;
  std::string topic;                 // publish: the topic name
  std::vector<std::string> filters;  // subscribe, unsubscribe: one or more topic filters
  int qos = 0;
  bool retain = false;
};

struct MqttFormContext {
  std::string pointer;  // where the form is in its document, e.g. "/properties/temp/forms/0"
  std::string base;     // the TD's `base`, against which a relative href is resolved; empty: none
  // When neither mqv:controlPacket nor op decide; nullopt: such a form is an error.
  std::optional<MqttControlPacket> default_packet;
};

inline constexpr std::size_t kMaxFormFilters = 64;

core::Result<MqttFormTarget> parse_mqtt_form(const boost::json::value& form, const MqttFormContext& context);

}  // namespace twinbridge::connect
