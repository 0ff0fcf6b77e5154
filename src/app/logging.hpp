#pragma once
// Logging set-up: every line goes to stderr, as one JSON object per line ({"ts","level","logger","msg"}) or
// as plain text. The access log is separate (src/http/access_log.hpp) and shares the descriptor.

#include <string>

namespace twinbridge::app {

// Installs the default logger.
void setup_logging(const std::string& level, const std::string& format);

}  // namespace twinbridge::app
