#include "connect/mqtt_client.hpp"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>

#include "core/utf8.hpp"

namespace twinbridge::connect {

bool mqtt_topic_matches(std::string_view filter, std::string_view topic) {
  bool result = false;
  return mosquitto_topic_matches_sub2(filter.data(), filter.size(), topic.data(), topic.size(), &result) ==
             MOSQ_ERR_SUCCESS &&
         result;
}

namespace {

using core::Errc;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxUrlBytes = 2048;
constexpr std::size_t kMaxTopicBytes = 65535;
constexpr std::size_t kMaxClientIdBytes = 256;
// MQTT's largest packet (remaining length 268,435,455) less the room for everything but the payload.
constexpr std::size_t kMaxPayloadBytes = 268'435'455 - kMqttPacketOverhead;
// How often the loop runs libmosquitto's keepalive check (mosquitto_loop_misc) when nothing else wakes it.
constexpr int kPollMillis = 1000;
// How long stop() lets a DISCONNECT take to be written.
constexpr auto kDisconnectGrace = std::chrono::seconds(1);
// At most this many queued publishes are handed over per turn of the loop, so that reads are not starved.
constexpr std::size_t kPublishBatch = 64;

// `text` for an error detail: quoted, at most 64 bytes, ill-formed UTF-8 replaced.
std::string shown(std::string_view text) {
  constexpr std::size_t kMax = 64;
  std::string out = "\"" + core::to_valid_utf8(text.substr(0, kMax));
  out += text.size() > kMax ? "...\"" : "\"";
  return out;
}

// What is wrong with `text` as a topic name or a topic filter, before wildcards are considered; empty if
// nothing.
std::string topic_text_problem(std::string_view text) {
  if (text.empty()) return "is empty";
  if (text.size() > kMaxTopicBytes) return "is longer than 65535 bytes";
  if (text.find('\0') != std::string_view::npos) return "contains a NUL character";
  if (const auto offset = core::invalid_utf8_offset(text); offset != std::string_view::npos) {
    return "is not UTF-8: " + core::describe_invalid_utf8(text, offset);
  }
  if (mosquitto_validate_utf8(text.data(), static_cast<int>(text.size())) != MOSQ_ERR_SUCCESS) {
    return "contains a control character or a Unicode noncharacter";
  }
  return {};
}

bool is_dns_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  return std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// A filter as it matches topics: "$share/<group>/a/#" delivers what "a/#" matches.
std::string_view matching_part(std::string_view filter) {
  constexpr std::string_view kShare = "$share/";
  if (!filter.starts_with(kShare)) return filter;
  const auto slash = filter.find('/', kShare.size());
  return slash == std::string_view::npos ? std::string_view{} : filter.substr(slash + 1);
}

bool has_wildcard(std::string_view filter) {
  return filter.find_first_of("+#") != std::string_view::npos || filter.starts_with("$share/");
}

std::string without_final_period(std::string text) {
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

// What a libmosquitto result code means, for a detail. `saved_errno` is errno as it was when the code was
// returned (MOSQ_ERR_ERRNO).
std::string describe_mosq(int rc, int saved_errno) {
  if (rc == MOSQ_ERR_ERRNO) return std::system_category().message(saved_errno);
  return without_final_period(mosquitto_strerror(rc));
}

}  // namespace

std::string MqttBroker::url() const {
  const bool v6 = host.find(':') != std::string::npos;
  return scheme + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

core::Result<MqttUrl> parse_mqtt_url(std::string_view text) {
  const auto bad = [&](std::string why) {
    return core::fail(Errc::validation_failed, "the MQTT URL " + shown(text) + " " + why);
  };
  if (text.size() > kMaxUrlBytes) return bad("is longer than 2048 bytes");
  const auto parsed = boost::urls::parse_uri(text);
  if (!parsed) return bad("is not a URI");
  const auto& u = *parsed;
  MqttUrl out;
  out.broker.scheme = lower(u.scheme());
  if (out.broker.scheme != "mqtt" && out.broker.scheme != "mqtts") {
    return bad("has the scheme " + shown(u.scheme()) + ": only mqtt and mqtts reach an MQTT broker");
  }
  if (!u.has_authority() || u.encoded_host().empty()) return bad("has no host");
  if (u.has_userinfo())
    return bad("contains userinfo ('user@'): credentials are settings, not part of the URL");
  if (u.has_query()) return bad("has a query ('?'), which MQTT does not use");
  if (u.has_fragment())
    return bad("has a fragment: a '#' in a topic is written %23 (or the topic given apart)");
  if (!u.encoded_path().empty() && !u.encoded_path().starts_with('/')) {
    return bad("has text after the host that is not a path");
  }
  switch (u.host_type()) {
    case boost::urls::host_type::ipv4:
    case boost::urls::host_type::ipv6:
      out.broker.host = u.host_address();
      break;
    case boost::urls::host_type::name:
      out.broker.host = lower(u.host_address());
      if (!is_dns_name(out.broker.host)) {
        return bad("has a host that is not a DNS name (letters, digits, '-', '_', '.') nor an IP address");
      }
      break;
    default:
      return bad("has a host that is not a DNS name nor an IP address");
  }
  out.broker.port = out.broker.tls() ? kMqttsPort : kMqttPort;
  if (u.has_port() && !u.port().empty()) {
    const std::string_view port = u.port();
    unsigned value = 0;
    const bool digits = port.size() <= 5 &&
                        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) {
      for (const char c : port) value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (!digits || value < 1 || value > 65535) {
      return bad("has the port " + shown(port) + ": a port is a number from 1 to 65535");
    }
    out.broker.port = static_cast<std::uint16_t>(value);
  }
  const std::string path = u.path();
  if (path.size() > 1) out.topic = path.substr(1);
  return out;
}

core::Result<void> check_mqtt_topic(std::string_view topic) {
  if (const auto problem = topic_text_problem(topic); !problem.empty()) {
    return core::fail(Errc::validation_failed, "the topic " + problem);
  }
  if (topic.starts_with('$')) {
    return core::fail(Errc::validation_failed,
                      "the topic " + shown(topic) + " starts with '$', which is reserved for the broker");
  }
  if (mosquitto_pub_topic_check2(topic.data(), topic.size()) != MOSQ_ERR_SUCCESS) {
    return core::fail(Errc::validation_failed,
                      "the topic " + shown(topic) +
                          " contains a wildcard ('+' or '#'): a message is published "
                          "to one topic, wildcards are for subscribing");
  }
  return {};
}

core::Result<void> check_mqtt_topic_filter(std::string_view filter) {
  if (const auto problem = topic_text_problem(filter); !problem.empty()) {
    return core::fail(Errc::validation_failed, "the topic filter " + problem);
  }
  if (mosquitto_sub_topic_check2(filter.data(), filter.size()) != MOSQ_ERR_SUCCESS) {
    return core::fail(Errc::validation_failed,
                      "the topic filter " + shown(filter) +
                          " misplaces a wildcard: '+' must be a whole level and '#' the whole last level "
                          "(\"a/+/c\", \"a/#\", \"#\")");
  }
  if (filter.starts_with("$share/") && matching_part(filter).empty()) {
    return core::fail(Errc::validation_failed, "the shared subscription " + shown(filter) +
                                                   " has no filter after its group (\"$share/group/a/#\")");
  }
  return {};
}

std::string_view to_string(MqttState state) {
  switch (state) {
    case MqttState::stopped:
      return "stopped";
    case MqttState::connecting:
      return "connecting";
    case MqttState::connected:
      return "connected";
    case MqttState::disconnected:
      return "disconnected";
  }
  return "unknown";
}

struct MqttClient::Impl {
  struct Outgoing {
    std::string topic;
    std::string payload;
    int qos = 0;
    bool retain = false;
  };

  MqttSettings settings;
  MqttBroker broker;
  MessageHandler on_message;
  StateHandler on_state;
  mosquitto* mosq = nullptr;
  int wake_fd = -1;
  std::thread thread;

  // Loop thread only (and the owner's thread while the loop thread does not run).
  bool properties_stored = false;  // the first connect (blocking) has stored the CONNECT properties
  bool active = false;             // the current connection got CONNACK success
  bool attempt_connected = false;  // the current attempt got CONNACK success
  bool connected_since_start = false;
  bool disconnect_seen = false;                // on_disconnect ran for the current attempt
  std::string refusal;                         // CONNACK refusal of the current attempt
  std::string last_log_error;                  // libmosquitto's last error-level log line (TLS details)
  std::map<int, std::string> pending_subacks;  // SUBSCRIBE packet id -> filter

  // Shared between the loop thread and callers, under `mutex`.
  mutable std::mutex mutex;
  bool running = false;   // between start() and stop()
  bool stopping = false;  // stop() asked the loop to end
  MqttState state = MqttState::stopped;
  std::string last_error;
  std::map<std::string, int, std::less<>> desired;      // filter -> QoS
  std::set<std::string, std::less<>> wildcard_filters;  // the filters of `desired` that are not one topic
  std::set<std::string, std::less<>> changed;           // filters added, changed or removed since last sent
  std::deque<Outgoing> queue;

  std::atomic<bool> is_connected{false};
  std::atomic<std::uint64_t> received{0}, dropped_oversize{0}, dropped_unsubscribed{0}, connects{0},
      reconnects{0}, connect_failures{0}, subscribed{0}, subscribe_failures{0}, published{0};

  ~Impl() {
    if (mosq != nullptr) mosquitto_destroy(mosq);
    if (wake_fd >= 0) ::close(wake_fd);
  }

  void wake() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
  }

  void drain_wake() const {
    std::uint64_t value = 0;
    [[maybe_unused]] const auto n = ::read(wake_fd, &value, sizeof value);
  }

  bool stop_requested() const {
    std::lock_guard lock(mutex);
    return stopping;
  }

  void set_state(MqttState next, std::string detail, bool is_error) {
    {
      std::lock_guard lock(mutex);
      state = next;
      if (is_error) last_error = detail;
    }
    if (on_state) {
      try {
        on_state(next, detail);
      } catch (...) {  // a handler's bug must not unwind through libmosquitto
      }
    }
  }

  void record_error(std::string detail) {
    std::lock_guard lock(mutex);
    last_error = std::move(detail);
  }

  // --- the loop thread ---

  void run() {
    auto delay = settings.reconnect_min;
    while (!stop_requested()) {
      set_state(MqttState::connecting, broker.url(), false);
      active = false;
      attempt_connected = false;
      disconnect_seen = false;
      refusal.clear();
      last_log_error.clear();
      pending_subacks.clear();
      // libmosquitto formats every log line (a debug line per packet) for a log callback: only while
      // connecting, where its error lines explain a failed TLS handshake.
      mosquitto_log_callback_set(mosq, &Impl::on_log_cb);
      errno = 0;
      const int rc = connect_once();
      const int saved_errno = errno;
      if (rc != MOSQ_ERR_SUCCESS) {
        attempt_failed(describe_failure(rc, saved_errno));
      } else {
        serve_connection();
      }
      if (stop_requested()) break;
      if (attempt_connected) delay = settings.reconnect_min;
      wait_for(delay);
      delay = std::min(delay * 2, settings.reconnect_max);
    }
    set_state(MqttState::stopped, "", false);
  }

  int connect_once() {
    if (properties_stored) return mosquitto_reconnect_async(mosq);
    // libmosquitto takes MQTT 5 CONNECT properties only in its blocking connect; it keeps them for every
    // later (asynchronous) reconnect.
    mosquitto_property* properties = nullptr;
    const auto expiry = static_cast<std::uint32_t>(settings.session_expiry.count());
    const auto max_packet = static_cast<std::uint32_t>(settings.max_payload_bytes + kMqttPacketOverhead);
    int rc = mosquitto_property_add_int32(&properties, MQTT_PROP_SESSION_EXPIRY_INTERVAL, expiry);
    if (rc == MOSQ_ERR_SUCCESS) {
      rc = mosquitto_property_add_int32(&properties, MQTT_PROP_MAXIMUM_PACKET_SIZE, max_packet);
    }
    if (rc == MOSQ_ERR_SUCCESS) {
      rc = mosquitto_connect_bind_v5(mosq, broker.host.c_str(), broker.port,
                                     static_cast<int>(settings.keepalive.count()), nullptr, properties);
      const int saved_errno = errno;
      // Stored unless the arguments were refused (they were checked by create()) or memory ran out.
      properties_stored = rc != MOSQ_ERR_INVAL && rc != MOSQ_ERR_NOMEM && rc != MOSQ_ERR_NOT_SUPPORTED &&
                          rc != MOSQ_ERR_PROTOCOL && rc != MOSQ_ERR_DUPLICATE_PROPERTY;
      errno = saved_errno;
    }
    mosquitto_property_free_all(&properties);
    return rc;
  }

  std::string describe_failure(int rc, int saved_errno) const {
    std::string text = describe_mosq(rc, saved_errno);
    if (rc == MOSQ_ERR_EAI) text = "cannot resolve " + broker.host;
    if ((rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_ERRNO) && !last_log_error.empty()) {
      text += " (" + last_log_error + ")";
    }
    return text;
  }

  void attempt_failed(std::string detail) {
    connect_failures.fetch_add(1, std::memory_order_relaxed);
    set_state(MqttState::disconnected, std::move(detail), true);
  }

  // Runs the connection until its socket is closed or stop() is asked for.
  void serve_connection() {
    int last_rc = MOSQ_ERR_SUCCESS;
    int last_errno = 0;
    for (;;) {
      if (mosquitto_socket(mosq) < 0) break;
      if (stop_requested()) {
        close_connection();
        break;
      }
      if (active) {
        send_subscription_changes();
        send_queued_publishes();
      }
      const int fd = mosquitto_socket(mosq);
      if (fd < 0) break;
      pollfd fds[2] = {{fd, static_cast<short>(POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0)), 0},
                       {wake_fd, POLLIN, 0}};
      if (::poll(fds, 2, kPollMillis) < 0) {
        if (errno == EINTR) continue;
        last_rc = MOSQ_ERR_ERRNO;
        last_errno = errno;
        abandon_socket();
        break;
      }
      if ((fds[1].revents & POLLIN) != 0) drain_wake();
      const short revents = fds[0].revents;
      if (revents != 0) {
        // Reading also advances a TLS handshake, which may wait for the socket to become writable.
        errno = 0;
        last_rc = mosquitto_loop_read(mosq, 1);
        last_errno = errno;
        if (mosquitto_socket(mosq) >= 0 && (revents & POLLOUT) != 0) {
          errno = 0;
          last_rc = mosquitto_loop_write(mosq, 1);
          last_errno = errno;
        }
        if (mosquitto_socket(mosq) >= 0 && (revents & (POLLERR | POLLHUP)) != 0) {
          // The peer is gone but libmosquitto has not noticed (it can happen during a TLS handshake).
          last_rc = MOSQ_ERR_CONN_LOST;
          abandon_socket();
          break;
        }
      }
      if (mosquitto_socket(mosq) >= 0) mosquitto_loop_misc(mosq);
    }
    if (!disconnect_seen && !stop_requested()) {
      // libmosquitto closed the socket without on_disconnect (a failed TLS handshake) or we gave it up.
      if (active) {
        active = false;
        is_connected.store(false);
        set_state(MqttState::disconnected, describe_failure(last_rc, last_errno), true);
      } else {
        attempt_failed(describe_failure(last_rc, last_errno));
      }
    }
  }

