#pragma once
// MqttClient: twinbridge's MQTT 5 client (libmosquitto) for the physical-to-virtual sync of twins (FGMV-29
// DTS, W3C WoT MQTT binding). It holds one session with one broker, keeps a set of subscriptions on it across
// reconnects, hands every message it receives to one handler, and publishes (virtual-to-physical).
//
// Session: clean start is off and the CONNECT carries a session expiry interval, so the broker keeps the
// session (its subscriptions, and the QoS 1 and 2 messages that arrive for them) while the client is away: a
// lost connection, a broker restart with persistence, stop() then start(), a restart of twinbridge. The
// client id names the session. On every connection the whole subscription set is sent again, so a broker
// that lost the session (or a new broker) gets it back; filters unsubscribed while disconnected are
// unsubscribed on the next connection.
//
// Threads. The client owns one thread, "mqtt loop", from start() to stop(). It runs libmosquitto's network
// loop (poll on the socket, connect, read, write, keepalive) and the reconnects, with a back-off doubling
// from reconnect_min to reconnect_max; after construction every libmosquitto call on the instance is made
// there. The message handler and the state handler run on it, one call at a time, and MUST NOT block: copy
// what is needed, hand it to the owner's queue or io_context, return. While a handler runs nothing is read or
// sent (keepalive included). The loop thread itself blocks only in poll() (woken by the socket, by requests
// from other threads and by stop()), in the name lookup of the broker's host (getaddrinfo, bounded by the
// resolver's timeout), and in the first TCP connect of the client's life (libmosquitto sets MQTT 5 CONNECT
// properties only in its blocking connect; later attempts are asynchronous). libmosquitto's own thread
// (mosquitto_loop_start) is not used: its select() loop ends for good when the socket's descriptor is 1024 or
// more (a server with a thousand open connections), on an MQTT 5 CONNACK refusal and on a broker's
// DISCONNECT, and its reconnect attempts are blocking and report no failures.
//
// Thread-safety: subscribe(), unsubscribe(), publish(), subscriptions(), status() and connected() may be
// called from any thread, including from the handlers: they record the request under a mutex and wake the
// loop, which sends it; they never wait for the network. start(), stop() and the destructor belong to the
// owner (one thread, never from a handler). stop() sends DISCONNECT (the session stays on the broker), joins
// the thread and is safe to call twice; the destructor stops.
//
// Bounds: an incoming payload larger than max_payload_bytes is dropped (counted, the handler does not see
// it); the CONNECT tells the broker (MQTT 5 maximum packet size) not to send packets larger than that bound
// plus kMqttPacketOverhead for the topic and properties, and such messages the broker drops without telling
// us. At most max_subscriptions filters, max_queued_publishes messages waiting to be sent, and outgoing
// payloads up to max_payload_bytes.
//
// Errors are values (core::Result); nothing throws after create(). validation_failed for a bad setting,
// topic, filter, QoS or payload size; unavailable for a request the client cannot take now (stopped, queue
// full). What the broker or the network does (refusals, lost connections) is reported through status(), the
// state handler and the counters, never to a caller.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"

namespace twinbridge::connect {

// Room in a packet beyond the payload: a topic of up to 65535 bytes, the packet id, MQTT 5 properties.
inline constexpr std::size_t kMqttPacketOverhead = 80 * 1024;
inline constexpr std::uint16_t kMqttPort = 1883;
inline constexpr std::uint16_t kMqttsPort = 8883;

// Where a broker is: `mqtt://host[:port]` (TCP, port 1883 by default) or `mqtts://host[:port]` (TLS, 8883).
struct MqttBroker {
  std::string scheme;  // "mqtt" or "mqtts"
  std::string host;    // a DNS name or an IP address (IPv6 without brackets)
  std::uint16_t port = kMqttPort;

