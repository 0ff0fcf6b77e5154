#include <fmt/format.h>
#include <boost/json/parser.hpp>
#include <boost/json/serialize.hpp>

#include <fstream>
#include <iostream>
#include <sstream>

#include "app/commands.hpp"
#include "query/jsonpath.hpp"

namespace twinbridge::app {

int run_jsonpath(const std::string& query, const std::string& file) {
  auto path = query::JsonPath::parse(query);
  if (!path) {
    fmt::print(stderr, "twinbridge jsonpath: {}\n", path.error().detail);
    return 2;
  }
  std::ostringstream text;
  if (file.empty() || file == "-") {
    text << std::cin.rdbuf();
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      fmt::print(stderr, "twinbridge jsonpath: cannot read '{}'\n", file);
      return 1;
    }
    text << in.rdbuf();
  }
  boost::json::parse_options options;
  options.max_depth = 10'000;
  boost::json::parser parser({}, options);
  boost::system::error_code ec;
  const auto doc_text = text.str();
  const auto consumed = parser.write(doc_text, ec);
  if (ec) {
    fmt::print(stderr, "twinbridge jsonpath: the document is not valid JSON: {} at byte offset {}\n",
               ec.message(), consumed);
    return 1;
  }
  const auto doc = parser.release();
  boost::json::array out;
  for (const auto* v : path->select(doc)) out.push_back(*v);
  fmt::print("{}\n", boost::json::serialize(out));
  return 0;
}

}  // namespace twinbridge::app
