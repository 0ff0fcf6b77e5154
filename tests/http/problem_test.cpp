#include "http/problem.hpp"
#include "http/routes.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace twinbridge::http {
namespace {

TEST(ProblemTest, EveryCodeHasAStatusAndAStableType) {
  using core::Errc;
  const std::vector<std::pair<Errc, int>> expected = {{Errc::bad_request, 400},
                                                      {Errc::unauthenticated, 401},
                                                      {Errc::forbidden, 403},
                                                      {Errc::not_found, 404},
                                                      {Errc::method_not_allowed, 405},
                                                      {Errc::not_acceptable, 406},
                                                      {Errc::conflict, 409},
                                                      {Errc::gone, 410},
                                                      {Errc::precondition_failed, 412},
                                                      {Errc::payload_too_large, 413},
                                                      {Errc::unsupported_media_type, 415},
                                                      {Errc::validation_failed, 422},
                                                      {Errc::upgrade_required, 426},
                                                      {Errc::rate_limited, 429},
                                                      {Errc::header_too_large, 431},
                                                      {Errc::internal, 500},
                                                      {Errc::unavailable, 503}};
  std::set<std::string_view> types;
  for (auto [code, status] : expected) {
    EXPECT_EQ(status_of(code), status);
    EXPECT_TRUE(problem_type(code).starts_with("urn:twinbridge:problem:"));
    types.insert(problem_type(code));
  }
  EXPECT_EQ(types.size(), expected.size());
}

TEST(ProblemTest, BodyFollowsRfc9457WithFieldPointers) {
  core::Error e(core::Errc::validation_failed, "two problems");
  e.fields.push_back({"/name", "must be a string", core::FieldIn::body});
  e.fields.push_back({"limit", "too big", core::FieldIn::query});
  auto r = problem_response(e, "/v1/x", "req-1");
  EXPECT_EQ(r.status, 422);
  EXPECT_EQ(r.content_type, "application/problem+json");
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body.at("type"), "urn:twinbridge:problem:validation-failed");
  EXPECT_EQ(body.at("title"), "Validation failed");
  EXPECT_EQ(body.at("status"), 422);
  EXPECT_EQ(body.at("detail"), "two problems");
  EXPECT_EQ(body.at("instance"), "/v1/x");
  EXPECT_EQ(body.at("request_id"), "req-1");
  EXPECT_EQ(body.at("errors").at(0).at("pointer"), "/name");
  EXPECT_EQ(body.at("errors").at(1).at("parameter"), "limit");
}

TEST(ProblemTest, RetryAfterAndAuthenticateHeaders) {
  core::Error limited(core::Errc::rate_limited, "slow down");
  limited.retry_after_seconds = 3;
  auto r = problem_response(limited, "/", "id");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0], (std::pair<std::string, std::string>{"Retry-After", "3"}));
  auto u = problem_response(core::Error(core::Errc::unauthenticated, "who?"), "/", "id");
  EXPECT_EQ(u.headers[0].first, "WWW-Authenticate");
}

TEST(ProblemTest, APathParameterIsAParameterInThePath) {
  core::Error e(core::Errc::bad_request, "bad id");
  e.fields.push_back({"id", "is not valid UTF-8", core::FieldIn::path});
  const auto body = boost::json::parse(problem_response(e, "/things/x", "r1").body).as_object();
  const auto& field = body.at("errors").as_array().at(0).as_object();
  EXPECT_EQ(field.at("parameter"), "id");
  EXPECT_EQ(field.at("in"), "path");
}

TEST(ProblemTest, WhatEchoesTheRequestIsRepairedToUtf8) {
  core::Error e(core::Errc::not_found, "twin 'urn:probe:\xFF\xFE' does not exist");
  e.fields.push_back({"\xC0\xAF", "got '\xED\xA0\x80'", core::FieldIn::query});
  const auto r = problem_response(e, "/things/urn:probe:\xFF\xFE", "req-\xFF");
  boost::system::error_code ec;
  const auto body = boost::json::parse(r.body, ec);  // Boost.JSON refuses ill-formed UTF-8
  ASSERT_FALSE(ec) << r.body;
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(body.at("detail").as_string(), "twin 'urn:probe:" + fffd + fffd + "' does not exist");
  EXPECT_EQ(body.at("instance").as_string(), "/things/urn:probe:" + fffd + fffd);
  EXPECT_EQ(body.at("request_id").as_string(), "req-" + fffd);
  EXPECT_EQ(body.at("errors").at(0).at("parameter").as_string(), fffd + fffd);
  EXPECT_EQ(body.at("errors").at(0).at("detail").as_string(), "got '" + fffd + fffd + fffd + "'");
}

}  // namespace
}  // namespace twinbridge::http

namespace twinbridge::http {
namespace {

// A page a worker serialized carries whether its text is well-formed UTF-8, so that the answer's last check
// (Api::finish) skips a large body on the I/O thread only when the worker found it so.
TEST(SerializedPageTest, APageIsMarkedCheckedOnlyWhenItsTextIsUtf8) {
  Request req;
  req.path = "/v1/twins";
  SerializedPage good{R"(["caf\u00e9", "café"])", std::nullopt, false};
  good.check_utf8();
  EXPECT_TRUE(good.utf8_checked);
  const auto ok = list_response(req, good);
  EXPECT_TRUE(ok.utf8_checked);
  EXPECT_EQ(ok.body, R"({"items":["caf\u00e9", "café"]})");

  SerializedPage bad{"[\"urn:probe:\xFF\xFE\"]", std::string("urn:x"), false};
  bad.check_utf8();
  EXPECT_FALSE(bad.utf8_checked);
  const auto unchecked = list_response(req, bad);
  EXPECT_FALSE(unchecked.utf8_checked);  // finish() scans it and answers U+FFFD in place of the bad bytes
  EXPECT_NE(unchecked.body.find("\"next_cursor\":"), std::string::npos);
}

}  // namespace
}  // namespace twinbridge::http
