#include "connect/td_http.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <future>
#include <string>
#include <thread>
#include <tuple>

#include "core/thing_description.hpp"
#include "support/upstream_server.hpp"

namespace twinbridge::connect {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using core::Errc;
using testing::UpstreamReply;
using testing::UpstreamRequest;
using testing::UpstreamServer;

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// A TD from JSON text in which every "$BASE" stands for `base`; the TD must pass twinbridge's own validation,
// so that every test works on a TD that twinbridge would have stored.
json::object thing(std::string text, const std::string& base = "http://things.example") {
  for (auto at = text.find("$BASE"); at != std::string::npos; at = text.find("$BASE", at + base.size())) {
    text.replace(at, 5, base);
  }
  auto doc = json::parse(text);
  auto td = core::parse_thing_description(doc);
  if (!td) {
    std::string why = td.error().detail;
    for (const auto& f : td.error().fields) why += "; " + f.pointer + ": " + f.detail;
    ADD_FAILURE() << "not a valid TD: " << why;
  }
  return doc.as_object();
}

// A TD with the given properties, actions and Thing-level forms, secured by nosec.
json::object thing_with(std::string_view properties, std::string_view actions = "{}",
                        std::string_view forms = "[]", const std::string& base = "http://things.example") {
  return thing(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "lamp", "base": "$BASE",
                   "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
                   "properties": )" +
                   std::string(properties) + R"(, "actions": )" + std::string(actions) +
                   (forms == "[]" ? std::string() : R"(, "forms": )" + std::string(forms)) + "}",
               base);
}

// RFC 6570 §3.2's example variables.
UriVariables rfc_variables() {
  return {{"var", "value"}, {"hello", "Hello World!"}, {"empty", ""}, {"path", "/foo/bar"}, {"x", 1024},
          {"y", 768}};
}

