#pragma once
// The subcommands of the twinbridge executable; each returns the process exit code.

#include <string>

#include "app/config.hpp"

namespace twinbridge::app {

int run_serve(ConfigLoader& config);
int run_config(ConfigLoader& config);
// 0: printed the nodelist; 2: invalid query; 1: unreadable file or invalid JSON.
int run_jsonpath(const std::string& query, const std::string& file);

}  // namespace twinbridge::app