  // Makes libmosquitto close the socket and report it: reading a shut-down socket ends the connection.
  void abandon_socket() {
    const int fd = mosquitto_socket(mosq);
    if (fd < 0) return;
    ::shutdown(fd, SHUT_RDWR);
    mosquitto_loop_read(mosq, 1);
  }

  // stop(): DISCONNECT with reason 0 (the broker keeps the session), written within kDisconnectGrace.
  void close_connection() {
    if (active) {
      mosquitto_disconnect_v5(mosq, MQTT_RC_NORMAL_DISCONNECTION, nullptr);
      const auto deadline = Clock::now() + kDisconnectGrace;
      while (mosquitto_socket(mosq) >= 0 && Clock::now() < deadline) {
        pollfd fd{mosquitto_socket(mosq),
                  static_cast<short>(POLLIN | (mosquitto_want_write(mosq) ? POLLOUT : 0)), 0};
        if (::poll(&fd, 1, 100) <= 0) continue;
        mosquitto_loop_read(mosq, 1);
        if (mosquitto_socket(mosq) >= 0 && (fd.revents & POLLOUT) != 0) mosquitto_loop_write(mosq, 1);
      }
    }
    abandon_socket();
    active = false;
    is_connected.store(false);
  }

  void wait_for(std::chrono::milliseconds delay) const {
    const auto deadline = Clock::now() + delay;
    for (;;) {
      if (stop_requested()) return;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return;
      pollfd fd{wake_fd, POLLIN, 0};
      const auto millis = std::min<std::chrono::milliseconds::rep>(left.count() + 1, kPollMillis);
      if (::poll(&fd, 1, static_cast<int>(millis)) > 0) drain_wake();
    }
  }