  bool tls() const { return scheme == "mqtts"; }
  std::string url() const;  // "mqtt://host:port", IPv6 in brackets
  friend bool operator==(const MqttBroker&, const MqttBroker&) = default;
};

// An MQTT URL taken apart. `topic` is the percent-decoded path without its leading '/' (older WoT TDs name
// the topic there); empty when the URL has no path or only "/".
struct MqttUrl {
  MqttBroker broker;
  std::string topic;
};

// Parses an mqtt:// or mqtts:// URL: a host that is a DNS name (letters, digits, '-', '_', '.') or an IP
// literal, an optional port from 1 to 65535, no userinfo (credentials belong to the settings), no query and
// no fragment (a '#' in a topic must be written %23). Errors: validation_failed saying what is wrong.
core::Result<MqttUrl> parse_mqtt_url(std::string_view url);

// Checks a topic name to publish to (MQTT 5 4.7): 1 to 65535 bytes of well-formed UTF-8 with no NUL, no
// control character and no Unicode noncharacter (what libmosquitto accepts), no wildcard ('+', '#'), not
// starting with '$' (reserved for the broker, e.g. $SYS). Errors: validation_failed saying what is wrong.
core::Result<void> check_mqtt_topic(std::string_view topic);

// Checks a topic filter to subscribe to: as a topic name, except that '+' may fill a whole level and '#' may
// be the whole last level ("a/+/c", "a/#", "#"), and that '$' is allowed ("$SYS/#", "$share/group/a/#").
core::Result<void> check_mqtt_topic_filter(std::string_view filter);

// Whether the topic name `topic` matches the (valid) topic filter `filter` (MQTT 5 4.7; "$share/<group>/"
// prefixes are not understood here).
bool mqtt_topic_matches(std::string_view filter, std::string_view topic);

// One message as received. libmosquitto does not expose the DUP flag of a PUBLISH.
struct MqttMessage {
  std::string topic;
  std::string payload;  // bytes as sent, at most max_payload_bytes
  int qos = 0;          // as delivered: the lower of the publisher's QoS and the subscription's
  bool retain = false;  // a retained message sent because of a new subscription
  int mid = 0;          // the packet identifier (QoS 1 and 2; 0 for QoS 0)
  // MQTT 5 properties, when the publisher set them.
  std::string content_type;
  std::string response_topic;
  std::string correlation_data;
  std::optional<bool> payload_is_utf8;          // payload format indicator
  std::optional<std::uint32_t> message_expiry;  // seconds left
  std::vector<std::pair<std::string, std::string>> user_properties;
};

enum class MqttState {
  stopped,       // before start(), after stop()
  connecting,    // an attempt is under way (TCP, TLS, CONNECT until CONNACK)
  connected,     // CONNACK success: subscriptions are (re)sent, messages flow
  disconnected,  // the attempt failed or the connection was lost; the next attempt is after the back-off
};

std::string_view to_string(MqttState state);

struct MqttCounters {
  std::uint64_t received = 0;              // messages handed to the handler
  std::uint64_t dropped_oversize = 0;      // payload over max_payload_bytes
  std::uint64_t dropped_unsubscribed = 0;  // matching no current filter (e.g. one unsubscribed since)
  std::uint64_t connects = 0;              // connections established (CONNACK success)
  std::uint64_t reconnects = 0;            // of those, the ones after a lost connection since start()
  std::uint64_t connect_failures = 0;    // attempts that ended without a connection (refused, timed out, ...)
  std::uint64_t subscribed = 0;          // filters the broker accepted in a SUBACK (again at each connection)
  std::uint64_t subscribe_failures = 0;  // filters the broker refused in a SUBACK
  std::uint64_t published = 0;           // messages handed to the connection
};

struct MqttStatus {
  MqttState state = MqttState::stopped;
  MqttCounters counters;
  std::string last_error;  // why the last attempt failed or the connection was lost; empty if never
};

struct MqttSettings {
  std::string broker_url;  // mqtt://host[:port] or mqtts://host[:port], nothing after the authority but "/"
  std::string client_id;   // names the session on the broker: required, 1 to 256 bytes of UTF-8
  std::chrono::seconds keepalive{30};              // 5 s to 65535 s; also bounds the wait for a CONNACK
  std::chrono::seconds session_expiry{24 * 3600};  // how long the broker keeps the session while we are away
  std::string username;                            // empty: none
  std::string password;                            // only with a username
  std::string ca_file;  // mqtts: PEM bundle to verify the broker with; empty: the system's trust store
  std::size_t max_payload_bytes = 1024 * 1024;   // incoming and outgoing; 1 to 256 MiB less the overhead
  std::chrono::milliseconds reconnect_min{500};  // first back-off after a failure, at least 1 ms
  std::chrono::milliseconds reconnect_max{30'000};
  std::size_t max_subscriptions = 10'000;
  std::size_t max_queued_publishes = 1'000;
};

class MqttClient {
 public:
  // Called on the loop thread for each message; must not block (see the header comment).
  using MessageHandler = std::function<void(MqttMessage)>;
  // Called on the loop thread at each change of state, with what caused it ("connection refused", "the broker
  // refused the connection: Not authorized", "session present", ...); must not block.
  using StateHandler = std::function<void(MqttState, std::string_view detail)>;

  // Checks the settings and prepares the libmosquitto instance (calls mosquitto_lib_init once per process).
  // Nothing connects before start(). Errors: validation_failed naming the setting; internal when libmosquitto
  // cannot be set up.
  static core::Result<std::unique_ptr<MqttClient>> create(MqttSettings settings, MessageHandler on_message,
                                                          StateHandler on_state = {});
  ~MqttClient();
  MqttClient(const MqttClient&) = delete;
  MqttClient& operator=(const MqttClient&) = delete;

  // Starts the loop thread, which connects and keeps connecting until stop(). Starting a started client does
  // nothing. Errors: unavailable when the thread cannot be created.
  core::Result<void> start();
  // Disconnects (DISCONNECT with reason 0: the broker keeps the session), joins the loop thread, drops
  // publishes not yet handed to the connection. Returns after at most about a second once the loop is in
  // poll(); a connect attempt under way is waited for. Safe to call twice.
  void stop();

  // Adds (or changes the QoS of) a filter; it is sent now when connected, and on every connection. Subscribe
  // before start() when resuming a session: what the broker queued for it arrives at once, and a message
  // matching no filter of the set is dropped. Errors: validation_failed (filter, qos not 0-2), unavailable
  // (max_subscriptions reached).
  core::Result<void> subscribe(std::string filter, int qos = 1);
  // Removes a filter: the handler stops seeing messages that match only it at once; UNSUBSCRIBE is sent now
  // when connected, else on the next connection. Removing a filter that is not subscribed is not an error.
  core::Result<void> unsubscribe(std::string_view filter);
  // The subscription set, sorted by filter.
  std::vector<std::pair<std::string, int>> subscriptions() const;

  // Queues a message for the broker; it is handed to the connection when there is one (while disconnected it
  // waits, up to max_queued_publishes). Errors: validation_failed (topic, qos, payload over
  // max_payload_bytes), unavailable (stopped, queue full).
  core::Result<void> publish(std::string topic, std::string payload, int qos = 1, bool retain = false);

  bool connected() const;
  MqttStatus status() const;

  struct Impl;  // defined in mqtt_client.cpp only

 private:
  explicit MqttClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace twinbridge::connect
