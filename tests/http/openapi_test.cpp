// The OpenAPI document describes exactly the routes the server has: a route without a description, or a
// description without a route, fails here.

#include "http/openapi.hpp"

#include <gtest/gtest.h>

#include <boost/asio/thread_pool.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>

#include "core/time.hpp"
#include "http/api.hpp"
#include "store/sqlite_store.hpp"

namespace twinbridge::http {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class OpenApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("tb-openapi-" + core::new_uuid_v7());
    auto s = store::SqliteStore::open({path_ / "db"});
    ASSERT_TRUE(s);
    store_ = std::move(*s);
    auth_ = std::make_unique<Authenticator>(*store_, AuthSettings{}, clock_);
    const registry::MonitorSettings monitor_settings;
    monitor_ = std::make_unique<registry::SystemMonitor>(*store_, clock_, monitor_settings);
    feed_ = std::make_unique<store::ChangeFeed>(*store_);
    hub_ = std::make_unique<dtif::StreamHub>(*feed_, reader_.get_executor());
    twins_ = std::make_unique<dtif::TwinService>(*store_, twin_index_, *hub_, *monitor_, clock_,
                                                 connect::OutboundGuard{});
    api_ = std::make_unique<Api>(*store_, *feed_, *hub_, *twins_, *auth_, metrics_, clock_, *monitor_,
                                 ApiSettings{}, nullptr);
    doc_ = boost::json::parse(openapi_document()).as_object();
  }
  void TearDown() override {
    api_.reset();
    auth_.reset();
    store_.reset();
    std::filesystem::remove_all(path_);
  }

  std::filesystem::path path_;
  core::SystemClock clock_;
  Metrics metrics_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<store::ChangeFeed> feed_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<registry::SystemMonitor> monitor_;
  dtif::TwinIndex twin_index_;
  boost::asio::thread_pool reader_{1};
  std::unique_ptr<dtif::StreamHub> hub_;
  std::unique_ptr<dtif::TwinService> twins_;
  std::unique_ptr<Api> api_;
  boost::json::object doc_;
};

TEST_F(OpenApiTest, IsOpenApi31) {
  EXPECT_EQ(doc_.at("openapi"), "3.1.0");
  EXPECT_TRUE(doc_.at("info").as_object().contains("version"));
}

TEST_F(OpenApiTest, EveryRouteIsDescribed) {
  const auto& paths = doc_.at("paths").as_object();
  for (const auto& route : api_->router().routes()) {
    const auto* item = paths.if_contains(route.pattern);
    ASSERT_NE(item, nullptr) << "route " << route.pattern << " is not in openapi.json";
    const auto method = lower(to_string(route.method));
    const auto* op = item->as_object().if_contains(method);
    ASSERT_NE(op, nullptr) << to_string(route.method) << " " << route.pattern << " is not in openapi.json";
    const auto& o = op->as_object();
    EXPECT_TRUE(o.contains("operationId")) << route.pattern;
    const auto& responses = o.at("responses").as_object();
    // Authenticated routes document 401 and 403; every route documents its success.
    if (route.auth == Auth::required) {
      EXPECT_TRUE(responses.contains("401")) << route.pattern;
      EXPECT_TRUE(responses.contains("403")) << route.pattern;
    } else {
      ASSERT_TRUE(o.contains("security")) << route.pattern << " must declare security: []";
      EXPECT_TRUE(o.at("security").as_array().empty());
    }
    // A WebSocket endpoint's success is 101 Switching Protocols.
    const bool has_success = std::any_of(responses.begin(), responses.end(), [](const auto& r) {
      return r.key().starts_with("2") || r.key() == "101";
    });
    EXPECT_TRUE(has_success) << route.pattern;
  }
}

TEST_F(OpenApiTest, EveryDescribedOperationExists) {
  for (const auto& [path, item] : doc_.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      if (method == "parameters") continue;
      const auto found = std::any_of(
          api_->router().routes().begin(), api_->router().routes().end(),
          [&](const Route& r) { return r.pattern == path && lower(to_string(r.method)) == method; });
      EXPECT_TRUE(found) << method << " " << std::string_view(path) << " is described but has no route";
    }
  }
}

TEST_F(OpenApiTest, EveryReferenceResolves) {
  // Walk the document and check each "$ref" is a JSON pointer to a value under components (a component, or a
  // part of one such as the $defs of a published schema).
  const boost::json::value doc(doc_);
  std::vector<const boost::json::value*> stack{&doc.at("paths"), &doc.at("components")};
  while (!stack.empty()) {
    const auto* v = stack.back();
    stack.pop_back();
    if (const auto* o = v->if_object()) {
      if (const auto* ref = o->if_contains("$ref"); ref != nullptr && ref->is_string()) {
        const std::string r(ref->get_string());
        ASSERT_TRUE(r.starts_with("#/components/")) << r;
        boost::system::error_code ec;
        EXPECT_NE(doc.find_pointer(std::string_view(r).substr(1), ec), nullptr) << r << " does not resolve";
      }
      for (const auto& m : *o) stack.push_back(&m.value());
    } else if (const auto* a = v->if_array()) {
      for (const auto& item : *a) stack.push_back(&item);
    }
  }
}

}  // namespace
}  // namespace twinbridge::http
