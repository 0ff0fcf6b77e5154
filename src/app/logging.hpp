#pragma once
// Logging set-up: every line goes to stderr, as one JSON object per line ({"ts","level","logger","msg"}) or
// as plain text. The access log is separate (src/http/access_log.hpp) and shares the descriptor.

#include <string>

namespace twinbridge::app {

// Installs the default logger.
void setup_logging(const std::string& level, const std::string& format);

// Writes every line still queued, ends the logging thread, then destroys the logger and its sink (in that
// order: spdlog::shutdown() alone destroys the default logger before it joins the thread that may still be
// writing through it). Call once, when no other thread logs any more.
void shutdown_logging();

}  // namespace twinbridge::app