TEST(TdHttp, PercentEncodesAComponentAndMakesBasicCredentials) {
  EXPECT_EQ(percent_encoded("urn:dev:ops:boiler 1/ä~_.-"), "urn%3Adev%3Aops%3Aboiler%201%2F%C3%A4~_.-");
  // RFC 7617 2: Aladdin / open sesame.
  EXPECT_EQ(basic_credentials("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
  EXPECT_EQ(basic_credentials("", ""), "Og==");
}

TEST(UriTemplate, ExpandsTheExamplesOfRfc6570UpToLevel3) {
  const std::vector<std::pair<std::string, std::string>> examples{
      // Level 1
      {"{var}", "value"},
      {"{hello}", "Hello%20World%21"},
      // Level 2
      {"{+var}", "value"},
      {"{+hello}", "Hello%20World!"},
      {"{+path}/here", "/foo/bar/here"},
      {"here?ref={+path}", "here?ref=/foo/bar"},
      {"X{#var}", "X#value"},
      {"X{#hello}", "X#Hello%20World!"},
      // Level 3
      {"map?{x,y}", "map?1024,768"},
      {"{x,hello,y}", "1024,Hello%20World%21,768"},
      {"{+x,hello,y}", "1024,Hello%20World!,768"},
      {"{+path,x}/here", "/foo/bar,1024/here"},
      {"{#x,hello,y}", "#1024,Hello%20World!,768"},
      {"{#path,x}/here", "#/foo/bar,1024/here"},
      {"X{.var}", "X.value"},
      {"X{.x,y}", "X.1024.768"},
      {"{/var}", "/value"},
      {"{/var,x}/here", "/value/1024/here"},
      {"{;x,y}", ";x=1024;y=768"},
      {"{;x,y,empty}", ";x=1024;y=768;empty"},
      {"{?x,y}", "?x=1024&y=768"},
      {"{?x,y,empty}", "?x=1024&y=768&empty="},
      {"?fixed=yes{&x}", "?fixed=yes&x=1024"},
      {"{&x,y,empty}", "&x=1024&y=768&empty="},
      // §3.2.1: undefined variables are left out, an empty string is not.
      {"?{x,empty}", "?1024,"},
      {"?{x,undef}", "?1024"},
      {"?{undef,y}", "?768"},
      {"{undef}{?undef}{&undef}{/undef}", ""},
      {"{?undef,x}", "?x=1024"},
  };
  const auto values = rfc_variables();
  for (const auto& [text, expected] : examples) {
    auto t = UriTemplate::parse(text);
    ASSERT_TRUE(t) << text << ": " << t.error().detail;
    auto out = t->expand(values);
    ASSERT_TRUE(out) << text;
    EXPECT_EQ(*out, expected) << text;
  }
}

TEST(UriTemplate, EncodesValuesAsUtf8AndWritesNumbersAndBooleansPlainly) {
  const UriVariables values{{"city", "Zürich"}, {"t", 21.5},     {"on", true},
                            {"pct", "50%"},     {"pre", "%41b"}, {"n", json::value(nullptr)}};
  const std::vector<std::pair<std::string, std::string>> examples{
      {"/w/{city}", "/w/Z%C3%BCrich"},
      {"{?t,on}", "?t=21.5&on=true"},
      {"{pct}|{+pct}", "50%25%7C50%25"},  // a lone '%' is encoded even where reserved characters are allowed
      {"{pre},{+pre}", "%2541b,%41b"},    // a percent-encoded triplet passes only with + and #
      {"a{?n}", "a"},                     // null: not given
      {"/ü{/city}", "/%C3%BC/Z%C3%BCrich"},
  };
  for (const auto& [text, expected] : examples) {
    auto t = UriTemplate::parse(text);
    ASSERT_TRUE(t) << text << ": " << t.error().detail;
    EXPECT_EQ(t->expand(values).value(), expected) << text;
  }
}

TEST(UriTemplate, RefusesWhatItDoesNotSupport) {
  for (const auto* text :
       {"/a{b", "/a}b", "{}", "{=x}", "{!x}", "{var:3}", "{list*}", "{a b}", "{a,}", "{.a..b}", "{a%zz}"}) {
    auto t = UriTemplate::parse(text);
    ASSERT_FALSE(t) << text;
    EXPECT_EQ(t.error().code, Errc::validation_failed) << text;
  }
  EXPECT_TRUE(contains(UriTemplate::parse("{var:3}").error().detail, "level 4"));
  auto t = UriTemplate::parse("{a}{?b,c}").value();
  EXPECT_EQ(t.variables(), (std::vector<std::string>{"a", "b", "c"}));
  auto out = t.expand({{"a", json::array{1, 2}}});
  ASSERT_FALSE(out);
  EXPECT_EQ(out.error().code, Errc::bad_request);
}

// The URLs of a TD's forms as the outbound guard sees them at registration: resolved against the base, only
// http and https, templated hosts left to the call; the refused ones at their href's pointer.
TEST(TdHttp, RefusedFormUrlsAreTheInwardHttpOnesAtTheirPointer) {
  const auto td = json::parse(R"({
      "base": "http://10.1.2.3:8080/plant/",
      "forms": [{"href": "all"}, {"href": "https://plant.example/all"}],
      "properties": {
        "level": {"forms": [{"href": "mqtt://127.0.0.1/level"}, {"href": "coap://[::1]/level"},
                            {"href": "https://93.184.216.34/level{?unit}"}]},
        "mode": {"forms": [{"href": "http://{gateway}/mode"}, {"href": "http://localhost/mode"}]},
        "a~b/c": {"forms": [{"href": "/other{?x}"}]}
      },
      "actions": {"stop": {"forms": [{"href": "http://169.254.169.254/latest"},
                                     {"href": "https://plant.example/stop"}]}},
      "events": {"alarm": {"forms": [{"href": "https://[fe80::1]/alarm"}]}}
    })")
                      .as_object();
  OutboundGuard nothing;
  std::vector<std::string> pointers;
  for (const auto& e : refused_form_urls(td, nothing, "/twins/3")) {
    pointers.push_back(e.pointer);
    EXPECT_TRUE(e.detail.starts_with("refused by the outbound policy")) << e.detail;
  }
  EXPECT_EQ(pointers, (std::vector<std::string>{
                          "/twins/3/forms/0/href", "/twins/3/properties/mode/forms/1/href",
                          "/twins/3/properties/a~0b~1c/forms/0/href", "/twins/3/actions/stop/forms/0/href",
                          "/twins/3/events/alarm/forms/0/href"}));
  auto allowed = OutboundGuard::from_allow_list("private,loopback,169.254.169.254,fe80::/10");
  ASSERT_TRUE(allowed) << allowed.error().detail;
  EXPECT_TRUE(refused_form_urls(td, *allowed, "").empty());
}

TEST(TdOperationNames, RoundTrip) {
  for (const auto* name :
       {"readproperty", "readallproperties", "readmultipleproperties", "writeproperty", "invokeaction"}) {
    EXPECT_EQ(to_string(parse_td_operation(name).value()), name);
  }
  EXPECT_FALSE(parse_td_operation("observeproperty"));
}

TEST(SelectForm, TakesOpAsAStringOrAnArray) {
  const auto td = thing_with(R"({"on": {"type": "boolean", "forms": [
      {"href": "/write", "op": "writeproperty"},
      {"href": "/read", "op": ["observeproperty", "readproperty"]}]}})");
  auto read = select_form(td, TdOperation::readproperty, "on");
  ASSERT_TRUE(read) << read.error().detail;
  EXPECT_EQ(read->href, "/read");
  EXPECT_EQ(read->pointer, "/properties/on/forms/1");
  auto write = select_form(td, TdOperation::writeproperty, "on");
  ASSERT_TRUE(write) << write.error().detail;
  EXPECT_EQ(write->href, "/write");
}

TEST(SelectForm, AFormWithoutOpHasTheTd11Defaults) {
  const auto td = thing_with(R"({
      "on": {"type": "boolean", "forms": [{"href": "/on"}]},
      "level": {"type": "integer", "readOnly": true, "forms": [{"href": "/level"}]},
      "secret": {"type": "string", "writeOnly": true, "forms": [{"href": "/secret"}]}})",
                             R"({"toggle": {"forms": [{"href": "/toggle"}]}})");
  EXPECT_EQ(select_form(td, TdOperation::readproperty, "on").value().href, "/on");
  EXPECT_EQ(select_form(td, TdOperation::writeproperty, "on").value().href, "/on");
  EXPECT_EQ(select_form(td, TdOperation::readproperty, "level").value().href, "/level");
  EXPECT_EQ(select_form(td, TdOperation::writeproperty, "secret").value().href, "/secret");
  EXPECT_EQ(select_form(td, TdOperation::invokeaction, "toggle").value().href, "/toggle");

  auto write = select_form(td, TdOperation::writeproperty, "level");
  ASSERT_FALSE(write);
  EXPECT_EQ(write.error().code, Errc::validation_failed);
  EXPECT_EQ(write.error().detail, "the property 'level' is read-only: it has no form for writeproperty");
  auto read = select_form(td, TdOperation::readproperty, "secret");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().detail, "the property 'secret' is write-only: it has no form for readproperty");
}