  void send_subscribe(const std::string& filter, int qos) {
    int mid = 0;
    const int rc = mosquitto_subscribe_v5(mosq, &mid, filter.c_str(), qos, 0, nullptr);
    if (rc == MOSQ_ERR_SUCCESS) {
      pending_subacks[mid] = filter;
    } else {
      // The connection is failing; the next connection sends the whole set again.
      record_error("cannot subscribe to " + shown(filter) + ": " + describe_mosq(rc, errno));
    }
  }

  void send_unsubscribe(const std::string& filter) {
    const int rc = mosquitto_unsubscribe_v5(mosq, nullptr, filter.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      record_error("cannot unsubscribe from " + shown(filter) + ": " + describe_mosq(rc, errno));
    }
  }

  void send_subscription_changes() {
    std::vector<std::pair<std::string, int>> subscribe;
    std::vector<std::string> unsubscribe;
    {
      std::lock_guard lock(mutex);
      if (changed.empty()) return;
      for (const auto& filter : changed) {
        if (const auto it = desired.find(filter); it != desired.end()) {
          subscribe.emplace_back(*it);
        } else {
          unsubscribe.push_back(filter);
        }
      }
      changed.clear();
    }
    for (const auto& [filter, qos] : subscribe) send_subscribe(filter, qos);
    for (const auto& filter : unsubscribe) send_unsubscribe(filter);
  }

