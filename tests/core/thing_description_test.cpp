#include "core/thing_description.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/merge_patch.hpp"

namespace twinbridge::core {
namespace {

namespace json = boost::json;

using Violations = std::vector<std::pair<std::string, std::string>>;

json::value load(std::string_view name) {
  std::ifstream in(std::string(TB_TEST_DATA_DIR) + "/data/" + std::string(name));
  EXPECT_TRUE(in.is_open()) << name;
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

// The smallest valid TD: context, title, one security scheme in use.
json::value minimal() {
  return json::parse(R"({
    "@context": "https://www.w3.org/2022/wot/td/v1.1",
    "title": "Minimal",
    "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
    "security": "nosec_sc"
  })");
}

// The minimal TD with an RFC 7396 merge patch applied.
json::value with(std::string_view patch) {
  return merge_patch(minimal(), json::parse(patch));
}

std::string describe(const Violations& v) {
  std::string out;
  for (const auto& [pointer, detail] : v) out += "\n  " + pointer + ": " + detail;
  return out;
}

// Every violation reported for `doc`, sorted by pointer; empty when the TD is valid.
Violations violations(const json::value& doc, std::string_view base = "") {
  const auto td = parse_thing_description(doc, base);
  if (td) return {};
  EXPECT_EQ(td.error().code, Errc::validation_failed);
  Violations out;
  for (const auto& f : td.error().fields) {
    EXPECT_EQ(f.in, FieldIn::body);
    out.emplace_back(f.pointer, f.detail);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> pointers(const Violations& v) {
  std::vector<std::string> out;
  for (const auto& [pointer, detail] : v) out.push_back(pointer);
  return out;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// `doc` breaks exactly one rule, at `pointer`, with a detail that mentions `detail_part`.
void expect_violation(const json::value& doc, std::string_view pointer, std::string_view detail_part) {
  const auto v = violations(doc);
  ASSERT_EQ(v.size(), 1u) << "in " << json::serialize(doc) << describe(v);
  EXPECT_EQ(v[0].first, pointer);
  EXPECT_TRUE(contains(v[0].second, detail_part)) << v[0].second;
}

void expect_valid(const json::value& doc) {
  const auto v = violations(doc);
  EXPECT_TRUE(v.empty()) << "in " << json::serialize(doc) << describe(v);
}

// A data schema `depth` levels deep through "items"; the innermost is a number.
json::value nested_schema(int depth) {
  json::value schema = json::object{{"type", "number"}};
  for (int i = 1; i < depth; ++i) schema = json::object{{"type", "array"}, {"items", schema}};
  return schema;
}

std::string items_pointer(std::string base, int levels) {
  for (int i = 0; i < levels; ++i) base += "/items";
  return base;
}

TEST(ThingDescriptionTest, AcceptsAnHttpLampWithPropertiesActionsAndEvents) {
  const auto doc = load("lamp_http.td.json");
  const auto td = parse_thing_description(doc);
  ASSERT_TRUE(td.has_value()) << td.error().detail << describe(violations(doc));
  EXPECT_EQ(td->id, "urn:uuid:2f9a4c1e-7d35-4b8a-9e61-0c4d8b7a1f20");
  EXPECT_EQ(td->title, "Hall lamp");
  EXPECT_EQ(td->property_names, (std::vector<std::string>{"on", "brightness", "colour", "status"}));
  EXPECT_EQ(td->action_names, (std::vector<std::string>{"toggle", "fade"}));
  EXPECT_EQ(td->event_names, (std::vector<std::string>{"overheating"}));
  ASSERT_TRUE(td->pose.has_value());
  EXPECT_EQ(td->pose->frame, "hall-2");
  EXPECT_DOUBLE_EQ(td->pose->position[0], 4.5);
  EXPECT_DOUBLE_EQ(td->pose->position[1], 2.75);
  EXPECT_DOUBLE_EQ(td->pose->position[2], 0);
  EXPECT_DOUBLE_EQ(td->pose->orientation[3], 1);
  EXPECT_FALSE(td->document.contains(kPoseMember));
  EXPECT_EQ(td->document.at("title"), "Hall lamp");
  EXPECT_EQ(td->document.size(), doc.as_object().size() - 1);
}

TEST(ThingDescriptionTest, AcceptsAnMqttSensorWithBindingExtensionsAndDefaultPose) {
  const auto td = parse_thing_description(load("mqtt_sensor.td.json"));
  ASSERT_TRUE(td.has_value()) << td.error().detail << describe(violations(load("mqtt_sensor.td.json")));
  EXPECT_EQ(td->id, "urn:dev:ops:32473-WeatherStation-3");
  EXPECT_EQ(td->property_names, (std::vector<std::string>{"temperature", "humidity", "samples"}));
  EXPECT_TRUE(td->action_names.empty());
  EXPECT_EQ(td->event_names, (std::vector<std::string>{"frost"}));
  ASSERT_TRUE(td->pose.has_value());
  EXPECT_EQ(td->pose->frame, "world");
  EXPECT_DOUBLE_EQ(td->pose->position[2], 18.25);
  EXPECT_DOUBLE_EQ(td->pose->orientation[0], 0);
  EXPECT_DOUBLE_EQ(td->pose->orientation[3], 1);
  // Binding vocabulary (mqv:) is kept as given.
  EXPECT_EQ(td->document.at("properties").at("temperature").at("forms").at(0).at("mqv:filter"),
            "site/roof/weather-3/temperature");
}

TEST(ThingDescriptionTest, AcceptsARobotArmWithUriVariablesComboSecurityAndThingForms) {
  const auto doc = load("robot_arm.td.json");
  const auto td = parse_thing_description(doc);
  ASSERT_TRUE(td.has_value()) << td.error().detail << describe(violations(doc));
  EXPECT_EQ(td->id, "https://factory.example.com/things/arm-7");
  EXPECT_EQ(td->property_names, (std::vector<std::string>{"joints", "payload"}));
  EXPECT_EQ(td->action_names, (std::vector<std::string>{"moveTo", "stop"}));
  EXPECT_EQ(td->event_names, (std::vector<std::string>{"collision"}));
  ASSERT_TRUE(td->pose.has_value());
  EXPECT_EQ(td->pose->frame, "cell-A3");
  EXPECT_NEAR(td->pose->orientation[2], 0.38268343236508984, 1e-12);
}

TEST(ThingDescriptionTest, AcceptsTheMinimalTdAndAnAnonymousOne) {
  const auto td = parse_thing_description(minimal());
  ASSERT_TRUE(td.has_value());
  EXPECT_EQ(td->id, "");  // anonymous: TD 1.1 makes id optional
  EXPECT_EQ(td->title, "Minimal");
  EXPECT_FALSE(td->pose.has_value());
  EXPECT_TRUE(td->property_names.empty());
  EXPECT_EQ(td->document, minimal().as_object());
}

TEST(ThingDescriptionTest, AllowsMembersThatTdDoesNotDefine) {
  expect_valid(with(R"({"ex:serial": 17, "ex:nested": {"forms": 3},
                        "properties": {"p": {"forms": [{"href": "/p", "ex:hint": [1]}], "ex:x": null}}})"));
}

TEST(ThingDescriptionTest, AllowsEmptyTypeScopesAndHreflangLists) {
  expect_valid(with(R"({"@type": [], "links": [{"href": "/m", "hreflang": []}],
                        "properties": {"p": {"@type": [], "forms": [{"href": "/p", "scopes": []}]}}})"));
  expect_violation(with(R"({"profile": []})"), "/profile", "must not be empty");
}

TEST(ThingDescriptionTest, RejectsADocumentThatIsNotAnObject) {
  const auto td = parse_thing_description(json::parse("[1]"), "/td");
  ASSERT_FALSE(td.has_value());
  EXPECT_EQ(td.error().code, Errc::validation_failed);
  ASSERT_EQ(td.error().fields.size(), 1u);
  EXPECT_EQ(td.error().fields[0].pointer, "/td");
  EXPECT_TRUE(contains(td.error().fields[0].detail, "must be an object")) << td.error().fields[0].detail;
}

TEST(ThingDescriptionTest, ChecksTheContext) {
  expect_violation(with(R"({"@context": null})"), "/@context", "is required");
  expect_violation(with(R"({"@context": "https://www.w3.org/2022/wot/td/v2"})"), "/@context",
                   "TD 1.1 context URI");
  expect_violation(with(R"({"@context": 11})"), "/@context", "must be a string or an array, not integer");
  expect_violation(with(R"({"@context": []})"), "/@context", "must not be empty");
  expect_violation(with(R"({"@context": ["https://schema.org/", "https://www.w3.org/2022/wot/td/v1.1"]})"),
                   "/@context/0", "TD 1.1 context URI");
  expect_violation(with(R"({"@context": ["https://www.w3.org/2022/wot/td/v1.1", 3]})"), "/@context/1",
                   "must be a string (a URI) or an object, not integer");
  expect_violation(
      with(R"({"@context": ["https://www.w3.org/2022/wot/td/v1.1", "https://www.w3.org/2019/wot/td/v1"]})"),
      "/@context/1", "may not follow");
  // TD 1.0 documents remain valid, alone or followed by the 1.1 context.
  expect_valid(with(R"({"@context": "https://www.w3.org/2019/wot/td/v1"})"));
  expect_valid(
      with(R"({"@context": ["https://www.w3.org/2019/wot/td/v1", "https://www.w3.org/2022/wot/td/v1.1",
                                     {"ex": "https://example.com/ns#"}]})"));
}

TEST(ThingDescriptionTest, RequiresAStringTitleAndChecksMultilanguageMaps) {
  expect_violation(with(R"({"title": null})"), "/title", "is required");
  expect_violation(with(R"({"title": 7})"), "/title", "must be a string, not integer");
  expect_violation(with(R"({"titles": {"en": "Lamp", "de": 1}})"), "/titles/de", "must be a string");
  expect_violation(with(R"({"titles": {"english language": "Lamp"}})"), "/titles/english language",
                   "is not a language tag");
  expect_violation(with(R"({"descriptions": ["a"]})"), "/descriptions", "must be an object, not array");
  expect_violation(with(R"({"description": false})"), "/description", "must be a string, not boolean");
  expect_valid(with(R"({"titles": {"en": "a", "en-GB": "b", "zh-Hant-TW": "c", "de-CH-1901": "d"}})"));
}

TEST(ThingDescriptionTest, RequiresAnIdToBeAnAbsoluteUri) {
  expect_violation(with(R"({"id": "lamp-17"})"), "/id", "must be an absolute URI");
  expect_violation(with(R"({"id": "urn:lamp 17"})"), "/id", "is not a URI");
  expect_violation(with(R"({"id": "1urn:x"})"), "/id", "is not a scheme");
  expect_violation(with(R"({"id": "urn:bad%zz"})"), "/id", "hexadecimal");
  expect_violation(with(R"({"id": ""})"), "/id", "must be an absolute URI");
  expect_violation(with(R"({"id": 17})"), "/id", "must be a string, not integer");
  expect_valid(with(R"({"id": "urn:uuid:9c1b8a7e-4d2f-4e61-8f3a-2b7c5d9e0a14"})"));
  expect_valid(with(R"({"id": "https://example.com/things/lamp%2017?x=1#top"})"));
}

TEST(ThingDescriptionTest, RequiresSecurityToNameDefinedSchemes) {
  expect_violation(with(R"({"security": null})"), "/security", "is required");
  expect_violation(with(R"({"security": "basic_sc"})"), "/security",
                   "names no entry of securityDefinitions (\"basic_sc\")");
  expect_violation(with(R"({"security": ["nosec_sc", "bearer_sc"]})"), "/security/1",
                   "names no entry of securityDefinitions");
  expect_violation(with(R"({"security": []})"), "/security", "must not be empty");
  expect_violation(with(R"({"security": {"nosec_sc": true}})"), "/security",
                   "must be a string or an array of strings, not object");
  // Without definitions only the missing definitions are reported, not each name.
  expect_violation(with(R"({"securityDefinitions": null})"), "/securityDefinitions", "is required");
}

TEST(ThingDescriptionTest, ChecksSecuritySchemes) {
  expect_violation(with(R"({"securityDefinitions": {"nosec_sc": {"scheme": "kerberos"}}})"),
                   "/securityDefinitions/nosec_sc/scheme", "must be one of nosec, auto, combo");
  expect_violation(with(R"({"securityDefinitions": {"nosec_sc": {"scheme": null, "in": "header"}}})"),
                   "/securityDefinitions/nosec_sc/scheme", "is required");
  expect_violation(with(R"({"securityDefinitions": {"nosec_sc": "nosec"}})"), "/securityDefinitions/nosec_sc",
                   "must be an object (a security scheme), not string");
  expect_violation(with(R"({"securityDefinitions": {"k": {"scheme": "apikey", "in": "path"}}})"),
                   "/securityDefinitions/k/in", "must be one of header, query, body, cookie, uri, auto");
  expect_violation(with(R"({"securityDefinitions": {"d": {"scheme": "digest", "qop": "auth-conf"}}})"),
                   "/securityDefinitions/d/qop", "must be one of auth, auth-int");
  expect_violation(with(R"({"securityDefinitions": {"o": {"scheme": "oauth2", "token": "https://a b"}}})"),
                   "/securityDefinitions/o/token", "is not a URI");
  auto empty = minimal();
  empty.as_object()["securityDefinitions"] = json::object{};
  const auto v = violations(empty);
  ASSERT_EQ(pointers(v), (std::vector<std::string>{"/security", "/securityDefinitions"})) << describe(v);
  EXPECT_TRUE(contains(v[1].second, "at least one")) << v[1].second;
  expect_violation(with(R"({"securityDefinitions": {"x": {"scheme": ":custom"}}})"),
                   "/securityDefinitions/x/scheme", "prefixed extension scheme");
  expect_valid(with(R"({"securityDefinitions": {"k": {"scheme": "apikey", "in": "uri", "name": "key"},
                                                "b": {"scheme": "bearer", "in": "auto"}}})"));
  // Schemes from context extensions are prefixed names.
  expect_valid(with(R"({"securityDefinitions": {"ace_sc": {"scheme": "ace:ACESecurityScheme"}},
                        "security": ["ace_sc", "nosec_sc"]})"));
}

TEST(ThingDescriptionTest, ChecksComboSchemes) {
  expect_valid(with(R"({"securityDefinitions": {"b": {"scheme": "basic"}, "c": {"scheme": "combo",
                        "allOf": ["b", "nosec_sc"]}}, "security": "c"})"));
  expect_violation(with(R"({"securityDefinitions": {"c": {"scheme": "combo"}}})"), "/securityDefinitions/c",
                   "requires oneOf or allOf");
  expect_violation(with(R"({"securityDefinitions": {"c": {"scheme": "combo", "oneOf": ["nosec_sc", "x"]}}})"),
                   "/securityDefinitions/c/oneOf/1", "names no entry of securityDefinitions (\"x\")");
  expect_violation(with(R"({"securityDefinitions": {"c": {"scheme": "combo", "oneOf": ["nosec_sc"]}}})"),
                   "/securityDefinitions/c/oneOf", "at least two");
  expect_violation(with(R"({"securityDefinitions": {"c": {"scheme": "combo", "oneOf": ["nosec_sc", "c"]}}})"),
                   "/securityDefinitions/c/oneOf/1", "may not name itself");
  const auto loop = violations(with(R"({"securityDefinitions": {
      "a": {"scheme": "combo", "oneOf": ["nosec_sc", "b"]},
      "b": {"scheme": "combo", "allOf": ["a", "nosec_sc"]}}})"));
  ASSERT_EQ(loop.size(), 1u) << describe(loop);
  EXPECT_TRUE(loop[0].first == "/securityDefinitions/a" || loop[0].first == "/securityDefinitions/b")
      << loop[0].first;
  EXPECT_TRUE(contains(loop[0].second, "loop")) << loop[0].second;
}

TEST(ThingDescriptionTest, RequiresFormsOnEveryAffordance) {
  expect_violation(with(R"({"properties": {"brightness": {"type": "integer"}}})"),
                   "/properties/brightness/forms", "is required");
  expect_violation(with(R"({"actions": {"toggle": {"forms": []}}})"), "/actions/toggle/forms",
                   "must not be empty");
  expect_violation(with(R"({"events": {"alarm": {"forms": {"href": "/alarm"}}}})"), "/events/alarm/forms",
                   "must be an array, not object");
  expect_violation(with(R"({"properties": {"on": true}})"), "/properties/on",
                   "must be an object (a property affordance), not boolean");
  expect_violation(with(R"({"actions": []})"), "/actions", "must be an object, not array");
}

TEST(ThingDescriptionTest, RequiresAnHrefOnEveryForm) {
  expect_violation(with(R"({"properties": {"brightness": {"forms": [{"op": "readproperty"}]}}})"),
                   "/properties/brightness/forms/0/href", "is required");
  expect_violation(with(R"({"properties": {"brightness": {"forms": [{"href": "/a"}, {"href": 3}]}}})"),
                   "/properties/brightness/forms/1/href", "must be a string, not integer");
  expect_violation(with(R"({"properties": {"b": {"forms": [{"href": "/a b"}]}}})"),
                   "/properties/b/forms/0/href", "a space at offset 2 is not allowed");
  expect_violation(with(R"({"properties": {"b": {"forms": [{"href": ""}]}}})"), "/properties/b/forms/0/href",
                   "must not be empty");
  expect_violation(with(R"({"properties": {"b": {"forms": [{"href": "/b{?unit"}]}}})"),
                   "/properties/b/forms/0/href", "unclosed URI template");
  expect_violation(with(R"({"properties": {"b": {"forms": ["/b"]}}})"), "/properties/b/forms/0",
                   "must be an object (a form), not string");
  // Relative references, templates and IRIs are all fine.
  expect_valid(with(R"({"properties": {"b": {"forms": [{"href": "b"}, {"href": "../x/{id}?q={q}"},
                                                        {"href": "coaps://[2001:db8::1]:5684/b"},
                                                        {"href": "https://example.com/lampe/helligkeit/größe"}]}}})"));
}

TEST(ThingDescriptionTest, ChecksOperationTypesPerAffordanceKind) {
  expect_violation(
      with(R"({"properties": {"brightness": {"forms": [{"href": "/b", "op": "invokeaction"}]}}})"),
      "/properties/brightness/forms/0/op",
      "\"invokeaction\" is not an operation type on a property; expected one of readproperty, "
      "writeproperty, observeproperty, unobserveproperty");
  expect_violation(
      with(R"({"actions": {"go": {"forms": [{"href": "/go", "op": ["invokeaction", "readproperty"]}]}}})"),
      "/actions/go/forms/0/op/1", "is not an operation type on an action");
  expect_violation(with(R"({"events": {"e": {"forms": [{"href": "/e", "op": "observeproperty"}]}}})"),
                   "/events/e/forms/0/op", "is not an operation type on an event");
  expect_violation(with(R"({"events": {"e": {"forms": [{"href": "/e", "op": []}]}}})"),
                   "/events/e/forms/0/op", "must not be empty");
  expect_violation(with(R"({"events": {"e": {"forms": [{"href": "/e", "op": 1}]}}})"), "/events/e/forms/0/op",
                   "must be a string or an array of strings, not integer");
  // Thing-level forms need an op (there is no default) from the Thing-level operation types.
  expect_violation(with(R"({"forms": [{"href": "/all"}]})"), "/forms/0/op", "is required");
  expect_violation(with(R"({"forms": [{"href": "/all", "op": "readproperty"}]})"), "/forms/0/op",
                   "is not an operation type on the whole Thing");
  expect_violation(with(R"({"forms": []})"), "/forms", "must not be empty");
  expect_valid(with(R"({"forms": [{"href": "/all", "op": ["readallproperties", "writemultipleproperties",
                                   "observeallproperties", "unobserveallproperties", "subscribeallevents",
                                   "unsubscribeallevents", "queryallactions", "readmultipleproperties",
                                   "writeallproperties"]}]})"));
}

TEST(ThingDescriptionTest, ChecksOtherFormMembers) {
  expect_violation(with(R"({"properties": {"p": {"forms": [{"href": "/p", "contentType": "json"}]}}})"),
                   "/properties/p/forms/0/contentType", "is not a media type");
  expect_violation(
      with(R"({"properties": {"p": {"forms": [{"href": "/p", "contentType": "text/plain;"}]}}})"),
      "/properties/p/forms/0/contentType", "is not a media type");
  expect_violation(with(R"({"properties": {"p": {"forms": [{"href": "/p", "subprotocol": ["sse"]}]}}})"),
                   "/properties/p/forms/0/subprotocol", "must be a string, not array");
  expect_violation(with(R"({"properties": {"p": {"forms": [{"href": "/p", "security": "basic_sc"}]}}})"),
                   "/properties/p/forms/0/security", "names no entry of securityDefinitions");
  expect_violation(with(R"({"actions": {"a": {"forms": [{"href": "/a", "response": {}}]}}})"),
                   "/actions/a/forms/0/response/contentType", "is required");
  expect_violation(
      with(R"({"actions": {"a": {"forms": [{"href": "/a", "additionalResponses": [{"schema": "err"}]}]}}})"),
      "/actions/a/forms/0/additionalResponses/0/schema", "names no entry of schemaDefinitions (\"err\")");
  expect_valid(with(R"({"properties": {"p": {"forms": [{"href": "/p",
                        "contentType": "text/plain; charset=\"utf-8\";format=flowed"}]}}})"));
}