TEST(SelectForm, TakesTheFirstUsableFormAndSkipsOtherSchemesAndContentTypes) {
  const auto td = thing_with(R"({"temp": {"type": "number", "forms": [
      {"href": "mqtt://broker.example/lamp/temp", "op": "readproperty"},
      {"href": "coap://lamp.example/temp"},
      {"href": "/temp.cbor", "contentType": "application/cbor"},
      {"href": "/temp.xml", "response": {"contentType": "application/xml"}},
      {"href": "https://lamp.example/temp", "contentType": "application/td+json; charset=utf-8"},
      {"href": "/temp-second"}]}})");
  auto form = select_form(td, TdOperation::readproperty, "temp");
  ASSERT_TRUE(form) << form.error().detail;
  EXPECT_EQ(form->pointer, "/properties/temp/forms/4");
  EXPECT_EQ(form->content_type, "application/td+json; charset=utf-8");
  EXPECT_EQ(form->method, "GET");
}

TEST(SelectForm, SaysThatAnHttpFormIsNeededWhenThereIsNone) {
  const auto td = thing_with(R"({"temp": {"type": "number", "forms": [
      {"href": "mqtt://broker.example/lamp/temp", "op": "readproperty"},
      {"href": "/temp", "op": "readproperty", "contentType": "application/cbor"}]}})",
                             "{}", "[]", "coaps://lamp.example/");
  auto form = select_form(td, TdOperation::readproperty, "temp");
  ASSERT_FALSE(form);
  EXPECT_EQ(form.error().code, Errc::validation_failed);
  EXPECT_EQ(
      form.error().detail,
      "the property 'temp' has no form for readproperty that twinbridge can use: twinbridge needs an HTTP "
      "form (http or https) with JSON content for this operation, and /properties/temp/forms/0 uses mqtt and "
      "/properties/temp/forms/1 uses coaps");
  auto cbor =
      select_form(thing_with(R"({"t": {"forms": [{"href": "/t", "contentType": "application/cbor"}]}})"),
                  TdOperation::readproperty, "t");
  ASSERT_FALSE(cbor);
  EXPECT_TRUE(contains(cbor.error().detail, "/properties/t/forms/0 uses application/cbor"))
      << cbor.error().detail;
}

TEST(SelectForm, ARelativeHrefNeedsABase) {
  auto td = thing(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "lamp",
                      "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
                      "properties": {"on": {"forms": [{"href": "props/on"}]}}})");
  auto form = select_form(td, TdOperation::readproperty, "on");
  ASSERT_FALSE(form);
  EXPECT_TRUE(contains(form.error().detail, "has a relative href and the Thing Description no base"))
      << form.error().detail;
}

TEST(SelectForm, MissingAffordancesAndWrongNames) {
  const auto td =
      thing_with(R"({"on": {"forms": [{"href": "/on"}]}})", R"({"go": {"forms": [{"href": "/go"}]}})");
  auto missing = select_form(td, TdOperation::readproperty, "off");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_EQ(missing.error().detail, "the Thing Description has no property 'off'");
  auto action = select_form(td, TdOperation::invokeaction, "on");
  ASSERT_FALSE(action);
  EXPECT_EQ(action.error().detail, "the Thing Description has no action 'on'");
  EXPECT_EQ(select_form(td, TdOperation::readproperty, "").error().code, Errc::bad_request);
  EXPECT_EQ(select_form(td, TdOperation::readallproperties, "on").error().code, Errc::bad_request);
  auto all = select_form(td, TdOperation::readallproperties, "");
  ASSERT_FALSE(all);
  EXPECT_EQ(all.error().detail, "the Thing has no form for readallproperties");
}

TEST(SelectForm, ThingLevelOperationsUseTheThingsForms) {
  const auto td = thing_with(R"({"on": {"forms": [{"href": "/on"}]}})", "{}",
                             R"([{"href": "/all", "op": ["readallproperties", "writeallproperties"]},
                                 {"href": "/some", "op": "readmultipleproperties"}])");
  EXPECT_EQ(select_form(td, TdOperation::readallproperties, "").value().href, "/all");
  EXPECT_EQ(select_form(td, TdOperation::readmultipleproperties, "").value().pointer, "/forms/1");
}

TEST(SelectForm, MethodsDefaultPerOperationAndHtvMethodNameWins) {
  const auto td = thing_with(
      R"({"on": {"forms": [{"href": "/on"}]},
                                 "mode": {"forms": [{"href": "/mode", "op": "writeproperty", "htv:methodName": "POST"},
                                                    {"href": "/mode", "op": "readproperty", "htv:methodName": "POST"}]}})",
      R"({"go": {"forms": [{"href": "/go"}]}, "stop": {"forms": [{"href": "/stop", "htv:methodName": "DELETE"}]}})",
      R"([{"href": "/all", "op": ["readallproperties", "readmultipleproperties"]}])");
  EXPECT_EQ(select_form(td, TdOperation::readproperty, "on").value().method, "GET");
  EXPECT_EQ(select_form(td, TdOperation::writeproperty, "on").value().method, "PUT");
  EXPECT_EQ(select_form(td, TdOperation::invokeaction, "go").value().method, "POST");
  EXPECT_EQ(select_form(td, TdOperation::readallproperties, "").value().method, "GET");
  EXPECT_EQ(select_form(td, TdOperation::readmultipleproperties, "").value().method, "GET");
  EXPECT_EQ(select_form(td, TdOperation::writeproperty, "mode").value().method, "POST");
  EXPECT_EQ(select_form(td, TdOperation::readproperty, "mode").value().method, "POST");
  EXPECT_EQ(select_form(td, TdOperation::invokeaction, "stop").value().method, "DELETE");
}