  void send_queued_publishes() {
    for (std::size_t i = 0; i < kPublishBatch; ++i) {
      Outgoing message;
      {
        std::lock_guard lock(mutex);
        if (queue.empty()) return;
        message = std::move(queue.front());
        queue.pop_front();
      }
      const int rc =
          mosquitto_publish_v5(mosq, nullptr, message.topic.c_str(), static_cast<int>(message.payload.size()),
                               message.payload.data(), message.qos, message.retain, nullptr);
      if (rc == MOSQ_ERR_SUCCESS) {
        published.fetch_add(1, std::memory_order_relaxed);
      } else if (rc == MOSQ_ERR_NO_CONN) {
        std::lock_guard lock(mutex);
        queue.push_front(std::move(message));  // sent on the next connection
        return;
      } else {
        record_error("cannot publish to " + shown(message.topic) + ": " + describe_mosq(rc, errno));
      }
    }
    wake();  // more may be waiting: come back after the socket had its turn
  }

  // --- libmosquitto callbacks, on the loop thread ---

  void handle_connack(int reason_code, int flags) {
    if (reason_code != MQTT_RC_SUCCESS) {
      refusal =
          "the broker refused the connection: " + without_final_period(mosquitto_reason_string(reason_code));
      return;
    }
    active = true;
    attempt_connected = true;
    is_connected.store(true);
    mosquitto_log_callback_set(mosq, nullptr);
    connects.fetch_add(1, std::memory_order_relaxed);
    if (connected_since_start) reconnects.fetch_add(1, std::memory_order_relaxed);
    connected_since_start = true;
    // The whole set again (the broker may have lost the session), and what was removed while we were away.
    std::vector<std::pair<std::string, int>> subscribe;
    std::vector<std::string> unsubscribe;
    {
      std::lock_guard lock(mutex);
      subscribe.assign(desired.begin(), desired.end());
      for (const auto& filter : changed) {
        if (!desired.contains(filter)) unsubscribe.push_back(filter);
      }
      changed.clear();
    }
    for (const auto& [filter, qos] : subscribe) send_subscribe(filter, qos);
    for (const auto& filter : unsubscribe) send_unsubscribe(filter);
    const bool session_present = (flags & 0x01) != 0;
    set_state(MqttState::connected, session_present ? "session present" : "new session", false);
  }