TEST(ThingDescriptionTest, ChecksDataSchemaTerms) {
  const auto prop = [](std::string_view schema) {
    return with(std::string(R"({"properties": {"p": {"forms": [{"href": "/p"}], )") + std::string(schema) +
                "}}}");
  };
  expect_violation(prop(R"("type": "float")"), "/properties/p/type",
                   "must be one of object, array, string, number, integer, boolean, null, not \"float\"");
  expect_violation(prop(R"("enum": [])"), "/properties/p/enum", "must not be empty");
  expect_violation(prop(R"("enum": ["on", "off", "on"])"), "/properties/p/enum/2", "repeats an earlier item");
  expect_violation(prop(R"("minimum": 10, "maximum": 5)"), "/properties/p/minimum",
                   "must be at most maximum (5)");
  expect_violation(prop(R"("minimum": "0")"), "/properties/p/minimum", "must be a number, not string");
  expect_violation(prop(R"("type": "integer", "minimum": 0.5)"), "/properties/p/minimum",
                   "must be an integer");
  expect_violation(prop(R"("exclusiveMinimum": 3, "exclusiveMaximum": 3)"), "/properties/p/exclusiveMinimum",
                   "must be less than exclusiveMaximum (3)");
  expect_violation(prop(R"("multipleOf": 0)"), "/properties/p/multipleOf", "must be greater than 0");
  expect_violation(prop(R"("minLength": -1)"), "/properties/p/minLength", "must be a non-negative integer");
  expect_violation(prop(R"("maxLength": 2.5)"), "/properties/p/maxLength", "must be a non-negative integer");
  expect_violation(prop(R"("minLength": 5, "maxLength": 2)"), "/properties/p/minLength",
                   "must be at most maxLength (2)");
  expect_violation(prop(R"("minItems": 3, "maxItems": 1)"), "/properties/p/minItems",
                   "must be at most maxItems (1)");
  expect_violation(prop(R"("items": "number")"), "/properties/p/items",
                   "must be an object (a data schema) or an array of data schemas, not string");
  expect_violation(prop(R"("items": [{"type": "number"}, {"type": "text"}])"), "/properties/p/items/1/type",
                   "must be one of");
  expect_violation(prop(R"("properties": {"a": {"type": "string"}}, "required": ["a", "b"])"),
                   "/properties/p/required/1", "names no member of properties (\"b\")");
  expect_violation(prop(R"("required": "a")"), "/properties/p/required", "must be an array, not string");
  expect_violation(prop(R"("properties": {"a": {"minimum": 2, "maximum": 1}})"),
                   "/properties/p/properties/a/minimum", "must be at most maximum (1)");
  expect_violation(prop(R"("readOnly": "yes")"), "/properties/p/readOnly", "must be a boolean, not string");
  expect_violation(prop(R"("writeOnly": 1)"), "/properties/p/writeOnly", "must be a boolean, not integer");
  expect_violation(prop(R"("observable": "true")"), "/properties/p/observable", "must be a boolean");
  expect_violation(prop(R"("unit": 5)"), "/properties/p/unit", "must be a string, not integer");
  expect_violation(prop(R"("oneOf": [{"type": "string"}, 5])"), "/properties/p/oneOf/1",
                   "must be an object (a data schema), not integer");
  expect_valid(prop(R"("const": {"any": ["thing", null]}, "default": null, "type": "integer", "minimum": 1,
                      "maximum": 1.0, "multipleOf": 2, "minLength": 0, "maxItems": 4.0, "unit": "m")"));
}

TEST(ThingDescriptionTest, ChecksSchemasOfActionsEventsAndUriVariables) {
  expect_violation(with(R"({"actions": {"a": {"forms": [{"href": "/a"}], "input": {"type": "strin"}}}})"),
                   "/actions/a/input/type", "must be one of");
  expect_violation(with(R"({"actions": {"a": {"forms": [{"href": "/a"}], "output": []}}})"),
                   "/actions/a/output", "must be an object (a data schema), not array");
  expect_violation(with(R"({"actions": {"a": {"forms": [{"href": "/a"}], "safe": "no"}}})"),
                   "/actions/a/safe", "must be a boolean, not string");
  expect_violation(with(R"({"actions": {"a": {"forms": [{"href": "/a"}], "idempotent": 0}}})"),
                   "/actions/a/idempotent", "must be a boolean, not integer");
  expect_violation(with(R"({"events": {"e": {"forms": [{"href": "/e"}], "data": {"enum": []}}}})"),
                   "/events/e/data/enum", "must not be empty");
  expect_violation(with(R"({"events": {"e": {"forms": [{"href": "/e"}], "subscription": 1}}})"),
                   "/events/e/subscription", "must be an object (a data schema)");
  expect_violation(
      with(R"({"events": {"e": {"forms": [{"href": "/e"}], "cancellation": {"minLength": -2}}}})"),
      "/events/e/cancellation/minLength", "must be a non-negative integer");
  expect_violation(
      with(
          R"({"actions": {"a": {"forms": [{"href": "/a{?speed}"}], "uriVariables": {"speed": {"maximum": "fast"}}}}})"),
      "/actions/a/uriVariables/speed/maximum", "must be a number, not string");
  expect_violation(with(R"({"uriVariables": {"cell": "string"}})"), "/uriVariables/cell",
                   "must be an object (a data schema), not string");
  expect_violation(with(R"({"schemaDefinitions": {}})"), "/schemaDefinitions", "at least one");
  expect_violation(with(R"({"schemaDefinitions": {"e": {"type": "obj"}}})"), "/schemaDefinitions/e/type",
                   "must be one of");
}

TEST(ThingDescriptionTest, LimitsDataSchemaNestingTo32) {
  auto doc = minimal();
  auto property = nested_schema(kMaxSchemaDepth).as_object();
  property["forms"] = json::parse(R"([{"href": "/deep"}])");
  doc.as_object()["properties"] = json::object{{"deep", property}};
  expect_valid(doc);

  property = nested_schema(kMaxSchemaDepth + 1).as_object();
  property["forms"] = json::parse(R"([{"href": "/deep"}])");
  doc.as_object()["properties"] = json::object{{"deep", property}};
  expect_violation(doc, items_pointer("/properties/deep", kMaxSchemaDepth), "at most 32 deep");

  // The same bound holds for action inputs, through properties and oneOf as well as items.
  json::value input = json::object{{"type", "number"}};
  for (int i = 1; i <= kMaxSchemaDepth; ++i) {
    input = i % 2 == 0 ? json::value(json::object{{"properties", json::object{{"x", input}}}})
                       : json::value(json::object{{"oneOf", json::array{input}}});
  }
  doc = minimal();
  doc.as_object()["actions"] =
      json::object{{"a", json::object{{"forms", json::parse(R"([{"href": "/a"}])")}, {"input", input}}}};
  std::string innermost = "/actions/a/input";
  for (int i = kMaxSchemaDepth; i >= 1; --i) innermost += i % 2 == 0 ? "/properties/x" : "/oneOf/0";
  expect_violation(doc, innermost, "at most 32 deep");
}

TEST(ThingDescriptionTest, ChecksLinksDatesVersionAndProfile) {
  expect_violation(with(R"({"links": [{"rel": "manual"}]})"), "/links/0/href", "is required");
  expect_violation(with(R"({"links": [{"href": "/a"}, "b"]})"), "/links/1", "must be an object (a link)");
  expect_violation(with(R"({"links": {"href": "/a"}})"), "/links", "must be an array, not object");
  expect_violation(with(R"({"links": [{"href": "/a", "hreflang": ["en", "english!"]}]})"),
                   "/links/0/hreflang/1", "is not a language tag");
  expect_violation(with(R"({"created": "2024-05-01 12:00:00"})"), "/created",
                   "must be an RFC 3339 date-time");
  expect_violation(with(R"({"modified": "yesterday"})"), "/modified", "must be an RFC 3339 date-time");
  expect_violation(with(R"({"created": 1714564800})"), "/created", "must be a string, not integer");
  expect_violation(with(R"({"version": {"model": "x"}})"), "/version/instance", "is required");
  expect_violation(with(R"({"version": "1.0"})"), "/version", "must be an object, not string");
  expect_violation(with(R"({"base": "/relative"})"), "/base", "must be an absolute URI");
  expect_violation(with(R"({"profile": ["https://example.com/p", "p2"]})"), "/profile/1",
                   "must be an absolute URI");
  expect_valid(with(R"({"created": "2024-05-01T12:00:00Z", "modified": "2024-05-01T14:00:00.5+02:00",
                        "version": {"instance": "1.0.0"}, "base": "coap://lamp.local/", "support": "mailto:a@b.c"})"));
}

TEST(ThingDescriptionTest, ReportsSeveralViolationsAtOnce) {
  const auto doc = json::parse(R"({
    "@context": "https://www.w3.org/2022/wot/td/v1.1",
    "id": "lamp-17",
    "securityDefinitions": {"basic_sc": {"scheme": "basic"}},
    "security": "bearer_sc",
    "created": "today",
    "properties": {
      "brightness": {"type": "integer", "minimum": 100, "maximum": 0,
                     "forms": [{"op": "readproperty"}, {"href": "/b", "op": "subscribeevent"}]},
      "on": {"type": "boolean"}
    }
  })");
  const auto td = parse_thing_description(doc);
  ASSERT_FALSE(td.has_value());
  EXPECT_EQ(td.error().detail, "the Thing Description has 8 violations");
  EXPECT_EQ(pointers(violations(doc)), (std::vector<std::string>{
                                           "/created",
                                           "/id",
                                           "/properties/brightness/forms/0/href",
                                           "/properties/brightness/forms/1/op",
                                           "/properties/brightness/minimum",
                                           "/properties/on/forms",
                                           "/security",
                                           "/title",
                                       }));
}

TEST(ThingDescriptionTest, DescribesASingleViolationInTheDetail) {
  const auto td = parse_thing_description(with(R"({"properties": {"b": {"forms": [{}]}}})"));
  ASSERT_FALSE(td.has_value());
  EXPECT_EQ(td.error().detail, "/properties/b/forms/0/href: is required");
}

TEST(ThingDescriptionTest, PrefixesEveryPointerWithTheBase) {
  const auto doc =
      with(R"({"title": null, "properties": {"a/b": {"forms": [{"href": "/x", "op": "bad"}]}}})");
  EXPECT_EQ(pointers(violations(doc, "/td")),
            (std::vector<std::string>{"/td/properties/a~1b/forms/0/op", "/td/title"}));
}

TEST(ThingDescriptionTest, ListsAtMost100Violations) {
  auto doc = minimal();
  json::object properties;
  for (int i = 0; i < 150; ++i) properties[fmt::format("p{:03}", i)] = json::object{{"type", "number"}};
  doc.as_object()["properties"] = std::move(properties);
  const auto td = parse_thing_description(doc);
  ASSERT_FALSE(td.has_value());
  EXPECT_EQ(td.error().fields.size(), kMaxViolations);
  EXPECT_EQ(td.error().fields.front().pointer, "/properties/p000/forms");
  EXPECT_EQ(td.error().fields.back().pointer, "/properties/p099/forms");
  EXPECT_EQ(td.error().detail, "the Thing Description has 150 violations; the first 100 are listed");
}

TEST(ThingDescriptionTest, ReadsThePoseExtension) {
  const auto td = parse_thing_description(with(
      R"({"twinbridge:pose": {"frame": "hall-2", "position": [1, -2.5, 3e2], "orientation": [0, 0, 0, 1]}})"));
  ASSERT_TRUE(td.has_value()) << td.error().detail;
  ASSERT_TRUE(td->pose.has_value());
  EXPECT_EQ(td->pose->frame, "hall-2");
  EXPECT_DOUBLE_EQ(td->pose->position[0], 1);
  EXPECT_DOUBLE_EQ(td->pose->position[1], -2.5);
  EXPECT_DOUBLE_EQ(td->pose->position[2], 300);
  EXPECT_FALSE(td->document.contains(kPoseMember));

  const auto defaults = parse_thing_description(with(R"({"twinbridge:pose": {}})"));
  ASSERT_TRUE(defaults.has_value());
  ASSERT_TRUE(defaults->pose.has_value());
  EXPECT_EQ(defaults->pose->frame, "world");
  EXPECT_DOUBLE_EQ(defaults->pose->orientation[3], 1);
}

TEST(ThingDescriptionTest, RejectsABadPose) {
  expect_violation(with(R"({"twinbridge:pose": {"position": [1, 2]}})"), "/twinbridge:pose/position",
                   "must have 3 items (x, y, z in metres), not 2");
  expect_violation(with(R"({"twinbridge:pose": {"position": [1, 2, 3, 4]}})"), "/twinbridge:pose/position",
                   "must have 3 items");
  expect_violation(with(R"({"twinbridge:pose": {"position": [1, "2", 3]}})"), "/twinbridge:pose/position/1",
                   "must be a finite number, not string");
  expect_violation(with(R"({"twinbridge:pose": {"position": {"x": 1}}})"), "/twinbridge:pose/position",
                   "must be an array of 3 numbers");
  expect_violation(with(R"({"twinbridge:pose": {"orientation": [0, 0, 0, 2]}})"),
                   "/twinbridge:pose/orientation",
                   "must be a unit quaternion (norm 1 within 1e-06); its norm is 2");
  expect_violation(with(R"({"twinbridge:pose": {"orientation": [0, 0, 0, 0]}})"),
                   "/twinbridge:pose/orientation", "must be a unit quaternion");
  expect_violation(with(R"({"twinbridge:pose": {"orientation": [0, 0, 1]}})"), "/twinbridge:pose/orientation",
                   "must have 4 items");
  expect_violation(with(R"({"twinbridge:pose": {"frame": ""}})"), "/twinbridge:pose/frame", "1 to 256 bytes");
  expect_violation(with(R"({"twinbridge:pose": {"frame": 3}})"), "/twinbridge:pose/frame",
                   "must be a string, not integer");
  expect_violation(with(R"({"twinbridge:pose": {"postion": [0, 0, 0]}})"), "/twinbridge:pose/postion",
                   "is not a member of the twinbridge pose");
  expect_violation(with(R"({"twinbridge:pose": [0, 0, 0]})"), "/twinbridge:pose",
                   "must be an object, not array");
}

TEST(ThingDescriptionTest, NormalisesANearlyUnitQuaternion) {
  // Norm 1 + 5e-7: within the tolerance, so accepted and scaled to norm 1.
  const double s = (1 + 5e-7) / std::sqrt(2.0);
  auto doc = minimal();
  doc.as_object()[kPoseMember] = json::object{{"orientation", json::array{0, s, 0, s}}};
  const auto td = parse_thing_description(doc);
  ASSERT_TRUE(td.has_value()) << td.error().detail;
  const auto& q = td->pose->orientation;
  EXPECT_NEAR(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3], 1.0, 1e-15);
  EXPECT_NEAR(q[1], 1 / std::sqrt(2.0), 1e-15);
  EXPECT_NE(q[1], s);

  // Reading the written-back pose again changes nothing (normalising is idempotent).
  const auto again = parse_thing_description(json::value(to_json(*td)));
  ASSERT_TRUE(again.has_value());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(again->pose->orientation[i], q[i]) << i;

  // Norm 1 + 2e-6: outside it.
  const double t = (1 + 2e-6) / std::sqrt(2.0);
  doc.as_object()[kPoseMember] = json::object{{"orientation", json::array{0, t, 0, t}}};
  expect_violation(doc, "/twinbridge:pose/orientation", "must be a unit quaternion");
}