TEST(SelectForm, SecurityOfTheFormWinsAndUriVariablesMerge) {
  const auto td = thing(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "lamp",
      "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}, "basic_sc": {"scheme": "basic"}},
      "security": ["basic_sc"], "base": "http://things.example/",
      "uriVariables": {"unit": {"type": "string"}, "id": {"type": "string"}},
      "properties": {"temp": {"uriVariables": {"unit": {"type": "integer"}},
                              "forms": [{"href": "t{?unit}", "security": "nosec_sc"}]},
                     "hum": {"forms": [{"href": "h"}]}}})");
  auto temp = select_form(td, TdOperation::readproperty, "temp").value();
  EXPECT_EQ(temp.security, std::vector<std::string>{"nosec_sc"});
  EXPECT_EQ(json::serialize(temp.uri_variables), R"({"unit":{"type":"integer"},"id":{"type":"string"}})");
  EXPECT_EQ(select_form(td, TdOperation::readproperty, "hum").value().security,
            std::vector<std::string>{"basic_sc"});
}

TdCall make(TdOperation op, std::string affordance = {}, UriVariables variables = {},
            std::optional<json::value> input = std::nullopt, std::vector<std::string> properties = {}) {
  TdCall call;
  call.op = op;
  call.affordance = std::move(affordance);
  call.uri_variables = std::move(variables);
  call.input = std::move(input);
  call.properties = std::move(properties);
  return call;
}

// Against a real HTTP upstream on loopback (allowed by the test's outbound guard).
class TdHttpTest : public ::testing::Test {
 protected:
  TdHttpTest() : work_(boost::asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  ~TdHttpTest() override {
    work_.reset();
    thread_.join();
  }

  static HttpClientOptions loopback_allowed() {
    HttpClientOptions options;
    options.outbound = OutboundGuard::from_allow_list("loopback").value();
    return options;
  }

  core::Result<TdResponse> perform(const json::object& td, const TdCall& call,
                                   const TdCredentials& credentials = {}, TdHttpClient* client = nullptr) {
    std::promise<core::Result<TdResponse>> done;
    auto future = done.get_future();
    (client != nullptr ? *client : td_).perform(td, call, credentials, [&](core::Result<TdResponse> r) {
      done_on_ = std::this_thread::get_id();
      done.set_value(std::move(r));
    });
    return future.get();
  }

  // Records every request and answers with `reply`.
  UpstreamServer::Handler answer(UpstreamReply reply) {
    return [this, reply](const UpstreamRequest& r) {
      std::lock_guard lock(mutex_);
      seen_.push_back(r);
      return reply;
    };
  }
  UpstreamRequest last() {
    std::lock_guard lock(mutex_);
    return seen_.empty() ? UpstreamRequest{} : seen_.back();
  }

  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  HttpClient http_{io_, loopback_allowed()};
  TdHttpClient td_{io_, http_};
  std::thread thread_;
  std::thread::id done_on_;
  std::mutex mutex_;
  std::vector<UpstreamRequest> seen_;
};

UpstreamReply json_reply(std::string body, int status = 200) {
  return UpstreamReply{status, {{"Content-Type", "application/json"}}, std::move(body)};
}

// One property "temp" read through `href`, with the given security definitions and security, at `base`.
json::object secured_thing(const std::string& base, std::string_view definitions, std::string_view security,
                           std::string_view href = "/lamp/temp") {
  return thing(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "lamp", "base": "$BASE",
                   "securityDefinitions": )" +
                   std::string(definitions) + R"(, "security": )" + std::string(security) +
                   R"(, "properties": {"temp": {"type": "number", "forms": [{"href": ")" + std::string(href) +
                   R"("}]}}})",
               base);
}

TEST_F(TdHttpTest, ReadsAPropertyThroughItsFormWithUriVariables) {
  UpstreamServer upstream(answer(json_reply("21.5")));
  const auto td = thing(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "lamp",
      "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc",
      "properties": {"temp": {"type": "number",
                              "uriVariables": {"unit": {"type": "string", "enum": ["C", "F"]},
                                               "precision": {"type": "integer"}},
                              "forms": [{"href": "$BASE/things/{id}/properties/temp{?unit,precision}",
                                         "op": "readproperty"}]}}})",
                        upstream.url(""));
  auto r = perform(td, make(TdOperation::readproperty, "temp", {{"id", "hall 2/lamp"}, {"unit", "C"}}));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->value, json::value(21.5));
  EXPECT_EQ(r->url, upstream.url("/things/hall%202%2Flamp/properties/temp?unit=C"));
  EXPECT_NE(done_on_, std::this_thread::get_id());
  auto seen = last();
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/things/hall%202%2Flamp/properties/temp?unit=C");
  EXPECT_EQ(seen.headers["accept"], "application/json");
  EXPECT_EQ(seen.headers.count("authorization"), 0u);
  EXPECT_EQ(seen.headers.count("content-type"), 0u);
  EXPECT_EQ(seen.body, "");
}

