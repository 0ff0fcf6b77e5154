#pragma once
// Logging set-up: every line goes to stderr, as one JSON object per line ({"ts","level","logger","msg"}) or as plain
// text. The access log ("access" logger) writes the request objects that src/http/api.cpp builds, unchanged.

#include <memory>
#include <string>

namespace spdlog {
class logger;
}

namespace twinbridge::app {

// Installs the default logger and returns the access logger.
std::shared_ptr<spdlog::logger> setup_logging(const std::string& level, const std::string& format);

}  // namespace twinbridge::app
