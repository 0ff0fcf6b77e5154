#include "app/config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

namespace twinbridge::app {

using core::Errc;
using core::Result;

namespace {

using Setter = std::function<Result<void>(Config&, const std::string&)>;

struct Setting {
  SettingInfo info;
  Setter apply;
};

Result<void> bad(const std::string& what) {
  return core::fail(Errc::validation_failed, what);
}

template <class T>
Result<T> number(const std::string& v, T min, T max) {
  T out{};
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < min || out > max) {
    return core::fail(Errc::validation_failed,
                      fmt::format("'{}' is not a number from {} to {}", v, min, max));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(Errc::validation_failed, fmt::format("cannot read file '{}'", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "ALG:KID:PATH": PATH is a PEM public key (RS256, ES256) or a file holding the shared secret (HS256).
Result<core::JwtKey> jwt_key(const std::string& spec) {
  const auto a = spec.find(':');
  const auto b = a == std::string::npos ? std::string::npos : spec.find(':', a + 1);
  if (b == std::string::npos)
    return core::fail(Errc::validation_failed, fmt::format("'{}' is not ALG:KID:PATH", spec));
  core::JwtKey key;
  auto alg = core::parse_jwt_alg(spec.substr(0, a));
  if (!alg)
    return core::fail(Errc::validation_failed,
                      fmt::format("'{}' is not HS256, RS256 or ES256", spec.substr(0, a)));
  key.alg = *alg;
  key.kid = spec.substr(a + 1, b - a - 1);
  auto content = read_file(spec.substr(b + 1));
  if (!content) return std::unexpected(content.error());
  if (key.alg == core::JwtAlg::hs256) {
    while (!content->empty() && (content->back() == '\n' || content->back() == '\r')) content->pop_back();
    key.secret = std::move(*content);
  } else {
    key.public_key_pem = std::move(*content);
  }
  return key;
}

std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(v);
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Result<void> millis(std::chrono::milliseconds& out, const std::string& v) {
  auto n = number<std::int64_t>(v, 1, 86'400'000);
  if (!n) return std::unexpected(n.error());
  out = std::chrono::milliseconds(*n);
  return {};
}

// A whole number from `min` to `max` into `out`.
template <class T>
Result<void> whole(T& out, const std::string& v, T min, T max) {
  auto n = number<T>(v, min, max);
  if (!n) return std::unexpected(n.error());
  out = *n;
  return {};
}

Result<void> boolean(bool& out, const std::string& v) {
  if (v != "true" && v != "false") return bad(fmt::format("'{}' is not true or false", v));
  out = v == "true";
  return {};
}

std::vector<Setting> table() {
  std::vector<Setting> t;
  auto add = [&](std::string key, std::string flag, std::string def, std::string description, Setter apply,
                 bool secret = false) {
    std::string env = "TWINBRIDGE_";
    for (char c : key)
      env.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    t.push_back(
        {{std::move(key), std::move(env), std::move(flag), std::move(def), std::move(description), secret},
         std::move(apply)});
  };
  add("listen", "--listen", "127.0.0.1:8470", "HOST:PORT to serve HTTP on; port 0 picks a free port (logged)",
      [](Config& c, const std::string& v) -> Result<void> {
        const auto colon = v.rfind(':');
        if (colon == std::string::npos || colon == 0) return bad(fmt::format("'{}' is not HOST:PORT", v));
        auto port = number<unsigned>(v.substr(colon + 1), 0, 65535);
        if (!port) return std::unexpected(port.error());
        std::string host = v.substr(0, colon);
        if (host.size() > 2 && host.front() == '[' && host.back() == ']')
          host = host.substr(1, host.size() - 2);
        if (host == "localhost") host = "127.0.0.1";
        c.listen_host = host;
        c.listen_port = static_cast<std::uint16_t>(*port);
        return {};
      });
  add("data", "--data", "twinbridge-data", "data directory (SQLite database, bootstrap key)",
      [](Config& c, const std::string& v) -> Result<void> {
        if (v.empty()) return bad("the data directory must not be empty");
        c.data_dir = v;
        return {};
      });
  add("threads", "--threads", "0", "I/O threads; 0 means one per CPU core",
      [](Config& c, const std::string& v) {
        auto n = number<unsigned>(v, 0, 256);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.threads = *n;
        return Result<void>();
      });
  add("shutdown.grace_ms", "--shutdown-grace-ms", "30000",
      "on SIGTERM/SIGINT, how long in-flight requests may take to finish",
      [](Config& c, const std::string& v) { return millis(c.shutdown_grace, v); });
  add("limits.max_body_bytes", "--max-body-bytes", "1048576", "largest request body accepted (413 beyond)",
      [](Config& c, const std::string& v) {
        auto n = number<std::size_t>(v, 1, std::size_t{1} << 30);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.limits.max_body_bytes = *n;
        return Result<void>();
      });
  add("limits.max_header_bytes", "--max-header-bytes", "16384", "largest request head accepted (431 beyond)",
      [](Config& c, const std::string& v) {
        auto n = number<std::size_t>(v, 1024, 1024 * 1024);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.limits.max_header_bytes = *n;
        return Result<void>();
      });
  add("limits.max_json_depth", "--max-json-depth", "64",
      "deepest JSON nesting accepted in a body (400 beyond)", [](Config& c, const std::string& v) {
        auto n = number<std::size_t>(v, 2, 1000);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.api.max_json_depth = *n;
        return Result<void>();
      });
  add("limits.read_timeout_ms", "--read-timeout-ms", "10000",
      "a request must arrive completely within this time of its first byte, or the connection is closed",
      [](Config& c, const std::string& v) { return millis(c.limits.read_timeout, v); });
  add("limits.idle_timeout_ms", "--idle-timeout-ms", "60000",
      "keep-alive connections idle this long are closed",
      [](Config& c, const std::string& v) { return millis(c.limits.idle_timeout, v); });
  add("limits.write_timeout_ms", "--write-timeout-ms", "10000",
      "a response must be written within this time, or the connection is closed",
      [](Config& c, const std::string& v) { return millis(c.limits.write_timeout, v); });
  add("limits.max_connections", "--max-connections", "10000",
      "open connections at most; further ones are closed at once", [](Config& c, const std::string& v) {
        auto n = number<std::size_t>(v, 1, 1'000'000);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.limits.max_connections = *n;
        return Result<void>();
      });
  add("limits.max_requests_per_connection", "--max-requests-per-connection", "100000",
      "requests served on one keep-alive connection before it is closed",
      [](Config& c, const std::string& v) {
        auto n = number<std::size_t>(v, 1, std::size_t{1} << 40);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.limits.max_requests_per_connection = *n;
        return Result<void>();
      });
  add("limits.max_ws_message_bytes", "--max-ws-message-bytes", "65536",
      "largest WebSocket message accepted from a client; a larger one closes the connection with 1009",
      [](Config& c, const std::string& v) {
        return whole(c.limits.max_ws_message_bytes, v, std::size_t{128}, std::size_t{64} << 20);
      });
  add("limits.max_ws_queue_bytes", "--max-ws-queue-bytes", "4194304",
      "bytes queued for sending on one WebSocket; a client that falls further behind is closed with 1008",
      [](Config& c, const std::string& v) {
        return whole(c.limits.max_ws_queue_bytes, v, std::size_t{4096}, std::size_t{1} << 30);
      });
  add("log.level", "--log-level", "info", "trace, debug, info, warn, error or off",
      [](Config& c, const std::string& v) -> Result<void> {
        for (const char* l : {"trace", "debug", "info", "warn", "error", "off"}) {
          if (v == l) {
            c.log_level = v;
            return {};
          }
        }
        return bad(fmt::format("'{}' is not a log level", v));
      });
  add("log.format", "--log-format", "json", "json (one JSON object per line) or text",
      [](Config& c, const std::string& v) -> Result<void> {
        if (v != "json" && v != "text") return bad(fmt::format("'{}' is not json or text", v));
        c.log_format = v;
        return {};
      });
  add("log.access", "--access-log", "true", "one log line per request (true or false)",
      [](Config& c, const std::string& v) -> Result<void> {
        return boolean(c.api.access_log, v);
        return {};
      });
  add(
      "admin_token", "--admin-token", "",
      "bearer token with full operator rights (at least 16 characters); prefer the environment variable",
      [](Config& c, const std::string& v) -> Result<void> {
        if (!v.empty() && v.size() < 16) return bad("the admin token must be at least 16 characters long");
        c.admin_token = v;
        return {};
      },
      true);
  add("store.synchronous", "--store-synchronous", "FULL",
      "SQLite synchronous mode: FULL (an acknowledged write survives power loss) or NORMAL (survives a crash "
      "of "
      "the process only)",
      [](Config& c, const std::string& v) -> Result<void> {
        if (v != "FULL" && v != "NORMAL" && v != "EXTRA")
          return bad(fmt::format("'{}' is not FULL, EXTRA or NORMAL", v));
        c.store_synchronous = v;
        return {};
      });
  add("store.max_batch", "--store-max-batch", "1024", "writes committed together in one group commit at most",
      [](Config& c, const std::string& v) {
        auto n = number<std::size_t>(v, 1, 100'000);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.store_max_batch = *n;
        return Result<void>();
      });
  add("store.keep_changes", "--store-keep-changes", "1000000",
      "newest changes the change feed keeps (Last-Event-ID and stream resume reach back this far)",
      [](Config& c, const std::string& v) {
        auto n = number<std::int64_t>(v, 1, 1'000'000'000);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.store_keep_changes = *n;
        return Result<void>();
      });
  add("auth.jwt.keys", "--jwt-key", "",
      "JWT verification keys, comma-separated ALG:KID:PATH (RS256/ES256: PEM public key file; HS256: file "
      "with "
      "the shared secret)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.jwt_keys.clear();
        for (const auto& spec : split_list(v)) {
          auto key = jwt_key(spec);
          if (!key) return std::unexpected(key.error());
          c.jwt_keys.push_back(std::move(*key));
        }
        return {};
      });
  add("auth.jwt.issuer", "--jwt-issuer", "", "required `iss` of JWTs (empty: not checked)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.jwt_policy.issuer = v;
        return {};
      });
  add("auth.jwt.audience", "--jwt-audience", "twinbridge",
      "required member of `aud` of JWTs (empty: not checked)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.jwt_policy.audience = v;
        return {};
      });
  add("auth.jwt.leeway_s", "--jwt-leeway-s", "60", "clock skew allowed on `exp` and `nbf`, seconds",
      [](Config& c, const std::string& v) {
        auto n = number<std::int64_t>(v, 0, 3600);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.jwt_policy.leeway = std::chrono::seconds(*n);
        return Result<void>();
      });
  add("auth.failure_burst", "--auth-failure-burst", "50",
      "failed authentications a client address may make before it gets 429",
      [](Config& c, const std::string& v) {
        auto n = number<unsigned>(v, 1, 1'000'000);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.auth_failure_burst = *n;
        return Result<void>();
      });
  add("auth.failure_refill_per_s", "--auth-failure-refill", "5",
      "failed authentications per second a client address regains", [](Config& c, const std::string& v) {
        auto n = number<unsigned>(v, 1, 1'000'000);
        if (!n) return Result<void>(std::unexpected(n.error()));
        c.auth_failure_refill = *n;
        return Result<void>();
      });
  add("monitor.enabled", "--monitor", "true",
      "probe registered systems' health URLs and lapse heartbeat TTLs (true or false)",
      [](Config& c, const std::string& v) { return boolean(c.monitor.enabled, v); });
  add("monitor.interval_ms", "--monitor-interval-ms", "30000",
      "how often a system's health URL is probed, unless its registration says otherwise",
      [](Config& c, const std::string& v) { return millis(c.monitor.defaults.interval, v); });
  add("monitor.min_interval_ms", "--monitor-min-interval-ms", "1000",
      "shortest probe interval a registration may ask for",
      [](Config& c, const std::string& v) { return millis(c.monitor.min_interval, v); });
  add("monitor.timeout_ms", "--monitor-timeout-ms", "5000",
      "time a probe may take (connect to last byte), unless the registration says otherwise",
      [](Config& c, const std::string& v) { return millis(c.monitor.defaults.timeout, v); });
  add("monitor.max_timeout_ms", "--monitor-max-timeout-ms", "30000",
      "longest probe timeout a registration may ask for",
      [](Config& c, const std::string& v) { return millis(c.monitor.max_timeout, v); });
  add("monitor.failure_threshold", "--monitor-failure-threshold", "3",
      "consecutive failed probes before a system is down, unless the registration says otherwise",
      [](Config& c, const std::string& v) { return whole(c.monitor.defaults.failure_threshold, v, 1, 100); });
  add("monitor.success_threshold", "--monitor-success-threshold", "1",
      "consecutive passing probes before a down system is up again, unless the registration says otherwise",
      [](Config& c, const std::string& v) { return whole(c.monitor.defaults.success_threshold, v, 1, 100); });
  add("monitor.heartbeat_ttl_ms", "--monitor-heartbeat-ttl-ms", "90000",
      "heartbeat TTL of systems that send heartbeats without declaring one",
      [](Config& c, const std::string& v) { return millis(c.monitor.defaults.default_heartbeat_ttl, v); });
  add("monitor.max_response_bytes", "--monitor-max-response-bytes", "65536",
      "largest health response body; a larger one fails the probe", [](Config& c, const std::string& v) {
        return whole(c.monitor.max_response_body, v, std::size_t{1}, std::size_t{16} << 20);
      });
  add("monitor.max_concurrent_probes", "--monitor-max-concurrent-probes", "64", "probes in flight at once",
      [](Config& c, const std::string& v) {
        return whole(c.monitor.max_concurrent_probes, v, std::size_t{1}, std::size_t{10'000});
      });
  add("monitor.history_limit", "--monitor-history-limit", "1000", "status changes kept per system",
      [](Config& c, const std::string& v) {
        return whole(c.monitor.history_limit, v, std::size_t{1}, std::size_t{1'000'000});
      });
  add("monitor.sla_window_s", "--monitor-sla-window-s", "86400",
      "probe samples are kept this long; the longest window of an SLA report",
      [](Config& c, const std::string& v) {
        std::int64_t n = 0;
        if (auto ok = whole(n, v, std::int64_t{60}, std::int64_t{90} * 86'400); !ok) return ok;
        c.monitor.sla_window = std::chrono::seconds(n);
        return Result<void>();
      });
  add("monitor.ca_file", "--monitor-ca-file", "",
      "PEM file of CAs trusted for https health URLs (empty: the system's trust store)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.monitor.client.ca_file = v;
        return {};
      });
  add("query.max_nodes_visited", "--query-max-nodes-visited", "10000000",
      "nodes a query (/search/jsonpath, filter=) may visit before it is stopped with 422 query-too-costly",
      [](Config& c, const std::string& v) {
        return whole(c.api.query_limits.max_nodes_visited, v, std::uint64_t{1000}, std::uint64_t{1} << 40);
      });
  add("query.max_nodes_selected", "--query-max-nodes-selected", "100000",
      "nodes a /search/jsonpath query may select", [](Config& c, const std::string& v) {
        return whole(c.api.query_limits.max_nodes_selected, v, std::uint64_t{1}, std::uint64_t{1} << 32);
      });
  add("query.max_output_bytes", "--query-max-output-bytes", "33554432",
      "bytes a /search/jsonpath answer may have", [](Config& c, const std::string& v) {
        return whole(c.api.query_limits.max_output_bytes, v, std::uint64_t{1024}, std::uint64_t{1} << 34);
      });
  add("query.max_regex_steps", "--query-max-regex-steps", "100000000",
      "steps the match() and search() regular expressions of one query may take together",
      [](Config& c, const std::string& v) {
        return whole(c.api.query_limits.max_regex_steps, v, std::uint64_t{1000}, std::uint64_t{1} << 40);
      });
  add("query.max_time_ms", "--query-max-time-ms", "10000", "time a query may run before it is stopped",
      [](Config& c, const std::string& v) { return millis(c.api.query_limits.max_time, v); });
  add("query.workers", "--query-workers", "0",
      "threads that run queries and other long work off the I/O threads; 0 means one per CPU core",
      [](Config& c, const std::string& v) {
        return whole(c.api.query_workers, v, std::size_t{0}, std::size_t{256});
      });
  add("query.max_queued_per_principal", "--query-max-queued-per-principal", "16",
      "queries one principal may have waiting for a worker (429 beyond); one principal never runs on every "
      "worker at once",
      [](Config& c, const std::string& v) {
        return whole(c.api.max_queued_queries, v, std::size_t{1}, std::size_t{10'000});
      });
  add("ingest.workers", "--ingest-workers", "0",
      "threads that check and apply batches of state changes off the I/O threads; 0 means one per CPU core",
      [](Config& c, const std::string& v) {
        return whole(c.api.ingest_workers, v, std::size_t{0}, std::size_t{256});
      });
  add("ingest.max_queued_per_principal", "--ingest-max-queued-per-principal", "64",
      "batches of state changes one principal may have waiting for an ingest worker (429 beyond)",
      [](Config& c, const std::string& v) {
        return whole(c.api.max_queued_batches, v, std::size_t{1}, std::size_t{100'000});
      });
  add("stream.max_subscriptions", "--stream-max-subscriptions", "100",
      "open subscriptions on one /v1/stream connection at most", [](Config& c, const std::string& v) {
        return whole(c.api.stream.max_subscriptions, v, std::size_t{1}, std::size_t{10'000});
      });
  add("stream.max_twins", "--stream-max-twins", "10000",
      "twins one /v1/stream connection follows at most, all its subscriptions together",
      [](Config& c, const std::string& v) {
        return whole(c.api.stream.max_twins, v, std::size_t{1}, std::size_t{1'000'000});
      });
  add("mqtt.url", "--mqtt-url", "",
      "MQTT broker for the physical-to-virtual sync of twins, mqtt://host[:port] or mqtts://host[:port] "
      "(empty: no MQTT)",
      [](Config& c, const std::string& v) -> Result<void> {
        if (!v.empty()) {
          if (auto ok = connect::parse_mqtt_url(v); !ok) return bad(ok.error().detail);
        }
        c.mqtt.client.broker_url = v;
        return {};
      });
  add("mqtt.client_id", "--mqtt-client-id", "twinbridge",
      "MQTT client id: names twinbridge's persistent session on the broker (one per node)",
      [](Config& c, const std::string& v) -> Result<void> {
        if (v.empty() || v.size() > 256) return bad("must be 1 to 256 bytes");
        c.mqtt.client.client_id = v;
        return {};
      });
  add("mqtt.username", "--mqtt-username", "", "MQTT user name (empty: none)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.mqtt.client.username = v;
        return {};
      });
  add(
      "mqtt.password", "--mqtt-password", "", "MQTT password (with mqtt.username)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.mqtt.client.password = v;
        return {};
      },
      true);
  add("mqtt.state_topic_prefix", "--mqtt-state-topic-prefix", "twinbridge/state/",
      "topic prefix of the twin systems' state topics (<prefix><twin system id>)",
      [](Config& c, const std::string& v) -> Result<void> {
        if (v.empty() || v.find_first_of("+#") != std::string::npos)
          return bad("must be a topic prefix without wildcards");
        c.mqtt.state_topic_prefix = v;
        return {};
      });
  add("mqtt.max_payload_bytes", "--mqtt-max-payload-bytes", "1048576",
      "largest MQTT message taken in; larger ones are dropped and counted",
      [](Config& c, const std::string& v) {
        return whole(c.mqtt.client.max_payload_bytes, v, std::size_t{1}, std::size_t{64} << 20);
      });
  add("mqtt.workers", "--mqtt-workers", "0",
      "threads that check the MQTT sync's changes (a twin's always on the same one); 0 means one per CPU "
      "core",
      [](Config& c, const std::string& v) {
        return whole(c.mqtt.workers, v, std::size_t{0}, std::size_t{256});
      });
  add("outbound.allow", "--outbound-allow", "",
      "destinations the outbound guard would refuse that twinbridge may call and accept in registrations: "
      "comma-separated loopback, private, CIDRs, addresses, host names, *.domain (empty: none)",
      [](Config& c, const std::string& v) -> Result<void> {
        auto guard = connect::OutboundGuard::from_allow_list(v);
        if (!guard) return std::unexpected(guard.error());
        c.outbound = std::move(*guard);
        return {};
      });
  add("acquisition.timeout_ms", "--acquisition-timeout-ms", "5000",
      "time each call to a twin system during an acquisition may take (connect to last byte)",
      [](Config& c, const std::string& v) { return millis(c.acquisition.timeout, v); });
  add("acquisition.max_response_bytes", "--acquisition-max-response-bytes", "1048576",
      "largest answer of a twin system (values, permissions) an acquisition takes; a larger one fails",
      [](Config& c, const std::string& v) {
        return whole(c.acquisition.max_response_bytes, v, std::size_t{1}, std::size_t{64} << 20);
      });
  add("acquisition.max_concurrent", "--acquisition-max-concurrent", "16",
      "twins acquired at once over all requests; the others wait their turn",
      [](Config& c, const std::string& v) {
        return whole(c.acquisition.max_concurrent, v, std::size_t{1}, std::size_t{1'000});
      });
  add("acquisition.max_twins", "--acquisition-max-twins", "1000",
      "twins one acquisition request may ask for (422 beyond)", [](Config& c, const std::string& v) {
        return whole(c.acquisition.max_twins, v, std::size_t{1}, std::size_t{100'000});
      });
  add("acquisition.ca_file", "--acquisition-ca-file", "",
      "PEM file of CAs trusted for https forms and permission endpoints of twin systems (empty: the system's "
      "trust store)",
      [](Config& c, const std::string& v) -> Result<void> {
        c.acquisition.http.ca_file = v;
        return {};
      });
  return t;
}

// Flattens a TOML table to dotted keys with string values (arrays of strings become comma-separated lists).
Result<void> flatten(const toml::table& table, const std::string& prefix,
                     std::map<std::string, std::string>& out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table()) {
      if (auto ok = flatten(*sub, key, out); !ok) return ok;
    } else if (const auto* arr = node.as_array()) {
      std::string joined;
      for (const auto& item : *arr) {
        const auto* s = item.as_string();
        if (s == nullptr) return bad(fmt::format("{}: must be an array of strings", key));
        if (!joined.empty()) joined += ",";
        joined += s->get();
      }
      out[key] = joined;
    } else if (const auto* s = node.as_string()) {
      out[key] = s->get();
    } else if (const auto* i = node.as_integer()) {
      out[key] = std::to_string(i->get());
    } else if (const auto* b = node.as_boolean()) {
      out[key] = b->get() ? "true" : "false";
    } else {
      return bad(
          fmt::format("{}: unsupported TOML type (use a string, integer, boolean or array of strings)", key));
    }
  }
  return {};
}

}  // namespace

std::vector<SettingInfo> settings_catalogue() {
  std::vector<SettingInfo> out;
  for (auto& s : table()) out.push_back(s.info);
  return out;
}

ConfigLoader::ConfigLoader(CLI::App& app) {
  app.add_option("--config", config_file_, "TOML configuration file (env: TWINBRIDGE_CONFIG)");
  for (const auto& s : table()) {
    app.add_option(s.info.flag, flags_[s.info.key],
                   fmt::format("{} (env: {}; default: {})", s.info.description, s.info.env,
                               s.info.default_value.empty() ? "empty" : s.info.default_value));
  }
}

Result<Config> ConfigLoader::load() {
  std::string file = config_file_;
  if (file.empty()) {
    if (const char* e = std::getenv("TWINBRIDGE_CONFIG")) file = e;
  }
  if (file.empty()) return resolve({}, file);
  auto text = read_file(file);
  if (!text) return std::unexpected(text.error());
  return load_text(*text, file);
}

Result<Config> ConfigLoader::load_text(std::string_view toml_text, const std::string& file) {
  std::map<std::string, std::string> file_values;
  try {
    const auto parsed = toml::parse(toml_text, file);
    if (auto ok = flatten(parsed, "", file_values); !ok) {
      return core::fail(Errc::validation_failed, fmt::format("{}: {}", file, ok.error().detail));
    }
  } catch (const toml::parse_error& e) {
    return core::fail(Errc::validation_failed, fmt::format("{}:{}:{}: {}", file, e.source().begin.line,
                                                           e.source().begin.column, e.description()));
  }
  return resolve(file_values, file);
}

Result<Config> ConfigLoader::resolve(const std::map<std::string, std::string>& file_values,
                                     const std::string& file) {
  Config config;
  effective_.clear();
  const auto settings = table();
  for (const auto& entry : file_values) {
    const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture one
    const bool known =
        std::any_of(settings.begin(), settings.end(), [&](const Setting& s) { return s.info.key == key; });
    if (!known)
      return core::fail(Errc::validation_failed, fmt::format("{}: unknown setting '{}'", file, key));
  }
  for (const auto& s : settings) {
    std::string value = s.info.default_value;
    std::string source = "default";
    if (auto it = file_values.find(s.info.key); it != file_values.end()) {
      value = it->second;
      source = file;
    }
    if (const char* e = std::getenv(s.info.env.c_str())) {
      value = e;
      source = s.info.env;
    }
    if (const auto& f = flags_[s.info.key]; !f.empty()) {
      value = f;
      source = s.info.flag;
    }
    if (auto ok = s.apply(config, value); !ok) {
      return core::fail(Errc::validation_failed,
                        fmt::format("setting {} (from {}): {}", s.info.key, source, ok.error().detail));
    }
    effective_.push_back({s.info, {s.info.secret && !value.empty() ? "(set)" : value, source}});
  }
  return config;
}

}  // namespace twinbridge::app