  void handle_disconnect(int rc, int saved_errno) {
    disconnect_seen = true;
    const bool was_active = active;
    active = false;
    is_connected.store(false);
    if (stop_requested()) return;
    std::string detail;
    if (!refusal.empty()) {
      detail = refusal;
    } else if (rc == MOSQ_ERR_SUCCESS) {
      detail = "the broker ended the connection";
    } else if (rc == MOSQ_ERR_KEEPALIVE) {
      detail = was_active ? "no answer from the broker within the keepalive"
                          : "no CONNACK from the broker within the keepalive";
    } else if (rc >= 0x80) {  // a DISCONNECT from the broker carries an MQTT 5 reason code
      detail = "the broker disconnected: " + without_final_period(mosquitto_reason_string(rc));
    } else {
      detail = describe_failure(rc, saved_errno);
    }
    if (was_active) {
      set_state(MqttState::disconnected, std::move(detail), true);
    } else {
      attempt_failed(std::move(detail));
    }
  }

  void handle_message(const mosquitto_message& m, const mosquitto_property* properties) {
    const auto size = static_cast<std::size_t>(std::max(m.payloadlen, 0));
    if (size > settings.max_payload_bytes) {
      dropped_oversize.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const std::string_view topic = m.topic != nullptr ? std::string_view(m.topic) : std::string_view();
    if (!matches_a_subscription(topic)) {
      dropped_unsubscribed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    MqttMessage out;
    out.topic = topic;
    if (size > 0) out.payload.assign(static_cast<const char*>(m.payload), size);
    out.qos = m.qos;
    out.retain = m.retain;
    out.mid = m.qos > 0 ? m.mid : 0;
    read_properties(properties, out);
    received.fetch_add(1, std::memory_order_relaxed);
    try {
      on_message(std::move(out));
    } catch (const std::exception& e) {  // a handler's bug must not unwind through libmosquitto
      record_error(std::string("the message handler threw: ") + e.what());
    } catch (...) {
      record_error("the message handler threw");
    }
  }

  bool matches_a_subscription(std::string_view topic) const {
    std::lock_guard lock(mutex);
    if (desired.contains(topic)) return true;
    for (const auto& filter : wildcard_filters) {
      const auto part = matching_part(filter);
      bool result = false;
      if (mosquitto_topic_matches_sub2(part.data(), part.size(), topic.data(), topic.size(), &result) ==
              MOSQ_ERR_SUCCESS &&
          result) {
        return true;
      }
    }
    return false;
  }

  static void read_properties(const mosquitto_property* properties, MqttMessage& out) {
    if (properties == nullptr) return;
    char* text = nullptr;
    if (mosquitto_property_read_string(properties, MQTT_PROP_CONTENT_TYPE, &text, false) != nullptr) {
      out.content_type = text;
      std::free(text);
    }
    text = nullptr;
    if (mosquitto_property_read_string(properties, MQTT_PROP_RESPONSE_TOPIC, &text, false) != nullptr) {
      out.response_topic = text;
      std::free(text);
    }
    void* data = nullptr;
    std::uint16_t length = 0;
    if (mosquitto_property_read_binary(properties, MQTT_PROP_CORRELATION_DATA, &data, &length, false) !=
        nullptr) {
      out.correlation_data.assign(static_cast<const char*>(data), length);
      std::free(data);
    }
    std::uint8_t format = 0;
    if (mosquitto_property_read_byte(properties, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, &format, false) !=
        nullptr) {
      out.payload_is_utf8 = format == 1;
    }
    std::uint32_t expiry = 0;
    if (mosquitto_property_read_int32(properties, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &expiry, false) !=
        nullptr) {
      out.message_expiry = expiry;
    }
    char* name = nullptr;
    char* value = nullptr;
    for (auto* p =
             mosquitto_property_read_string_pair(properties, MQTT_PROP_USER_PROPERTY, &name, &value, false);
         p != nullptr;
         p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true)) {
      out.user_properties.emplace_back(name, value);
      std::free(name);
      std::free(value);
      name = value = nullptr;
    }
  }

  void handle_suback(int mid, int count, const int* granted) {
    const auto it = pending_subacks.find(mid);
    if (it == pending_subacks.end()) return;
    const std::string filter = std::move(it->second);
    pending_subacks.erase(it);
    if (count >= 1 && granted != nullptr && granted[0] >= 0x80) {
      subscribe_failures.fetch_add(1, std::memory_order_relaxed);
      record_error("the broker refused the subscription to " + shown(filter) + ": " +
                   without_final_period(mosquitto_reason_string(granted[0])));
    } else {
      subscribed.fetch_add(1, std::memory_order_relaxed);
    }
  }

  static Impl& of(void* userdata) { return *static_cast<Impl*>(userdata); }

  static void on_connect_cb(mosquitto*, void* userdata, int rc, int flags, const mosquitto_property*) {
    of(userdata).handle_connack(rc, flags);
  }
  static void on_disconnect_cb(mosquitto*, void* userdata, int rc, const mosquitto_property*) {
    const int saved_errno = errno;
    of(userdata).handle_disconnect(rc, saved_errno);
  }
  static void on_message_cb(mosquitto*, void* userdata, const mosquitto_message* m,
                            const mosquitto_property* properties) {
    if (m != nullptr) of(userdata).handle_message(*m, properties);
  }
  static void on_subscribe_cb(mosquitto*, void* userdata, int mid, int count, const int* granted,
                              const mosquitto_property*) {
    of(userdata).handle_suback(mid, count, granted);
  }
  static void on_log_cb(mosquitto*, void* userdata, int level, const char* text) {
    if ((level & MOSQ_LOG_ERR) != 0 && text != nullptr) of(userdata).last_log_error = text;
  }
};

namespace {

std::once_flag lib_init_once;
int lib_init_result = MOSQ_ERR_SUCCESS;

core::Result<void> check_settings(const MqttSettings& s) {
  const auto bad = [](std::string detail) { return core::fail(Errc::validation_failed, std::move(detail)); };
  if (s.client_id.empty()) return bad("client_id is empty: it names the session on the broker");
  if (s.client_id.size() > kMaxClientIdBytes) return bad("client_id is longer than 256 bytes");
  if (!topic_text_problem(s.client_id).empty()) {
    return bad("client_id must be UTF-8 without NUL, control characters or noncharacters");
  }
  if (s.keepalive < std::chrono::seconds(5) || s.keepalive > std::chrono::seconds(65535)) {
    return bad("keepalive must be from 5 to 65535 seconds");
  }
  if (s.session_expiry.count() < 0 || s.session_expiry.count() > std::numeric_limits<std::uint32_t>::max()) {
    return bad("session_expiry must be from 0 to 4294967295 seconds");
  }
  if (s.username.empty() && !s.password.empty()) return bad("password is set without a username");
  if (s.username.size() > 65535 || s.password.size() > 65535) {
    return bad("username and password are at most 65535 bytes each");
  }
  if (!s.username.empty() && !topic_text_problem(s.username).empty()) {
    return bad("username must be UTF-8 without NUL, control characters or noncharacters");
  }
  if (s.max_payload_bytes < 1 || s.max_payload_bytes > kMaxPayloadBytes) {
    return bad("max_payload_bytes must be from 1 to " + std::to_string(kMaxPayloadBytes));
  }
  if (s.reconnect_min.count() < 1) return bad("reconnect_min must be at least 1 ms");
  if (s.reconnect_max < s.reconnect_min) return bad("reconnect_max must not be below reconnect_min");
  if (s.max_subscriptions < 1) return bad("max_subscriptions must be at least 1");
  if (s.max_queued_publishes < 1) return bad("max_queued_publishes must be at least 1");
  return {};
}

}  // namespace

core::Result<std::unique_ptr<MqttClient>> MqttClient::create(MqttSettings settings, MessageHandler on_message,
                                                             StateHandler on_state) {
  if (!on_message) return core::fail(Errc::validation_failed, "an MQTT client needs a message handler");
  if (auto ok = check_settings(settings); !ok) return std::unexpected(std::move(ok.error()));
  auto url = parse_mqtt_url(settings.broker_url);
  if (!url) return std::unexpected(std::move(url.error()));
  if (!url->topic.empty()) {
    return core::fail(Errc::validation_failed, "the MQTT broker URL " + shown(settings.broker_url) +
                                                   " has a path: it names the broker only");
  }
  if (!url->broker.tls() && !settings.ca_file.empty()) {
    return core::fail(Errc::validation_failed,
                      "ca_file is set but the broker URL " + shown(settings.broker_url) + " is not mqtts://");
  }

  std::call_once(lib_init_once, [] { lib_init_result = mosquitto_lib_init(); });
  if (lib_init_result != MOSQ_ERR_SUCCESS) {
    return core::fail(Errc::internal,
                      "libmosquitto cannot be initialised: " + describe_mosq(lib_init_result, 0));
  }

  auto impl = std::make_unique<Impl>();
  impl->settings = std::move(settings);
  impl->broker = std::move(url->broker);
  impl->on_message = std::move(on_message);
  impl->on_state = std::move(on_state);
  const auto& s = impl->settings;
  impl->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->wake_fd < 0) {
    return core::fail(Errc::internal, "eventfd: " + std::system_category().message(errno));
  }
  impl->mosq = mosquitto_new(s.client_id.c_str(), /*clean_start=*/false, impl.get());
  if (impl->mosq == nullptr) {
    return core::fail(Errc::internal, "mosquitto_new: " + std::system_category().message(errno));
  }
  mosquitto* m = impl->mosq;
  int rc = mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  if (rc == MOSQ_ERR_SUCCESS && !s.username.empty()) {
    rc = mosquitto_username_pw_set(m, s.username.c_str(), s.password.empty() ? nullptr : s.password.c_str());
  }
  if (rc != MOSQ_ERR_SUCCESS) return core::fail(Errc::internal, "libmosquitto: " + describe_mosq(rc, errno));
  if (impl->broker.tls()) {
    if (s.ca_file.empty()) {
      rc = mosquitto_int_option(m, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    } else {
      rc = mosquitto_tls_set(m, s.ca_file.c_str(), nullptr, nullptr, nullptr, nullptr);
      if (rc == MOSQ_ERR_INVAL) {
        return core::fail(Errc::validation_failed, "ca_file " + shown(s.ca_file) + " cannot be read");
      }
    }
    if (rc != MOSQ_ERR_SUCCESS)
      return core::fail(Errc::internal, "libmosquitto TLS: " + describe_mosq(rc, errno));
  }
  mosquitto_connect_v5_callback_set(m, &Impl::on_connect_cb);
  mosquitto_disconnect_v5_callback_set(m, &Impl::on_disconnect_cb);
  mosquitto_message_v5_callback_set(m, &Impl::on_message_cb);
  mosquitto_subscribe_v5_callback_set(m, &Impl::on_subscribe_cb);
  return std::unique_ptr<MqttClient>(new MqttClient(std::move(impl)));
}

MqttClient::MqttClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttClient::~MqttClient() {
  stop();
}

core::Result<void> MqttClient::start() {
  if (impl_->thread.joinable()) return {};
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = false;
    impl_->running = true;
  }
  impl_->connected_since_start = false;
  try {
    impl_->thread = std::thread([impl = impl_.get()] { impl->run(); });
  } catch (const std::system_error& e) {
    std::lock_guard lock(impl_->mutex);
    impl_->running = false;
    return core::fail(Errc::unavailable, std::string("cannot start the MQTT loop thread: ") + e.what());
  }
  ::pthread_setname_np(impl_->thread.native_handle(), "mqtt loop");
  return {};
}

void MqttClient::stop() {
  if (!impl_->thread.joinable()) return;
  assert(std::this_thread::get_id() != impl_->thread.get_id() && "stop() from a handler would join itself");
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
    impl_->queue.clear();
  }
  impl_->wake();
  impl_->thread.join();
  std::lock_guard lock(impl_->mutex);
  impl_->running = false;
}

