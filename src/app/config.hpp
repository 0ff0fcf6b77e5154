#pragma once
// twinbridge's configuration: one table of settings (config.cpp), each with a TOML key, an environment
// variable, a command-line flag, a default and a description. A flag wins over the environment, which wins
// over the file, which wins over the default. `twinbridge config` prints every setting with its value and
// where the value came from; the README's table is that output.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connect/outbound_guard.hpp"
#include "core/error.hpp"
#include "core/jwt.hpp"
#include "dtif/mqtt_sync.hpp"
#include "http/api.hpp"
#include "http/server.hpp"
#include "registry/system_monitor.hpp"

namespace CLI {
class App;
}

namespace twinbridge::app {

struct Config {
  std::string listen_host = "127.0.0.1";
  std::uint16_t listen_port = 8470;
  std::filesystem::path data_dir = "twinbridge-data";
  unsigned threads = 0;  // 0: one per core
  std::chrono::milliseconds shutdown_grace{30'000};
  http::ServerLimits limits;
  http::ApiSettings api;
  std::string log_level = "info";
  std::string log_format = "json";
  std::string admin_token;
  std::string store_synchronous = "FULL";
  std::size_t store_max_batch = 1024;
  std::int64_t store_keep_changes = 1'000'000;
  std::vector<core::JwtKey> jwt_keys;
  core::JwtPolicy jwt_policy;
  double auth_failure_burst = 50;
  double auth_failure_refill = 5;
  registry::MonitorSettings monitor;
  // outbound.allow; serve hands it to every outbound client and to the registries (endpoint URLs).
  connect::OutboundGuard outbound;
  // MQTT sync of twins' state (dtif/mqtt_sync.hpp); client.broker_url empty: off.
  dtif::MqttSyncSettings mqtt;
  dtif::AcquisitionSettings acquisition;  // acquisition.*
};

struct SettingInfo {
  std::string key;
  std::string env;
  std::string flag;
  std::string default_value;
  std::string description;
  bool secret = false;
};

// Registers one option per setting on `app` (all strings; parsed after CLI11 is done), plus --config.
class ConfigLoader {
 public:
  explicit ConfigLoader(CLI::App& app);
  // Resolves every setting from flags, environment and the TOML file. Errors name the source and the setting.
  core::Result<Config> load();
  // The same with the configuration file's content given as text (`file` names it in errors), as if --config
  // named a file holding it.
  core::Result<Config> load_text(std::string_view toml_text, const std::string& file);
  // key → (effective value, source) of the last load(), secrets redacted.
  const std::vector<std::pair<SettingInfo, std::pair<std::string, std::string>>>& effective() const {
    return effective_;
  }

 private:
  core::Result<Config> resolve(const std::map<std::string, std::string>& file_values,
                               const std::string& file);

  std::map<std::string, std::string> flags_;
  std::string config_file_;
  std::vector<std::pair<SettingInfo, std::pair<std::string, std::string>>> effective_;
};

std::vector<SettingInfo> settings_catalogue();

}  // namespace twinbridge::app