TEST_F(TdHttpTest, ResolvesARelativeHrefAgainstTheBase) {
  UpstreamServer upstream(answer(json_reply("true")));
  const auto td =
      thing_with(R"({"on": {"type": "boolean", "forms": [{"href": "../things/lamp/properties/on"}]}})", "{}",
                 "[]", upstream.url("/api/v1/"));
  auto r = perform(td, make(TdOperation::readproperty, "on"));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->value, json::value(true));
  EXPECT_EQ(last().target, "/api/things/lamp/properties/on");
}

TEST_F(TdHttpTest, WritesAPropertyWithPutAndTheFormsContentType) {
  UpstreamServer upstream(answer(UpstreamReply{204, {}, ""}));
  const auto td = thing_with(
      R"({"mode": {"type": "object", "forms": [{"href": "/mode", "contentType": "application/json; charset=utf-8"}]}})",
      "{}", "[]", upstream.url(""));
  auto r =
      perform(td, make(TdOperation::writeproperty, "mode", {}, json::object{{"name", "eco"}, {"level", 2}}));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status, 204);
  EXPECT_TRUE(r->value.is_null());
  auto seen = last();
  EXPECT_EQ(seen.method, "PUT");
  EXPECT_EQ(seen.target, "/mode");
  EXPECT_EQ(seen.headers["content-type"], "application/json; charset=utf-8");
  EXPECT_EQ(json::parse(seen.body), json::parse(R"({"name":"eco","level":2})"));
}

TEST_F(TdHttpTest, InvokesAnActionWithPostAndReadsItsOutput) {
  UpstreamServer upstream(answer(json_reply(R"({"status":"running","href":"/actions/1"})", 201)));
  const auto td = thing_with("{}", R"({"fade": {"input": {"type": "integer"}, "forms": [{"href": "/fade"}]},
                                      "stop": {"forms": [{"href": "/stop", "htv:methodName": "DELETE"}]}})",
                             "[]", upstream.url(""));
  auto r = perform(td, make(TdOperation::invokeaction, "fade", {}, json::value(500)));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->value.at("status"), "running");
  EXPECT_EQ(last().method, "POST");
  EXPECT_EQ(last().body, "500");
  EXPECT_EQ(last().headers["content-type"], "application/json");

  auto stop = perform(td, make(TdOperation::invokeaction, "stop"));
  ASSERT_TRUE(stop) << stop.error().detail;
  EXPECT_EQ(last().method, "DELETE");
  EXPECT_EQ(last().body, "");
}

TEST_F(TdHttpTest, HtvMethodNameWinsOverTheDefault) {
  UpstreamServer upstream(answer(json_reply("\"eco\"")));
  const auto td = thing_with(
      R"({"mode": {"forms": [{"href": "/mode", "op": "readproperty", "htv:methodName": "POST"}]}})", "{}",
      "[]", upstream.url(""));
  auto r = perform(td, make(TdOperation::readproperty, "mode"));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->value, "eco");
  EXPECT_EQ(last().method, "POST");
}

TEST_F(TdHttpTest, ReadsAllAndMultipleProperties) {
  UpstreamServer upstream(answer(json_reply(R"({"on":true,"level":40,"mode":"eco"})")));
  const auto td =
      thing_with(R"({"on": {"forms": [{"href": "/on"}]}, "level": {"forms": [{"href": "/level"}]},
                                 "mode": {"forms": [{"href": "/mode"}]}, "hum": {"forms": [{"href": "/hum"}]}})",
                 "{}", R"([{"href": "/properties", "op": ["readallproperties", "readmultipleproperties"]}])",
                 upstream.url(""));
  auto all = perform(td, make(TdOperation::readallproperties));
  ASSERT_TRUE(all) << all.error().detail;
  EXPECT_EQ(all->value, json::parse(R"({"on":true,"level":40,"mode":"eco"})"));
  EXPECT_EQ(last().target, "/properties");

  auto some =
      perform(td, make(TdOperation::readmultipleproperties, "", {}, std::nullopt, {"level", "hum", "on"}));
  ASSERT_TRUE(some) << some.error().detail;
  EXPECT_EQ(some->value, json::parse(R"({"level":40,"on":true})"));

  auto unknown =
      perform(td, make(TdOperation::readmultipleproperties, "", {}, std::nullopt, {"level", "colour"}));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::not_found);
  EXPECT_EQ(perform(td, make(TdOperation::readmultipleproperties)).error().code, Errc::bad_request);
}

TEST_F(TdHttpTest, SendsBasicCredentialsInTheAuthorizationHeader) {
  UpstreamServer upstream(answer(json_reply("1")));
  const auto td = secured_thing(upstream.url(""), R"({"basic_sc": {"scheme": "basic", "in": "header"}})",
                                R"("basic_sc")");
  TdCredentials credentials;
  credentials.by_scheme_name["basic_sc"] = UserPassword{"alice", "s3cret"};
  auto r = perform(td, make(TdOperation::readproperty, "temp"), credentials);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(last().headers["authorization"], "Basic YWxpY2U6czNjcmV0");
}

