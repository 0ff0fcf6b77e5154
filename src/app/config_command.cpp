#include <fmt/format.h>

#include "app/commands.hpp"

namespace twinbridge::app {

int run_config(ConfigLoader& loader) {
  auto loaded = loader.load();
  if (!loaded) {
    fmt::print(stderr, "twinbridge: {}\n", loaded.error().detail);
    return 2;
  }
  for (const auto& [info, value] : loader.effective()) {
    fmt::print("# {}\n# env {}, flag {}, default '{}'; set by {}\n{} = \"{}\"\n\n", info.description,
               info.env, info.flag, info.default_value, value.second, info.key, value.first);
  }
  return 0;
}

}  // namespace twinbridge::app