core::Result<void> MqttClient::subscribe(std::string filter, int qos) {
  if (auto ok = check_mqtt_topic_filter(filter); !ok) return ok;
  if (qos < 0 || qos > 2) return core::fail(Errc::validation_failed, "the QoS must be 0, 1 or 2");
  {
    std::lock_guard lock(impl_->mutex);
    auto& i = *impl_;
    const auto it = i.desired.find(filter);
    if (it != i.desired.end() && it->second == qos) return {};
    if (it == i.desired.end() && i.desired.size() >= i.settings.max_subscriptions) {
      return core::fail(Errc::unavailable, "the MQTT client has its maximum of " +
                                               std::to_string(i.settings.max_subscriptions) +
                                               " subscriptions");
    }
    if (has_wildcard(filter)) i.wildcard_filters.insert(filter);
    i.changed.insert(filter);
    i.desired.insert_or_assign(std::move(filter), qos);
  }
  impl_->wake();
  return {};
}

core::Result<void> MqttClient::unsubscribe(std::string_view filter) {
  if (auto ok = check_mqtt_topic_filter(filter); !ok) return ok;
  {
    std::lock_guard lock(impl_->mutex);
    auto& i = *impl_;
    const auto it = i.desired.find(filter);
    if (it == i.desired.end()) return {};
    i.desired.erase(it);
    if (const auto w = i.wildcard_filters.find(filter); w != i.wildcard_filters.end())
      i.wildcard_filters.erase(w);
    i.changed.emplace(filter);
  }
  impl_->wake();
  return {};
}