TEST_F(TdHttpTest, SendsABearerToken) {
  UpstreamServer upstream(answer(json_reply("1")));
  const auto td = secured_thing(
      upstream.url(""),
      R"({"bearer_sc": {"scheme": "bearer", "format": "jwt", "alg": "ES256", "authorization": "https://as.example/token"}})",
      R"(["bearer_sc"])");
  TdCredentials credentials;
  credentials.by_scheme_name["bearer_sc"] = Token{"eyJhbGciOiJFUzI1NiJ9.e30.c2ln"};
  auto r = perform(td, make(TdOperation::readproperty, "temp"), credentials);
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(last().headers["authorization"], "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln");
}

TEST_F(TdHttpTest, SendsAnApiKeyInAHeaderOrTheQuery) {
  UpstreamServer upstream(answer(json_reply("1")));
  TdCredentials credentials;
  credentials.by_scheme_name["key_sc"] = Token{"k3y+/="};

  const auto in_header = secured_thing(
      upstream.url(""), R"({"key_sc": {"scheme": "apikey", "in": "header", "name": "X-API-Key"}})",
      R"("key_sc")");
  ASSERT_TRUE(perform(in_header, make(TdOperation::readproperty, "temp"), credentials));
  EXPECT_EQ(last().headers["x-api-key"], "k3y+/=");
  EXPECT_EQ(last().target, "/lamp/temp");

  // apikey defaults to the query (TD 1.1); an existing query and a template stay as they were.
  const auto in_query =
      secured_thing(upstream.url(""), R"({"key_sc": {"scheme": "apikey", "name": "api_key"}})", R"("key_sc")",
                    "/lamp/temp?fields=all{&unit}");
  auto r = perform(in_query, make(TdOperation::readproperty, "temp", {{"unit", "C"}}), credentials);
  ASSERT_TRUE(r);
  EXPECT_EQ(last().target, "/lamp/temp?fields=all&unit=C&api_key=k3y%2B%2F%3D");
  // The URL it reports having called holds no secret.
  EXPECT_EQ(r->url, upstream.url("/lamp/temp?fields=all&unit=C"));
  EXPECT_EQ(last().headers.count("x-api-key"), 0u);
}

TEST_F(TdHttpTest, CombosApplyAllOfAndTheFirstUsableOneOf) {
  UpstreamServer upstream(answer(json_reply("1")));
  const auto definitions = R"({
      "basic_sc": {"scheme": "basic"}, "bearer_sc": {"scheme": "bearer"},
      "key_sc": {"scheme": "apikey", "in": "query", "name": "key"},
      "both_sc": {"scheme": "combo", "allOf": ["basic_sc", "key_sc"]},
      "either_sc": {"scheme": "combo", "oneOf": ["basic_sc", "bearer_sc"]}})";
  TdCredentials credentials;
  credentials.by_scheme_name["basic_sc"] = UserPassword{"alice", "s3cret"};
  credentials.by_scheme_name["key_sc"] = Token{"abc"};
  ASSERT_TRUE(perform(secured_thing(upstream.url(""), definitions, R"("both_sc")"),
                      make(TdOperation::readproperty, "temp"), credentials));
  EXPECT_EQ(last().headers["authorization"], "Basic YWxpY2U6czNjcmV0");
  EXPECT_EQ(last().target, "/lamp/temp?key=abc");

  TdCredentials only_bearer;
  only_bearer.by_scheme_name["bearer_sc"] = Token{"t0ken"};
  const auto either = secured_thing(upstream.url(""), definitions, R"("either_sc")");
  ASSERT_TRUE(perform(either, make(TdOperation::readproperty, "temp"), only_bearer));
  EXPECT_EQ(last().headers["authorization"], "Bearer t0ken");

  const auto requests = upstream.requests();
  auto none = perform(either, make(TdOperation::readproperty, "temp"));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::forbidden);
  EXPECT_TRUE(contains(none.error().detail, "none of the schemes of the combo security scheme 'either_sc'"))
      << none.error().detail;
  EXPECT_EQ(upstream.requests(), requests);
}

TEST_F(TdHttpTest, MissingOrUnsupportedSecurityFailsBeforeAnyRequest) {
  UpstreamServer upstream(answer(json_reply("1")));
  auto missing =
      perform(secured_thing(upstream.url(""), R"({"basic_sc": {"scheme": "basic"}})", R"("basic_sc")"),
              make(TdOperation::readproperty, "temp"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::forbidden);
  EXPECT_EQ(missing.error().detail,
            "the Thing requires the security scheme 'basic_sc' (basic), and twinbridge holds no credentials "
            "for it");

  TdCredentials wrong_kind;
  wrong_kind.by_scheme_name["basic_sc"] = Token{"abc"};
  auto wrong =
      perform(secured_thing(upstream.url(""), R"({"basic_sc": {"scheme": "basic"}})", R"("basic_sc")"),
              make(TdOperation::readproperty, "temp"), wrong_kind);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::forbidden);

  TdCredentials any;
  any.by_scheme_name["sc"] = UserPassword{"alice", "s3cret"};
  for (const auto* definition :
       {R"({"sc": {"scheme": "digest"}})", R"({"sc": {"scheme": "oauth2", "flow": "client"}})",
        R"({"sc": {"scheme": "psk"}})", R"({"sc": {"scheme": "basic", "in": "query"}})",
        R"({"sc": {"scheme": "apikey", "in": "cookie", "name": "k"}})"}) {
    auto r = perform(secured_thing(upstream.url(""), definition, R"("sc")"),
                     make(TdOperation::readproperty, "temp"), any);
    ASSERT_FALSE(r) << definition;
    EXPECT_EQ(r.error().code, Errc::validation_failed) << definition;
  }
  auto digest = perform(secured_thing(upstream.url(""), R"({"sc": {"scheme": "digest"}})", R"("sc")"),
                        make(TdOperation::readproperty, "temp"), any);
  EXPECT_EQ(
      digest.error().detail,
      "the security scheme 'sc' is 'digest', which twinbridge does not support for HTTP forms (it supports "
      "nosec, basic, bearer, apikey and combo)");
  EXPECT_EQ(upstream.requests(), 0u);
}

