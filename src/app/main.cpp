// twinbridge: the integration enabler of ITU FG-MV FGMV-29. Subcommands:
//   serve     run the server (embedded defaults: SQLite in the data directory, loopback)
//   jsonpath  evaluate an RFC 9535 JSONPath query on a JSON document
//   config    print every setting, its value and where the value came from
// This file is the only place that knows every part; it wires them and owns their lifetimes.

#include <CLI/CLI.hpp>

#include "app/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{
      "twinbridge: the integration enabler of ITU FG-MV FGMV-29 (metaverse, digital twin and 3rd-party "
      "systems)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "twinbridge 0.1.0");

  auto* serve = app.add_subcommand("serve", "run the twinbridge server");
  twinbridge::app::ConfigLoader serve_config(*serve);

  auto* show = app.add_subcommand("config", "print every setting with its value and source");
  twinbridge::app::ConfigLoader show_config(*show);

  auto* jsonpath = app.add_subcommand("jsonpath", "print the RFC 9535 nodelist of QUERY on a JSON document");
  std::string query;
  std::string file;
  jsonpath->add_option("QUERY", query, "the JSONPath query, e.g. '$.store.book[?@.price < 10].title'")
      ->required();
  jsonpath->add_option("FILE", file, "the JSON document (default: standard input)");

  CLI11_PARSE(app, argc, argv);
  if (*serve) return twinbridge::app::run_serve(serve_config);
  if (*show) return twinbridge::app::run_config(show_config);
  return twinbridge::app::run_jsonpath(query, file);
}
