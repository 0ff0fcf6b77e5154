// The twinbridge command line: `twinbridge jsonpath QUERY [FILE]` and `twinbridge config`, run as a user
// would.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/json/parse.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "support/server_process.hpp"

namespace twinbridge::testing {
namespace {

struct Run {
  int exit_code;
  std::string out;
  std::string err;
};

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `twinbridge ARGS` with `input` on stdin, capturing stdout and stderr.
Run run(const std::string& args, const std::string& input = "") {
  TempDir dir;
  const auto in = dir.path() / "in";
  std::ofstream(in) << input;
  const auto cmd = quote(twinbridge_binary()) + " " + args + " < " + quote(in.string()) + " > " +
                   quote((dir.path() / "out").string()) + " 2> " + quote((dir.path() / "err").string());
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir.path() / "out"), slurp(dir.path() / "err")};
}

TEST(JsonPathCommandTest, PrintsTheNodelistOfAFile) {
  TempDir dir;
  const auto doc = dir.path() / "doc.json";
  std::ofstream(doc) << R"({"store":{"book":[{"title":"A","price":8},{"title":"B","price":12}]}})";
  auto r = run("jsonpath " + quote("$.store.book[?@.price < 10].title") + " " + quote(doc.string()));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(boost::json::parse(r.out), boost::json::parse(R"(["A"])"));
}

TEST(JsonPathCommandTest, ReadsStandardInput) {
  auto r = run("jsonpath " + quote("$..x"), R"({"a":{"x":1},"b":[{"x":2}]})");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(boost::json::parse(r.out), boost::json::parse("[1,2]"));
}

TEST(JsonPathCommandTest, InvalidQueryExitsNonZeroWithWhere) {
  auto r = run("jsonpath " + quote("$[?@.a =="), "{}");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("offset"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(JsonPathCommandTest, InvalidDocumentExitsOne) {
  auto r = run("jsonpath " + quote("$"), "{not json");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not valid JSON"), std::string::npos) << r.err;
}

TEST(ConfigCommandTest, PrintsEverySettingWithItsSource) {
  auto r = run("config --listen 127.0.0.1:9999");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("listen = \"127.0.0.1:9999\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("set by --listen"), std::string::npos);
  EXPECT_NE(r.out.find("TWINBRIDGE_ADMIN_TOKEN"), std::string::npos);
  auto bad = run("config --max-body-bytes lots");
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("limits.max_body_bytes"), std::string::npos) << bad.err;
}

TEST(ConfigCommandTest, TheOutboundAllowListIsCheckedAtStartUp) {
  auto none = run("config");
  EXPECT_EQ(none.exit_code, 0) << none.err;
  EXPECT_NE(none.out.find("outbound.allow = \"\""), std::string::npos) << none.out;
  auto some = run("config --outbound-allow 'loopback, 10.20.0.0/16,health.internal'");
  EXPECT_EQ(some.exit_code, 0) << some.err;
  EXPECT_NE(some.out.find("outbound.allow = \"loopback, 10.20.0.0/16,health.internal\""), std::string::npos)
      << some.out;
  auto typo = run("config --outbound-allow 10.1.2.3/8");
  EXPECT_EQ(typo.exit_code, 2);
  EXPECT_NE(typo.err.find("outbound.allow"), std::string::npos) << typo.err;
  EXPECT_NE(typo.err.find("'10.1.2.3/8' is not an address or a CIDR range with zero host bits"),
            std::string::npos)
      << typo.err;
}

}  // namespace
}  // namespace twinbridge::testing