TEST_F(TdHttpTest, NosecSendsNoCredentials) {
  UpstreamServer upstream(answer(json_reply("1")));
  TdCredentials unused;
  unused.by_scheme_name["other"] = Token{"abc"};
  ASSERT_TRUE(
      perform(secured_thing(upstream.url(""), R"({"nosec_sc": {"scheme": "nosec"}})", R"("nosec_sc")"),
              make(TdOperation::readproperty, "temp"), unused));
  EXPECT_EQ(last().headers.count("authorization"), 0u);
  EXPECT_EQ(last().target, "/lamp/temp");
}

TEST_F(TdHttpTest, ANon2xxAnswerIsAnErrorWithTheStatusAndAnExcerptButNoSecret) {
  // The upstream echoes the credentials it received, as a badly written server might.
  UpstreamServer upstream([](const UpstreamRequest& r) {
    return UpstreamReply{
        401, {{"Content-Type", "text/plain"}}, "bad credentials: " + r.headers.at("authorization")};
  });
  const auto td = secured_thing(upstream.url(""), R"({"bearer_sc": {"scheme": "bearer"}})", R"("bearer_sc")");
  TdCredentials credentials;
  credentials.by_scheme_name["bearer_sc"] = Token{"very-secret-token"};
  auto r = perform(td, make(TdOperation::readproperty, "temp"), credentials);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_EQ(
      r.error().detail,
      "the Thing answered HTTP 401 to readproperty of the property 'temp': \"bad credentials: Bearer ***\"");

  upstream.set_handler([](const UpstreamRequest&) { return UpstreamReply{503, {}, std::string(1000, 'x')}; });
  auto big = perform(td, make(TdOperation::readproperty, "temp"), credentials);
  ASSERT_FALSE(big);
  EXPECT_TRUE(contains(big.error().detail, "HTTP 503")) << big.error().detail;
  EXPECT_TRUE(contains(big.error().detail, std::string(200, 'x') + "...\"")) << big.error().detail;
  EXPECT_FALSE(contains(big.error().detail, std::string(201, 'x'))) << big.error().detail;

  // A secret that the excerpt's cut would split is still left out.
  upstream.set_handler([](const UpstreamRequest& request) {
    return UpstreamReply{500, {}, std::string(190, 'x') + request.headers.at("authorization")};
  });
  auto split = perform(td, make(TdOperation::readproperty, "temp"), credentials);
  ASSERT_FALSE(split);
  EXPECT_FALSE(contains(split.error().detail, "very-")) << split.error().detail;
}

TEST_F(TdHttpTest, AnApiKeyInTheQueryStaysOutOfErrors) {
  // A URL without a host: the client's error quotes the URL, query and all.
  const auto td = secured_thing("http://127.0.0.1:1", R"({"key_sc": {"scheme": "apikey", "name": "key"}})",
                                R"("key_sc")", "http:///lamp/temp");
  TdCredentials credentials;
  credentials.by_scheme_name["key_sc"] = Token{"key/with spaces"};
  auto r = perform(td, make(TdOperation::readproperty, "temp"), credentials);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::bad_request);
  EXPECT_EQ(r.error().detail, "'http:///lamp/temp?key=***' has no host");
}