std::vector<std::pair<std::string, int>> MqttClient::subscriptions() const {
  std::lock_guard lock(impl_->mutex);
  return {impl_->desired.begin(), impl_->desired.end()};
}

core::Result<void> MqttClient::publish(std::string topic, std::string payload, int qos, bool retain) {
  if (auto ok = check_mqtt_topic(topic); !ok) return ok;
  if (qos < 0 || qos > 2) return core::fail(Errc::validation_failed, "the QoS must be 0, 1 or 2");
  if (payload.size() > impl_->settings.max_payload_bytes) {
    return core::fail(Errc::validation_failed, "the payload of " + std::to_string(payload.size()) +
                                                   " bytes is larger than the limit of " +
                                                   std::to_string(impl_->settings.max_payload_bytes));
  }
  {
    std::lock_guard lock(impl_->mutex);
    auto& i = *impl_;
    if (!i.running || i.stopping) return core::fail(Errc::unavailable, "the MQTT client is stopped");
    if (i.queue.size() >= i.settings.max_queued_publishes) {
      return core::fail(Errc::unavailable, "the MQTT client's publish queue is full (" +
                                               std::to_string(i.settings.max_queued_publishes) +
                                               " messages)");
    }
    i.queue.push_back({std::move(topic), std::move(payload), qos, retain});
  }
  impl_->wake();
  return {};
}

bool MqttClient::connected() const {
  return impl_->is_connected.load();
}

MqttStatus MqttClient::status() const {
  const auto& i = *impl_;
  MqttStatus out;
  {
    std::lock_guard lock(i.mutex);
    out.state = i.state;
    out.last_error = i.last_error;
  }
  constexpr auto relaxed = std::memory_order_relaxed;
  out.counters.received = i.received.load(relaxed);
  out.counters.dropped_oversize = i.dropped_oversize.load(relaxed);
  out.counters.dropped_unsubscribed = i.dropped_unsubscribed.load(relaxed);
  out.counters.connects = i.connects.load(relaxed);
  out.counters.reconnects = i.reconnects.load(relaxed);
  out.counters.connect_failures = i.connect_failures.load(relaxed);
  out.counters.subscribed = i.subscribed.load(relaxed);
  out.counters.subscribe_failures = i.subscribe_failures.load(relaxed);
  out.counters.published = i.published.load(relaxed);
  return out;
}

}  // namespace twinbridge::connect
