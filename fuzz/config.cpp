// The configuration file: the input is the text of a TOML file given with --config, resolved by
// app::ConfigLoader as `twinbridge serve` does (the file's settings over the defaults; no flags).
//
// Checks: nothing but the absence of crashes, leaks and undefined behaviour, and that every refusal is a
// validation_failed naming the file.

#include <CLI/CLI.hpp>

#include "app/config.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace twinbridge;
  CLI::App app;
  app::ConfigLoader loader(app);
  const auto config = loader.load_text(fuzz::as_text(data, size), "fuzz.toml");
  if (!config) {
    TB_FUZZ_CHECK(config.error().code == core::Errc::validation_failed);
    TB_FUZZ_CHECK(config.error().detail.find("fuzz.toml") != std::string::npos ||
                  config.error().detail.starts_with("setting "));
  }
  return 0;
}
