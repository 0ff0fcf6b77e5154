// Integration tests of the outbound guard (OWASP API7, SSRF) against the real server: registrations whose
// endpoint URLs point inward are refused with 422 at the URL's pointer, for both kinds of systems and for
// create, replace and patch; a URL stored while the operator allowed loopback is never connected to once the
// server runs without that allowance.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <thread>

#include "support/http_client.hpp"
#include "support/server_process.hpp"
#include "support/shared_server.hpp"
#include "support/upstream_server.hpp"

namespace twinbridge::testing {
namespace {

using namespace std::chrono_literals;

// Every URL of the SSRF finding, and the schemes it found accepted.
const char* const kInwardUrls[] = {
    "http://127.0.0.1:8470/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://localhost/",
    "http://api.localhost./",
    "http://evil.example@127.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://2852039166/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://metadata.google.internal/",
    "file:///etc/passwd",
    "gopher://example.com:70/_stats",
};

std::string third_party(const std::string& id, const boost::json::object& endpoints) {
  return boost::json::serialize(boost::json::object{
      {"id", id},
      {"type", "payment"},
      {"name", id},
      {"service_charge", {{"model", "free"}}},
      {"service_level", {{"availability", 99.0}}},
      {"apis", boost::json::array{{{"name", "ping"}, {"method", "GET"}, {"path", "/ping"}}}},
      {"endpoints", endpoints}});
}

std::string twin_system(const std::string& id, const boost::json::object& endpoints) {
  return boost::json::serialize(
      boost::json::object{{"id", id}, {"type", "factory"}, {"name", id}, {"endpoints", endpoints}});
}

// The pointers of a 422 problem's errors, and the detail of the first.
std::pair<std::vector<std::string>, std::string> field_errors(const HttpResponse& r) {
  std::vector<std::string> pointers;
  std::string first;
  const auto problem = r.json();
  for (const auto& e : problem.at("errors").as_array()) {
    pointers.emplace_back(e.at("pointer").as_string());
    if (first.empty()) first = std::string(e.at("detail").as_string());
  }
  return {pointers, first};
}

class OutboundTest : public SharedServerTest {
 protected:
  // The default policy: nothing allowed (an empty flag is the default).
  static void SetUpTestSuite() { start_server({"--outbound-allow", ""}); }
};

TEST_F(OutboundTest, EveryInwardUrlIsRefusedAtRegistrationWithItsPointer) {
  const boost::json::object good{{"base_url", "https://pay.example.com/api"}};
  for (const auto* member : {"base_url", "health_url", "auth_url"}) {
    for (const auto* url : kInwardUrls) {
      auto endpoints = good;
      endpoints[member] = url;
      auto r = call(port(), "POST", "/v1/third-party-systems", kAdmin, third_party("inward", endpoints));
      ASSERT_EQ(r.status, 422) << member << " " << url << ": " << r.body;
      const auto [pointers, detail] = field_errors(r);
      EXPECT_EQ(pointers, std::vector<std::string>{std::string("/endpoints/") + member})
          << url << ": " << r.body;
      EXPECT_FALSE(detail.empty());
    }
  }
  for (const auto* member : {"base_url", "health_url"}) {
    for (const auto* url : kInwardUrls) {
      auto endpoints = good;
      endpoints[member] = url;
      auto r = call(port(), "POST", "/v1/twin-systems", kAdmin, twin_system("inward-twins", endpoints));
      ASSERT_EQ(r.status, 422) << member << " " << url << ": " << r.body;
      EXPECT_EQ(field_errors(r).first, std::vector<std::string>{std::string("/endpoints/") + member}) << url;
    }
  }
  EXPECT_EQ(call(port(), "GET", "/v1/third-party-systems/inward", kAdmin).status, 404);
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/inward-twins", kAdmin).status, 404);
}

TEST_F(OutboundTest, TheProblemSaysWhy) {
  auto r = call(port(), "POST", "/v1/third-party-systems", kAdmin,
                third_party("why", {{"base_url", "https://pay.example.com/api"},
                                    {"health_url", "http://169.254.169.254/latest/meta-data/"},
                                    {"auth_url", "http://0177.0.0.1/token"}}));
  ASSERT_EQ(r.status, 422) << r.body;
  const auto problem = r.json();
  const auto& errors = problem.at("errors").as_array();
  ASSERT_EQ(errors.size(), 2u) << r.body;
  for (const auto& e : errors) {
    if (e.at("pointer") == "/endpoints/health_url") {
      EXPECT_EQ(e.at("detail"),
                "refused by the outbound policy: 169.254.169.254 is a cloud metadata address");
    } else {
      EXPECT_EQ(e.at("pointer"), "/endpoints/auth_url");
      EXPECT_NE(
          std::string(e.at("detail").as_string()).find("non-standard spelling of the IPv4 address 127.0.0.1"),
          std::string::npos)
          << e.at("detail");
    }
  }
}

TEST_F(OutboundTest, ReplaceAndPatchAreCheckedToo) {
  const std::string path = "/v1/third-party-systems/outward";
  auto created = call(port(), "POST", "/v1/third-party-systems", kAdmin,
                      third_party("outward", {{"base_url", "https://pay.example.com/api"}}));
  ASSERT_EQ(created.status, 201) << created.body;
  auto put = call(port(), "PUT", path, kAdmin,
                  third_party("outward", {{"base_url", "https://pay.example.com/api"},
                                          {"health_url", "http://[::ffff:127.0.0.1]:8470/healthz"}}));
  ASSERT_EQ(put.status, 422) << put.body;
  EXPECT_EQ(field_errors(put).first, std::vector<std::string>{"/endpoints/health_url"});
  auto patched =
      call(port(), "PATCH", path, kAdmin, R"({"endpoints":{"auth_url":"http://localhost:8470/token"}})",
           {{"Content-Type", "application/merge-patch+json"}});
  ASSERT_EQ(patched.status, 422) << patched.body;
  EXPECT_EQ(field_errors(patched).first, std::vector<std::string>{"/endpoints/auth_url"});
  auto stored = call(port(), "GET", path, kAdmin).json();
  EXPECT_EQ(stored.at("endpoints").as_object().size(), 1u);
}

TEST_F(OutboundTest, PublicUrlsAreAccepted) {
  auto r = call(port(), "POST", "/v1/twin-systems", kAdmin,
                twin_system("public-plant", {{"base_url", "https://93.184.216.34:8443/plant"}}));
  EXPECT_EQ(r.status, 201) << r.body;
  // (No health_url: nothing here probes the internet.)
  r = call(port(), "POST", "/v1/third-party-systems", kAdmin,
           third_party("public-pay", {{"base_url", "https://pay.example.com/api"},
                                      {"auth_url", "https://[2606:4700::1111]/token"}}));
  EXPECT_EQ(r.status, 201) << r.body;
}

// A TD's forms name the URLs twinbridge will call (acquisition now, writes and invocations later): a form
// whose href, resolved against the TD's base, points inward is refused when the TD is registered, at the
// href's pointer, in a twin system's registration, at /things and on replace; other schemes, templated hosts
// and public URLs pass.
TEST_F(OutboundTest, TdFormUrlsThatPointInwardAreRefusedAtTheirHref) {
  auto td = [](const std::string& id, const std::string& base, const std::string& property_href,
               const std::string& action_href) {
    boost::json::object t{{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
                          {"id", id},
                          {"title", id},
                          {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
                          {"security", "nosec_sc"},
                          {"properties",
                           {{"level",
                             {{"type", "number"},
                              {"forms", boost::json::array{{{"href", "mqtt://127.0.0.1/level"}},
                                                           {{"href", property_href}}}}}}}},
                          {"actions", {{"stop", {{"forms", boost::json::array{{{"href", action_href}}}}}}}}};
    if (!base.empty()) t["base"] = base;
    return t;
  };
  const auto system = boost::json::serialize(boost::json::object{
      {"id", "td-urls"},
      {"type", "factory"},
      {"name", "td-urls"},
      {"endpoints", {{"base_url", "https://plant.example"}}},
      {"twins",
       boost::json::array{td("urn:td-urls:a", "http://10.0.0.5/", "level", "https://plant.example/stop"),
                          td("urn:td-urls:b", "", "http://{host}/level", "http://[::1]/stop")}}});
  auto r = call(port(), "POST", "/v1/twin-systems", kAdmin, system);
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(field_errors(r).first, (std::vector<std::string>{"/twins/0/properties/level/forms/1/href",
                                                             "/twins/1/actions/stop/forms/0/href"}))
      << r.body;
  EXPECT_EQ(call(port(), "GET", "/v1/twin-systems/td-urls", kAdmin).status, 404);

  auto put = call(port(), "PUT", "/things/urn:td-urls:c", kAdmin,
                  boost::json::serialize(td("urn:td-urls:c", "https://plant.example/", "level",
                                            "http://169.254.169.254/latest/meta-data/")),
                  kTd);
  ASSERT_EQ(put.status, 400) << put.body;  // the WoT directory's answer to an invalid TD
  EXPECT_EQ(field_errors(put).first, std::vector<std::string>{"/actions/stop/forms/0/href"});
  EXPECT_NE(field_errors(put).second.find("cloud metadata"), std::string::npos) << put.body;

  // Public URLs (and the MQTT form, whose broker is the configured one) pass; a replace is checked again.
  auto good = td("urn:td-urls:d", "https://plant.example/", "level", "https://93.184.216.34/stop");
  ASSERT_EQ(call(port(), "PUT", "/things/urn:td-urls:d", kAdmin, boost::json::serialize(good), kTd).status,
            201);
  good["base"] = "http://localhost:8080/";
  auto replaced = call(port(), "PUT", "/things/urn:td-urls:d", kAdmin, boost::json::serialize(good), kTd);
  ASSERT_EQ(replaced.status, 400) << replaced.body;
  EXPECT_EQ(field_errors(replaced).first, std::vector<std::string>{"/properties/level/forms/1/href"});
  EXPECT_EQ(call(port(), "GET", "/things/urn:td-urls:d", kAdmin).json().at("base"), "https://plant.example/");
}

// Registered while the operator allowed loopback, the system is monitored; after a restart without that
// allowance the stored URL is refused at connect time, before any connection: the upstream sees no request.
TEST(OutboundRestartTest, AStoredLoopbackUrlIsNotProbedOnceLoopbackIsRefused) {
  TempDir data;
  const std::map<std::string, std::string> env{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}};
  UpstreamServer upstream([](const UpstreamRequest&) {
    return UpstreamReply{200, {{"Content-Type", "application/health+json"}}, R"({"status":"pass"})"};
  });
  const std::string path = "/v1/third-party-systems/inward-later";
  auto state_of = [&](std::uint16_t port) {
    auto r = call(port, "GET", path + "/status", kAdmin);
    return r.status == 200 ? r.json() : boost::json::value();
  };
  auto wait_for = [&](std::uint16_t port, const char* state) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    boost::json::value last;
    while (std::chrono::steady_clock::now() < deadline) {
      last = state_of(port);
      if (last.is_object() && last.at("state") == state) return last;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "not " << state << ": " << boost::json::serialize(last);
    return last;
  };
  const std::vector<std::string> fast{"--monitor-min-interval-ms", "50"};
  {
    auto args = fast;
    args.insert(args.end(), {"--outbound-allow", "loopback"});
    ServerProcess first(data.path(), args, env);
    auto reg =
        call(first.port(), "POST", "/v1/third-party-systems", kAdmin,
             boost::json::serialize(boost::json::object{
                 {"id", "inward-later"},
                 {"type", "monitored"},
                 {"name", "inward later"},
                 {"service_charge", {{"model", "free"}}},
                 {"service_level", {{"availability", 99.0}}},
                 {"apis", boost::json::array{{{"name", "ping"}, {"method", "GET"}, {"path", "/ping"}}}},
                 {"endpoints", {{"base_url", upstream.url("/")}, {"health_url", upstream.url("/health")}}},
                 {"monitoring", {{"interval_s", 0.05}, {"failure_threshold", 1}}}}));
    ASSERT_EQ(reg.status, 201) << reg.body;
    wait_for(first.port(), "up");
    EXPECT_EQ(first.stop(SIGKILL), 128 + SIGKILL);
  }
  const auto probed = upstream.requests();
  ASSERT_GT(probed, 0u);
  auto args = fast;
  args.insert(args.end(), {"--outbound-allow", ""});
  ServerProcess second(data.path(), args, env);
  const auto status = wait_for(second.port(), "down");
  ASSERT_TRUE(status.is_object());
  const std::string reason(status.at("reason").as_string());
  EXPECT_NE(reason.find("refused by the outbound policy: 127.0.0.1 is a loopback address"), std::string::npos)
      << reason;
  EXPECT_EQ(upstream.requests(), probed);
}

}  // namespace
}  // namespace twinbridge::testing