TEST_F(TdHttpTest, RedirectsAreNotFollowed) {
  UpstreamServer elsewhere(answer(json_reply("1")));
  UpstreamServer upstream([&](const UpstreamRequest&) {
    return UpstreamReply{302, {{"Location", elsewhere.url("/lamp/temp")}}, ""};
  });
  auto r = perform(secured_thing(upstream.url(""), R"({"nosec_sc": {"scheme": "nosec"}})", R"("nosec_sc")"),
                   make(TdOperation::readproperty, "temp"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().detail,
            "the Thing answered HTTP 302 to readproperty of the property 'temp': (empty body)");
  EXPECT_EQ(elsewhere.requests(), 0u);
}

TEST_F(TdHttpTest, AnAnswerThatIsNotJsonIsAnError) {
  UpstreamServer upstream(answer(UpstreamReply{200, {{"Content-Type", "text/html"}}, "<html></html>"}));
  const auto td = secured_thing(upstream.url(""), R"({"nosec_sc": {"scheme": "nosec"}})", R"("nosec_sc")");
  auto html = perform(td, make(TdOperation::readproperty, "temp"));
  ASSERT_FALSE(html);
  EXPECT_EQ(html.error().code, Errc::unavailable);
  EXPECT_EQ(html.error().detail,
            "the Thing answered readproperty of the property 'temp' with 'text/html', not JSON");

  upstream.set_handler(answer(UpstreamReply{200, {}, "{not json"}));
  auto broken = perform(td, make(TdOperation::readproperty, "temp"));
  ASSERT_FALSE(broken);
  EXPECT_TRUE(contains(broken.error().detail, "is not JSON")) << broken.error().detail;

  upstream.set_handler(answer(UpstreamReply{200, {}, ""}));
  auto empty = perform(td, make(TdOperation::readproperty, "temp"));
  ASSERT_FALSE(empty);
  EXPECT_TRUE(contains(empty.error().detail, "with an empty body")) << empty.error().detail;
}

TEST_F(TdHttpTest, AnOversizedBodyFails) {
  UpstreamServer upstream(answer(json_reply("\"" + std::string(4096, 'x') + "\"")));
  TdHttpSettings settings;
  settings.max_response_body = 1024;
  TdHttpClient small{io_, http_, settings};
  auto r = perform(secured_thing(upstream.url(""), R"({"nosec_sc": {"scheme": "nosec"}})", R"("nosec_sc")"),
                   make(TdOperation::readproperty, "temp"), {}, &small);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_EQ(r.error().detail, "response body larger than 1024 bytes while reading the response");
}

TEST_F(TdHttpTest, AThingThatNeverAnswersTimesOut) {
  UpstreamReply hang;
  hang.hang = true;
  UpstreamServer upstream(answer(hang));
  TdHttpSettings settings;
  settings.timeout = 300ms;
  TdHttpClient quick{io_, http_, settings};
  auto r = perform(secured_thing(upstream.url(""), R"({"nosec_sc": {"scheme": "nosec"}})", R"("nosec_sc")"),
                   make(TdOperation::readproperty, "temp"), {}, &quick);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_EQ(r.error().detail, "timed out after 300 ms while reading the response");
}

TEST_F(TdHttpTest, TheOutboundGuardRefusesFormsThatPointInward) {
  for (const auto& [href, why] : {std::pair{"http://169.254.169.254/latest/meta-data/", "cloud metadata"},
                                  std::pair{"http://10.0.0.1/lamp/temp", "private"},
                                  std::pair{"https://[::ffff:10.0.0.1]/t", "private"}}) {
    const auto td = thing_with(R"({"temp": {"forms": [{"href": ")" + std::string(href) + R"("}]}})");
    auto r = perform(td, make(TdOperation::readproperty, "temp"));
    ASSERT_FALSE(r) << href;
    EXPECT_EQ(r.error().code, Errc::forbidden) << href;
    EXPECT_TRUE(r.error().detail.starts_with("refused by the outbound policy: ")) << r.error().detail;
    EXPECT_TRUE(contains(r.error().detail, why)) << r.error().detail;
  }
}

TEST_F(TdHttpTest, UriVariablesAreCheckedAgainstTheTd) {
  UpstreamServer upstream(answer(json_reply("1")));
  const auto td = thing(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "lamp",
      "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}, "security": "nosec_sc", "base": "$BASE",
      "properties": {"temp": {"uriVariables": {"unit": {"type": "string"}, "precision": {"type": "integer"},
                                               "raw": {"type": "boolean"}, "scale": {"type": "number"}},
                              "forms": [{"href": "/temp{?unit,precision,raw,scale}"}]}}})",
                        upstream.url(""));
  const auto read = [&](UriVariables variables) {
    return perform(td, make(TdOperation::readproperty, "temp", std::move(variables)));
  };
  ASSERT_TRUE(read({{"unit", "F"}, {"precision", 2}, {"raw", false}, {"scale", 0.5}}));
  EXPECT_EQ(last().target, "/temp?unit=F&precision=2&raw=false&scale=0.5");
  ASSERT_TRUE(read({{"precision", 3.0}}));  // an integral number is an integer
  EXPECT_EQ(last().target, "/temp?precision=3");

  const auto requests = upstream.requests();
  auto unknown = read({{"colour", "red"}});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Errc::bad_request);
  EXPECT_EQ(unknown.error().detail,
            "the property 'temp' has no URI variable 'colour' (it has unit, precision, raw and scale)");
  for (const auto& [variables, expected] :
       {std::pair{UriVariables{{"unit", 1}}, "the URI variable 'unit' must be a string, not integer"},
        std::pair{UriVariables{{"precision", 2.5}},
                  "the URI variable 'precision' must be an integer, not number"},
        std::pair{UriVariables{{"raw", "yes"}}, "the URI variable 'raw' must be a boolean, not string"},
        std::pair{UriVariables{{"scale", json::array{1}}},
                  "the URI variable 'scale' must be a string, a number or a boolean, not array"}}) {
    auto r = read(variables);
    ASSERT_FALSE(r) << expected;
    EXPECT_EQ(r.error().code, Errc::bad_request);
    EXPECT_EQ(r.error().detail, expected);
  }
  EXPECT_EQ(upstream.requests(), requests);
}

TEST_F(TdHttpTest, InputMustFitTheOperation) {
  const auto td = thing_with(R"({"on": {"forms": [{"href": "/on"}]}})");
  auto no_value = perform(td, make(TdOperation::writeproperty, "on"));
  ASSERT_FALSE(no_value);
  EXPECT_EQ(no_value.error().code, Errc::bad_request);
  auto read_with_value = perform(td, make(TdOperation::readproperty, "on", {}, json::value(1)));
  ASSERT_FALSE(read_with_value);
  EXPECT_EQ(read_with_value.error().code, Errc::bad_request);
  EXPECT_NE(done_on_,
            std::this_thread::get_id());  // errors found before any I/O are delivered on the io_context
}

}  // namespace
}  // namespace twinbridge::connect
