#pragma once
// A GoogleTest fixture whose tests share one `twinbridge serve` (started in SetUpTestSuite with the admin
// token kAdmin, stopped in TearDownTestSuite), with helpers used across the HTTP integration tests.

#include <gtest/gtest.h>

#include <boost/json/object.hpp>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "support/http_client.hpp"
#include "support/server_process.hpp"

namespace twinbridge::testing {

inline const std::string kAdmin = "test-admin-token-0123456789";

// The Content-Type of a W3C WoT Thing Description.
inline const std::vector<std::pair<std::string, std::string>> kTd = {{"Content-Type", "application/td+json"}};

// A small valid TD (one number property with an HTTP form) titled `title`, without an id.
inline boost::json::object sensor(const std::string& title) {
  return {{"@context", "https://www.w3.org/2022/wot/td/v1.1"},
          {"title", title},
          {"securityDefinitions", {{"nosec_sc", {{"scheme", "nosec"}}}}},
          {"security", "nosec_sc"},
          {"properties",
           {{"temperature",
             {{"type", "number"}, {"forms", boost::json::array{{{"href", "https://sensors.example/t"}}}}}}}}};
}

class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { start_server(); }
  // For fixtures that need other settings: call from their own SetUpTestSuite.
  static void start_server(std::vector<std::string> args = {}) {
    dir_ = std::make_unique<TempDir>();
    server_ = std::make_unique<ServerProcess>(
        dir_->path(), std::move(args),
        std::map<std::string, std::string>{{"TWINBRIDGE_ADMIN_TOKEN", kAdmin}});
  }
  static void TearDownTestSuite() {
    server_.reset();
    dir_.reset();
  }
  static std::uint16_t port() { return server_->port(); }

  // Creates a principal of `kind` with id and name `id`; returns its API key.
  static std::string principal(const std::string& id, const std::string& kind) {
    auto r = call(port(), "POST", "/v1/principals", kAdmin,
                  R"({"id":")" + id + R"(","kind":")" + kind + R"(","name":")" + id + "\"}");
    EXPECT_EQ(r.status, 201) << r.body;
    const auto body = r.json();
    return std::string(body.at("api_key").at("token").as_string());
  }

  static inline std::unique_ptr<TempDir> dir_;
  static inline std::unique_ptr<ServerProcess> server_;
};

}  // namespace twinbridge::testing
