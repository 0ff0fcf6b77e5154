#include "http/router.hpp"

#include <gtest/gtest.h>

namespace twinbridge::http {
namespace {

Handler noop() {
  return [](RequestContext&, const Request&) -> HandlerResult { co_return Response{}; };
}

Router sample() {
  Router r;
  r.add({Method::get, "/v1/principals", Auth::required, std::nullopt, noop()});
  r.add({Method::post, "/v1/principals", Auth::required, std::nullopt, noop()});
  r.add({Method::get, "/v1/principals/{id}", Auth::required, std::nullopt, noop()});
  r.add({Method::delete_, "/v1/principals/{id}", Auth::required, std::nullopt, noop()});
  r.add({Method::get, "/v1/principals/me", Auth::required, std::nullopt, noop()});
  r.add({Method::delete_, "/v1/principals/{id}/api-keys/{key}", Auth::required, std::nullopt, noop()});
  return r;
}

TEST(RouterTest, MatchesLiteralsAndParameters) {
  auto r = sample();
  auto m = r.match(Method::get, "/v1/principals/abc");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route->pattern, "/v1/principals/{id}");
  ASSERT_EQ(m->params.size(), 1u);
  EXPECT_EQ(m->params[0], (std::pair<std::string, std::string>{"id", "abc"}));
  auto k = r.match(Method::delete_, "/v1/principals/p1/api-keys/k1");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->params.size(), 2u);
}

TEST(RouterTest, ALiteralSegmentWinsOverAParameter) {
  auto r = sample();
  auto m = r.match(Method::get, "/v1/principals/me");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route->pattern, "/v1/principals/me");
  // DELETE exists only with the parameter; the literal route has no DELETE, so the parameter route answers.
  auto d = r.match(Method::delete_, "/v1/principals/me");
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, core::Errc::method_not_allowed);
}

TEST(RouterTest, UnknownPathIs404AndWrongMethodIs405WithAllowedMethods) {
  auto r = sample();
  EXPECT_EQ(r.match(Method::get, "/v2/x").error().code, core::Errc::not_found);
  EXPECT_EQ(r.match(Method::get, "/v1/principals/a/b").error().code, core::Errc::not_found);
  std::vector<Method> allowed;
  auto m = r.match(Method::put, "/v1/principals", &allowed);
  EXPECT_EQ(m.error().code, core::Errc::method_not_allowed);
  EXPECT_EQ(allowed, (std::vector<Method>{Method::get, Method::post}));
}

TEST(RouterTest, HeadUsesTheGetRoute) {
  auto r = sample();
  auto m = r.match(Method::head, "/v1/principals");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->route->method, Method::get);
}

TEST(RouterTest, PercentEncodedSegmentsAreDecodedAfterSplitting) {
  auto r = sample();
  auto m = r.match(Method::get, "/v1/principals/urn%3Adev%2Fx");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->params[0].second, "urn:dev/x");
  EXPECT_EQ(r.match(Method::get, "/v1/principals/%zz").error().code, core::Errc::bad_request);
  EXPECT_EQ(r.match(Method::get, "/v1/principals/%4").error().code, core::Errc::bad_request);
}

TEST(RouterTest, ParsesQueryStrings) {
  auto q = parse_query("a=1&b=x%20y&c&d=e+f&&");
  ASSERT_TRUE(q);
  ASSERT_EQ(q->size(), 4u);
  EXPECT_EQ((*q)[1].second, "x y");
  EXPECT_EQ((*q)[2].first, "c");
  EXPECT_EQ((*q)[3].second, "e f");
  auto bad = parse_query("a=%G1");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().fields[0].in, core::FieldIn::query);
}

TEST(RouterTest, APathParameterThatIsNotUtf8IsRefusedNamingIt) {
  auto r = sample();
  for (const std::string_view path : {"/v1/principals/%FF%FE", "/v1/principals/\xFF", "/v1/principals/%C0%AF",
                                      "/v1/principals/%ED%A0%80", "/v1/principals/%E2%82"}) {
    auto m = r.match(Method::get, path);
    ASSERT_FALSE(m) << path;
    EXPECT_EQ(m.error().code, core::Errc::bad_request);
    ASSERT_EQ(m.error().fields.size(), 1u);
    EXPECT_EQ(m.error().fields[0].in, core::FieldIn::path);
    EXPECT_EQ(m.error().fields[0].pointer, "id");
  }
  auto key = r.match(Method::delete_, "/v1/principals/p1/api-keys/%FF");
  ASSERT_FALSE(key);
  EXPECT_EQ(key.error().fields[0].pointer, "key");
  // Well-formed UTF-8 passes, percent-encoded or not.
  auto ok = r.match(Method::get, "/v1/principals/caf%C3%A9");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->params[0].second, "caf\xC3\xA9");
}

TEST(RouterTest, AQueryParameterThatIsNotUtf8IsRefusedNamingIt) {
  auto value = parse_query("a=1&actor=%C0%AF");
  ASSERT_FALSE(value);
  EXPECT_EQ(value.error().code, core::Errc::bad_request);
  EXPECT_EQ(value.error().fields[0].in, core::FieldIn::query);
  EXPECT_EQ(value.error().fields[0].pointer, "actor");
  auto raw = parse_query("system=\xFF");
  ASSERT_FALSE(raw);
  EXPECT_EQ(raw.error().fields[0].pointer, "system");
  auto name = parse_query("%FF=1");
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().fields[0].pointer, "%FF");  // as sent: the decoded name is not text
  EXPECT_TRUE(parse_query("title=caf%C3%A9&x=%E2%82%AC"));
}

}  // namespace
}  // namespace twinbridge::http