TEST(ThingDescriptionTest, ToJsonWritesThePoseBackAndRoundTrips) {
  for (const auto* name : {"lamp_http.td.json", "mqtt_sensor.td.json", "robot_arm.td.json"}) {
    SCOPED_TRACE(name);
    const auto doc = load(name);
    const auto td = parse_thing_description(doc);
    ASSERT_TRUE(td.has_value());
    const auto out = to_json(*td);
    ASSERT_TRUE(out.contains(kPoseMember));
    // Everything but the pose is as given; the pose is complete (defaults written out).
    auto without_pose = out;
    without_pose.erase(kPoseMember);
    auto given = doc.as_object();
    given.erase(kPoseMember);
    EXPECT_EQ(without_pose, given);
    EXPECT_EQ(out.at(kPoseMember).as_object().size(), 3u);

    const auto again = parse_thing_description(json::parse(json::serialize(out)));
    ASSERT_TRUE(again.has_value()) << again.error().detail;
    EXPECT_EQ(again->document, td->document);
    EXPECT_EQ(again->id, td->id);
    EXPECT_EQ(again->property_names, td->property_names);
    ASSERT_TRUE(again->pose.has_value());
    EXPECT_EQ(again->pose->frame, td->pose->frame);
    for (int i = 0; i < 3; ++i) EXPECT_DOUBLE_EQ(again->pose->position[i], td->pose->position[i]);
    for (int i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(again->pose->orientation[i], td->pose->orientation[i]);
  }
  const auto plain = parse_thing_description(minimal());
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(to_json(*plain), minimal().as_object());
}

}  // namespace
}  // namespace twinbridge::core
