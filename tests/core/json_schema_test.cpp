#include "core/json_schema.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace twinbridge::core {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

boost::json::value parse(std::string_view text) {
  boost::json::parse_options options;
  options.max_depth = 256;
  return boost::json::parse(text, {}, options);
}

JsonSchema schema(std::string_view text) {
  auto compiled = JsonSchema::compile(parse(text));
  if (!compiled) throw std::runtime_error("schema does not compile: " + compiled.error().detail);
  return std::move(*compiled);
}

// The (pointer, detail) pairs of the violations of `instance`; checks that validate() agrees with them.
Fields errors_of(const JsonSchema& s, std::string_view instance, std::string_view base_pointer = "") {
  std::vector<FieldError> errors;
  const bool valid = s.validate(parse(instance), errors, base_pointer);
  EXPECT_EQ(valid, errors.empty()) << instance;
  Fields out;
  for (const auto& e : errors) {
    EXPECT_EQ(e.in, FieldIn::body);
    out.emplace_back(e.pointer, e.detail);
  }
  return out;
}

bool valid(const JsonSchema& s, std::string_view instance) {
  std::vector<FieldError> errors;
  return s.validate(parse(instance), errors);
}

// The single field of the compile error of `text` ({"", ""} when it compiles).
std::pair<std::string, std::string> compile_error(std::string_view text) {
  const auto compiled = JsonSchema::compile(parse(text));
  if (compiled) return {};
  EXPECT_EQ(compiled.error().code, Errc::validation_failed);
  EXPECT_EQ(compiled.error().fields.size(), 1u);
  if (compiled.error().fields.empty()) return {"(no field)", compiled.error().detail};
  return {compiled.error().fields.front().pointer, compiled.error().fields.front().detail};
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

TEST(JsonSchemaTest, TypeAcceptsEachJsonType) {
  EXPECT_TRUE(valid(schema(R"({"type":"null"})"), "null"));
  EXPECT_TRUE(valid(schema(R"({"type":"boolean"})"), "false"));
  EXPECT_TRUE(valid(schema(R"({"type":"object"})"), "{}"));
  EXPECT_TRUE(valid(schema(R"({"type":"array"})"), "[]"));
  EXPECT_TRUE(valid(schema(R"({"type":"string"})"), R"("x")"));
  EXPECT_TRUE(valid(schema(R"({"type":"number"})"), "1.5"));
  EXPECT_TRUE(valid(schema(R"({"type":"number"})"), "7"));
  EXPECT_FALSE(valid(schema(R"({"type":"null"})"), "0"));
  EXPECT_FALSE(valid(schema(R"({"type":"boolean"})"), "0"));
  EXPECT_FALSE(valid(schema(R"({"type":"object"})"), "[]"));
  EXPECT_FALSE(valid(schema(R"({"type":"array"})"), "{}"));
  EXPECT_FALSE(valid(schema(R"({"type":"string"})"), "1"));
  EXPECT_FALSE(valid(schema(R"({"type":"number"})"), R"("1")"));
  EXPECT_EQ(errors_of(schema(R"({"type":"string"})"), "1"), (Fields{{"", "must be a string, not integer"}}));
}

TEST(JsonSchemaTest, IntegerAcceptsWholeNumbersOnly) {
  const auto s = schema(R"({"type":"integer"})");
  EXPECT_TRUE(valid(s, "1"));
  EXPECT_TRUE(valid(s, "-3"));
  EXPECT_TRUE(valid(s, "1.0"));
  EXPECT_TRUE(valid(s, "18446744073709551615"));
  EXPECT_TRUE(valid(s, "1e300"));
  EXPECT_FALSE(valid(s, "1.5"));
  EXPECT_FALSE(valid(s, R"("1")"));
  EXPECT_EQ(errors_of(s, "0.5"), (Fields{{"", "must be an integer, not number"}}));
}

TEST(JsonSchemaTest, TypeListAcceptsAnyOfItsTypes) {
  const auto s = schema(R"({"type":["string","null"]})");
  EXPECT_TRUE(valid(s, "null"));
  EXPECT_TRUE(valid(s, R"("a")"));
  EXPECT_EQ(errors_of(s, "3"), (Fields{{"", "must be a string or null, not integer"}}));
  EXPECT_EQ(errors_of(schema(R"({"type":["object","array","boolean"]})"), "3"),
            (Fields{{"", "must be an object, an array or a boolean, not integer"}}));
}

TEST(JsonSchemaTest, WrongTypeReportsOnlyTheTypeError) {
  const auto s = schema(R"({"type":"string","enum":["a","b"],"minLength":3})");
  EXPECT_EQ(errors_of(s, "4"), (Fields{{"", "must be a string, not integer"}}));
}

TEST(JsonSchemaTest, EnumListsTheAllowedValues) {
  const auto s = schema(R"({"enum":["usage","subscription"]})");
  EXPECT_TRUE(valid(s, R"("usage")"));
  EXPECT_EQ(errors_of(s, R"("free")"), (Fields{{"", R"(must be one of "usage", "subscription")"}}));
  const auto numbers = schema(R"({"enum":[1, 2.5, null, {"a":[1]}]})");
  EXPECT_TRUE(valid(numbers, "1.0"));
  EXPECT_TRUE(valid(numbers, "2.5"));
  EXPECT_TRUE(valid(numbers, "null"));
  EXPECT_TRUE(valid(numbers, R"({"a":[1.0]})"));
  EXPECT_FALSE(valid(numbers, "true"));
  EXPECT_FALSE(valid(numbers, R"({"a":[1, 2]})"));
  EXPECT_EQ(errors_of(numbers, "3"), (Fields{{"", R"(must be one of 1, 2.5, null, {"a":[1]})"}}));
}

TEST(JsonSchemaTest, ConstComparesJsonValues) {
  const auto s = schema(R"({"const":{"a":1,"b":[true,"x"]}})");
  EXPECT_TRUE(valid(s, R"({"b":[true,"x"],"a":1.0})"));
  EXPECT_FALSE(valid(s, R"({"a":1,"b":[true,"x"],"c":0})"));
  EXPECT_FALSE(valid(s, R"({"a":1,"b":["x",true]})"));
  EXPECT_FALSE(valid(s, R"({"a":true,"b":[true,"x"]})"));
  EXPECT_EQ(errors_of(schema(R"({"const":"usage"})"), R"("use")"), (Fields{{"", R"(must be "usage")"}}));
  EXPECT_FALSE(valid(schema(R"({"const":1})"), "true"));
  EXPECT_FALSE(valid(schema(R"({"const":false})"), "0"));
}

TEST(JsonSchemaTest, PropertiesAndRequiredPointAtTheMember) {
  const auto s = schema(R"({
    "type": "object",
    "required": ["name", "owner"],
    "properties": {
      "name": {"type": "string", "maxLength": 256},
      "owner": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
    }
  })");
  EXPECT_TRUE(valid(s, R"({"name":"n","owner":{"id":"o"}})"));
  EXPECT_EQ(errors_of(s, R"({"owner":{"id":7}})"),
            (Fields{{"/name", "is required"}, {"/owner/id", "must be a string, not integer"}}));
  EXPECT_EQ(errors_of(s, R"({"name":"n","owner":{}})"), (Fields{{"/owner/id", "is required"}}));
  EXPECT_EQ(errors_of(s, std::string(R"({"owner":{"id":"o"},"name":")") + std::string(257, 'x') + "\"}"),
            (Fields{{"/name", "must be at most 256 characters"}}));
}

TEST(JsonSchemaTest, PointersEscapeMemberNamesAndCarryTheBase) {
  const auto s = schema(R"({"properties":{"a/b":{"type":"string"},"m~n":{"required":["x/y"]}}})");
  EXPECT_EQ(errors_of(s, R"({"a/b":1,"m~n":{}})"),
            (Fields{{"/a~1b", "must be a string, not integer"}, {"/m~0n/x~1y", "is required"}}));
  EXPECT_EQ(errors_of(s, R"({"a/b":1})", "/systems/0"),
            (Fields{{"/systems/0/a~1b", "must be a string, not integer"}}));
}

TEST(JsonSchemaTest, AdditionalPropertiesFalseRejectsUnknownMembers) {
  const auto s = schema(R"({"properties":{"a":{}},"additionalProperties":false})");
  EXPECT_TRUE(valid(s, R"({"a":1})"));
  EXPECT_EQ(errors_of(s, R"({"a":1,"b":2,"c/d":3})"), (Fields{{"/b", "is not allowed (unknown member)"},
                                                              {"/c~1d", "is not allowed (unknown member)"}}));
}

TEST(JsonSchemaTest, AdditionalPropertiesSchemaValidatesUnknownMembers) {
  const auto s =
      schema(R"({"properties":{"a":{"type":"string"}},"additionalProperties":{"type":"integer"}})");
  EXPECT_TRUE(valid(s, R"({"a":"x","b":2})"));
  EXPECT_EQ(errors_of(s, R"({"a":"x","b":"y"})"), (Fields{{"/b", "must be an integer, not string"}}));
}

TEST(JsonSchemaTest, PatternPropertiesValidateMatchingMembers) {
  const auto s = schema(R"({
    "properties": {"id": {"type": "string"}},
    "patternProperties": {"^x-": {"type": "string"}, "count$": {"type": "integer"}},
    "additionalProperties": false
  })");
  EXPECT_TRUE(valid(s, R"({"id":"a","x-trace":"t","item_count":3})"));
  EXPECT_EQ(errors_of(s, R"({"x-trace":1,"item_count":"3","other":0})"),
            (Fields{{"/x-trace", "must be a string, not integer"},
                    {"/item_count", "must be an integer, not string"},
                    {"/other", "is not allowed (unknown member)"}}));
  // A member matching two patterns must satisfy both.
  EXPECT_FALSE(valid(s, R"({"x-count":"3"})"));
}

TEST(JsonSchemaTest, PropertyNamesCheckEveryName) {
  const auto s = schema(R"({"propertyNames":{"maxLength":5,"pattern":"^[a-z]+$"}})");
  EXPECT_TRUE(valid(s, R"({"abc":1,"hello":2})"));
  EXPECT_EQ(errors_of(s, R"({"abcdefg":1,"Ab":2})"),
            (Fields{{"/abcdefg", "name must be at most 5 characters"},
                    {"/Ab", R"(name must match the pattern "^[a-z]+$")"}}));
}

TEST(JsonSchemaTest, MinAndMaxProperties) {
  const auto s = schema(R"({"minProperties":1,"maxProperties":2})");
  EXPECT_TRUE(valid(s, R"({"a":1})"));
  EXPECT_TRUE(valid(s, R"({"a":1,"b":2})"));
  EXPECT_EQ(errors_of(s, "{}"), (Fields{{"", "must have at least 1 member"}}));
  EXPECT_EQ(errors_of(s, R"({"a":1,"b":2,"c":3})"), (Fields{{"", "must have at most 2 members"}}));
  EXPECT_TRUE(valid(s, "[]"));  // applies to objects only
}

TEST(JsonSchemaTest, ItemsValidatesEveryItem) {
  const auto s = schema(R"({"items":{"type":"string"}})");
  EXPECT_TRUE(valid(s, R"(["a","b"])"));
  EXPECT_TRUE(valid(s, "[]"));
  EXPECT_EQ(errors_of(s, R"(["a",1,"c",null])"),
            (Fields{{"/1", "must be a string, not integer"}, {"/3", "must be a string, not null"}}));
}

TEST(JsonSchemaTest, PrefixItemsValidateByPositionAndItemsTheRest) {
  const auto s = schema(R"({"prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})");
  EXPECT_TRUE(valid(s, R"(["a",1])"));
  EXPECT_TRUE(valid(s, R"(["a"])"));
  EXPECT_EQ(errors_of(s, R"([1,"a",true])"), (Fields{{"/0", "must be a string, not integer"},
                                                     {"/1", "must be an integer, not string"},
                                                     {"/2", "is not allowed"}}));
}

TEST(JsonSchemaTest, MinAndMaxItems) {
  const auto s = schema(R"({"minItems":2,"maxItems":3})");
  EXPECT_TRUE(valid(s, "[1,2]"));
  EXPECT_EQ(errors_of(s, "[1]"), (Fields{{"", "must have at least 2 items"}}));
  EXPECT_EQ(errors_of(s, "[1,2,3,4]"), (Fields{{"", "must have at most 3 items"}}));
  EXPECT_EQ(errors_of(schema(R"({"maxItems":1})"), "[1,2]"), (Fields{{"", "must have at most 1 item"}}));
}

TEST(JsonSchemaTest, UniqueItemsUsesJsonEquality) {
  const auto s = schema(R"({"uniqueItems":true})");
  EXPECT_TRUE(valid(s, R"([1,"1",true,null,[1],{"a":1}])"));
  EXPECT_TRUE(valid(s, R"([{"a":1,"b":2},{"a":1,"b":3}])"));
  EXPECT_EQ(errors_of(s, "[1,2,1.0]"),
            (Fields{{"", "must not contain duplicate items (items 0 and 2 are equal)"}}));
  EXPECT_FALSE(valid(s, R"([{"a":1,"b":2},{"b":2,"a":1}])"));
  EXPECT_TRUE(valid(schema(R"({"uniqueItems":false})"), "[1,1]"));
}

TEST(JsonSchemaTest, UniqueItemsOnLongArrays) {
  const auto s = schema(R"({"uniqueItems":true})");
  std::string items = "[";
  for (int i = 0; i < 1000; ++i) items += std::to_string(i) + ",";
  EXPECT_TRUE(valid(s, items + R"("0", {"k":[1,2]}, {"k":[2,1]}])"));
  EXPECT_EQ(errors_of(s, items + R"(500.0, 7, {"a":1}])"),
            (Fields{{"", "must not contain duplicate items (items 500 and 1000 are equal)"}}));
  EXPECT_FALSE(valid(s, items + R"({"a":1,"b":[true]}, "x", {"b":[true],"a":1.0}])"));
}

TEST(JsonSchemaTest, LengthCountsCodePointsNotBytes) {
  const auto at_most_one = schema(R"({"maxLength":1})");
  EXPECT_TRUE(valid(at_most_one, "\"\xC3\xA9\""));          // é: 2 bytes
  EXPECT_TRUE(valid(at_most_one, "\"\xF0\x9F\x98\x80\""));  // 😀: 4 bytes
  EXPECT_EQ(errors_of(at_most_one, "\"\xC3\xA9\xC3\xA9\""), (Fields{{"", "must be at most 1 character"}}));
  const auto at_least_two = schema(R"({"minLength":2})");
  EXPECT_FALSE(valid(at_least_two, "\"\xC3\xA9\""));
  EXPECT_FALSE(valid(at_least_two, "\"\xF0\x9F\x98\x80\""));
  EXPECT_TRUE(valid(at_least_two, "\"\xF0\x9F\x98\x80\xC3\xA9\""));
  EXPECT_EQ(errors_of(at_least_two, R"("a")"), (Fields{{"", "must be at least 2 characters"}}));
  EXPECT_TRUE(valid(at_least_two, "5"));  // applies to strings only
}

TEST(JsonSchemaTest, PatternSearchesAnywhereUnlessAnchored) {
  const auto s = schema(R"({"pattern":"[0-9]{3}"})");
  EXPECT_TRUE(valid(s, R"("ab123cd")"));
  EXPECT_EQ(errors_of(s, R"("ab12")"), (Fields{{"", R"(must match the pattern "[0-9]{3}")"}}));
  const auto anchored = schema(R"({"pattern":"^[a-z][a-z0-9-]*$"})");
  EXPECT_TRUE(valid(anchored, R"("twin-7")"));
  EXPECT_FALSE(valid(anchored, R"("Twin")"));
  EXPECT_FALSE(valid(anchored, R"("twin\n7")"));
}

TEST(JsonSchemaTest, PatternRefusesSubjectsTooLongToMatchSafely) {
  const auto s = schema(R"({"pattern":"^(a|b)*$"})");
  EXPECT_TRUE(valid(s, "\"" + std::string(JsonSchema::kMaxPatternSubjectBytes, 'a') + "\""));
  const auto errors = errors_of(s, "\"" + std::string(JsonSchema::kMaxPatternSubjectBytes + 1, 'a') + "\"");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(contains(errors[0].second, "too long to check against the pattern")) << errors[0].second;
}

TEST(JsonSchemaTest, FormatDateTime) {
  const auto s = schema(R"({"format":"date-time"})");
  EXPECT_TRUE(valid(s, R"("2026-11-24T11:14:12Z")"));
  EXPECT_TRUE(valid(s, R"("2026-11-24T11:14:12.123456+01:00")"));
  EXPECT_TRUE(valid(s, R"("2024-02-29T00:00:00Z")"));
  EXPECT_EQ(errors_of(s, R"("2026-02-30T10:00:00Z")"),
            (Fields{{"", "must be a date-time as in RFC 3339 (e.g. 2026-11-24T11:14:12Z)"}}));
  EXPECT_FALSE(valid(s, R"("2026-11-24")"));
  EXPECT_FALSE(valid(s, R"("2026-11-24T25:00:00Z")"));
  EXPECT_FALSE(valid(s, R"("2026-11-24T11:14:12")"));
  EXPECT_TRUE(valid(s, R"("2016-12-31T23:59:60Z")"));
  EXPECT_TRUE(valid(s, R"("2016-12-31T15:59:60-08:00")"));
  EXPECT_FALSE(valid(s, R"("2016-12-31T23:58:60Z")"));  // a leap second ends a UTC day
  EXPECT_TRUE(valid(s, "12"));                          // applies to strings only
}

TEST(JsonSchemaTest, FormatUri) {
  const auto s = schema(R"({"format":"uri"})");
  for (const char* ok : {"https://example.com", "https://user@[::1]:8443/a/b?c=d&e#f", "urn:isbn:0451450523",
                         "mailto:twin@example.com", "http://192.168.0.1/", "mqtt://broker:1883/twins/%2F",
                         "https://[2001:db8::7]/", "file:///etc/hosts"}) {
    EXPECT_TRUE(valid(s, boost::json::serialize(boost::json::value(ok)))) << ok;
  }
  for (const char* bad :
       {"", "/relative/path", "//host/path", "example.com", "1http://x", "http://exa mple.com",
        "http://x/%zz", "http://[::1/", "http://host:port/", "https://\xC3\xA9.example"}) {
    EXPECT_FALSE(valid(s, boost::json::serialize(boost::json::value(bad)))) << bad;
  }
  EXPECT_EQ(errors_of(s, R"("/a")"), (Fields{{"", "must be an absolute URI (RFC 3986) with a scheme"}}));
}

TEST(JsonSchemaTest, FormatUriReference) {
  const auto s = schema(R"({"format":"uri-reference"})");
  for (const char* ok :
       {"https://example.com/x", "/relative/path", "//host/path", "x/y?z", "#frag", "", "a:b"}) {
    EXPECT_TRUE(valid(s, boost::json::serialize(boost::json::value(ok)))) << ok;
  }
  for (const char* bad : {"1a:b", "a b", "\\\\server\\share", "#a#b", "x/%4"}) {
    EXPECT_FALSE(valid(s, boost::json::serialize(boost::json::value(bad)))) << bad;
  }
}

TEST(JsonSchemaTest, FormatEmail) {
  const auto s = schema(R"({"format":"email"})");
  for (const char* ok :
       {"ops@example.com", "first.last+tag@sub.example.org", "a@localhost", "\"joe bloggs\"@example.com",
        "\"a@b\"@example.com", "ops@[192.0.2.1]", "ops@[IPv6:2001:db8::1]"}) {
    EXPECT_TRUE(valid(s, boost::json::serialize(boost::json::value(ok)))) << ok;
  }
  for (const char* bad : {"", "example.com", "@example.com", "a@", ".a@example.com", "a..b@example.com",
                          "a@-example.com", "a@example..com", "a b@example.com", "a@exa_mple.com",
                          "\"unterminated@example.com", "ops@[192.0.2.300]", "ops@[2001:db8::1]"}) {
    EXPECT_FALSE(valid(s, boost::json::serialize(boost::json::value(bad)))) << bad;
  }
  EXPECT_EQ(errors_of(s, R"("nobody")"), (Fields{{"", "must be an email address"}}));
}

TEST(JsonSchemaTest, FormatUuid) {
  const auto s = schema(R"({"format":"uuid"})");
  EXPECT_TRUE(valid(s, R"("2eb8aa08-aa98-11ea-b4aa-73b441d16380")"));
  EXPECT_TRUE(valid(s, R"("2EB8AA08-AA98-11EA-B4AA-73B441D16380")"));
  EXPECT_FALSE(valid(s, R"("2eb8aa08aa9811eab4aa73b441d16380")"));
  EXPECT_FALSE(valid(s, R"("2eb8aa08-aa98-11ea-b4aa-73b441d1638g")"));
  EXPECT_FALSE(valid(s, R"("{2eb8aa08-aa98-11ea-b4aa-73b441d16380}")"));
}

TEST(JsonSchemaTest, MinimumAndMaximum) {
  const auto s = schema(R"({"minimum":0,"maximum":100.5})");
  EXPECT_TRUE(valid(s, "0"));
  EXPECT_TRUE(valid(s, "100.5"));
  EXPECT_EQ(errors_of(s, "-1"), (Fields{{"", "must be at least 0"}}));
  EXPECT_EQ(errors_of(s, "100.6"), (Fields{{"", "must be at most 100.5"}}));
  EXPECT_TRUE(valid(s, R"("1000")"));  // applies to numbers only
}

TEST(JsonSchemaTest, ExclusiveBounds) {
  const auto s = schema(R"({"exclusiveMinimum":0,"exclusiveMaximum":1})");
  EXPECT_TRUE(valid(s, "0.5"));
  EXPECT_EQ(errors_of(s, "0"), (Fields{{"", "must be greater than 0"}}));
  EXPECT_EQ(errors_of(s, "1.0"), (Fields{{"", "must be less than 1"}}));
}

TEST(JsonSchemaTest, BoundsCompareLargeIntegersExactly) {
  const auto s = schema(R"({"maximum":9007199254740992})");
  EXPECT_TRUE(valid(s, "9007199254740992"));
  EXPECT_FALSE(valid(s, "9007199254740993"));  // equal to the bound once rounded to a double
  const auto d = schema(R"({"maximum":9007199254740992.0})");
  EXPECT_FALSE(valid(d, "9007199254740993"));
  EXPECT_TRUE(valid(schema(R"({"minimum":-1})"), "18446744073709551615"));
  EXPECT_FALSE(valid(schema(R"({"maximum":-1})"), "18446744073709551615"));
  EXPECT_FALSE(valid(schema(R"({"minimum":0})"), "-9223372036854775808"));
}

TEST(JsonSchemaTest, MultipleOfIsExactInDecimal) {
  EXPECT_TRUE(valid(schema(R"({"multipleOf":2})"), "10"));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":2})"), "10.0"));
  EXPECT_EQ(errors_of(schema(R"({"multipleOf":2})"), "7"), (Fields{{"", "must be a multiple of 2"}}));
  const auto cents = schema(R"({"multipleOf":0.01})");
  EXPECT_TRUE(valid(cents, "19.99"));
  EXPECT_TRUE(valid(cents, "0.07"));
  EXPECT_TRUE(valid(cents, "1000000"));
  EXPECT_EQ(errors_of(cents, "19.999"), (Fields{{"", "must be a multiple of 0.01"}}));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":0.1})"), "0.3"));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":0.0001})"), "0.0075"));
  EXPECT_FALSE(valid(schema(R"({"multipleOf":0.0001})"), "0.00751"));
  EXPECT_FALSE(valid(schema(R"({"multipleOf":0.123456789})"), "1e308"));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":1e-300})"), "1e300"));
  EXPECT_FALSE(valid(schema(R"({"multipleOf":1e300})"), "1"));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":3})"), "-9"));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":7})"), "18446744073709551614"));
  EXPECT_FALSE(valid(schema(R"({"multipleOf":7})"), "18446744073709551615"));
  EXPECT_TRUE(valid(schema(R"({"multipleOf":1.5})"), "0"));
}

TEST(JsonSchemaTest, AllOfReportsEveryFailingPart) {
  const auto s = schema(R"({"allOf":[{"minLength":3},{"pattern":"^a"}]})");
  EXPECT_TRUE(valid(s, R"("abc")"));
  EXPECT_EQ(errors_of(s, R"("b")"),
            (Fields{{"", "must be at least 3 characters"}, {"", R"(must match the pattern "^a")"}}));
}

TEST(JsonSchemaTest, AnyOfReportsOneErrorAtTheValue) {
  const auto s =
      schema(R"({"properties":{"v":{"anyOf":[{"type":"string"},{"type":"integer","minimum":0}]}}})");
  EXPECT_TRUE(valid(s, R"({"v":"x"})"));
  EXPECT_TRUE(valid(s, R"({"v":3})"));
  EXPECT_EQ(errors_of(s, R"({"v":-1})"), (Fields{{"/v", "must match at least one of the 2 alternatives"}}));
}

TEST(JsonSchemaTest, OneOfCountsTheMatches) {
  const auto s = schema(R"({"oneOf":[{"type":"integer"},{"minimum":2},{"type":"string"}]})");
  EXPECT_TRUE(valid(s, "1"));
  EXPECT_TRUE(valid(s, "2.5"));
  EXPECT_EQ(errors_of(s, "3"), (Fields{{"", "must match exactly one of the 3 alternatives (matched 2)"}}));
  EXPECT_EQ(errors_of(s, "1.5"), (Fields{{"", "must match exactly one of the 3 alternatives (matched 0)"}}));
}

constexpr std::string_view kCharging = R"({
  "$defs": {
    "usage": {
      "type": "object",
      "required": ["model", "unit", "price"],
      "properties": {
        "model": {"const": "usage"},
        "unit": {"enum": ["request", "GB"]},
        "price": {"type": "number", "minimum": 0}
      },
      "additionalProperties": false
    },
    "subscription": {
      "type": "object",
      "required": ["model", "period"],
      "properties": {
        "model": {"const": "subscription"},
        "period": {"enum": ["month", "year"]}
      },
      "additionalProperties": false
    }
  },
  "type": "object",
  "properties": {
    "charge": {"oneOf": [{"$ref": "#/$defs/usage"}, {"$ref": "#/$defs/subscription"}]},
    "fallback": {"anyOf": [{"$ref": "#/$defs/usage"}, {"$ref": "#/$defs/subscription"}]}
  }
})";

TEST(JsonSchemaTest, DiscriminatedOneOfReportsTheChosenAlternative) {
  const auto s = schema(kCharging);
  EXPECT_TRUE(valid(s, R"({"charge":{"model":"usage","unit":"GB","price":0.5}})"));
  EXPECT_TRUE(valid(s, R"({"charge":{"model":"subscription","period":"year"}})"));
  EXPECT_EQ(errors_of(s, R"({"charge":{"model":"usage","unit":"TB","price":-1,"period":"month"}})"),
            (Fields{{"/charge/unit", R"(must be one of "request", "GB")"},
                    {"/charge/price", "must be at least 0"},
                    {"/charge/period", "is not allowed (unknown member)"}}));
  EXPECT_EQ(errors_of(s, R"({"charge":{"model":"subscription"}})"),
            (Fields{{"/charge/period", "is required"}}));
  EXPECT_EQ(errors_of(s, R"({"charge":{"model":"free"}})"),
            (Fields{{"/charge/model", R"(must be one of "usage", "subscription")"}}));
  EXPECT_EQ(errors_of(s, R"({"charge":{"period":"year"}})"), (Fields{{"/charge/model", "is required"}}));
  EXPECT_EQ(errors_of(s, R"({"charge":"usage"})"),
            (Fields{{"/charge", "must match exactly one of the 2 alternatives (matched 0)"}}));
}

TEST(JsonSchemaTest, DiscriminatedAnyOfReportsTheChosenAlternative) {
  const auto s = schema(kCharging);
  EXPECT_EQ(errors_of(s, R"({"fallback":{"model":"subscription","period":"week"}})"),
            (Fields{{"/fallback/period", R"(must be one of "month", "year")"}}));
}

TEST(JsonSchemaTest, NotRejectsMatchingValues) {
  const auto s = schema(R"({"not":{"required":["legacy"]}})");
  EXPECT_TRUE(valid(s, R"({"new":1})"));
  EXPECT_EQ(errors_of(s, R"({"legacy":1})"), (Fields{{"", R"(must not match the schema given by "not")"}}));
}

TEST(JsonSchemaTest, IfThenElse) {
  const auto s = schema(R"({
    "if": {"properties": {"auth": {"const": "oauth2"}}, "required": ["auth"]},
    "then": {"required": ["token_url"]},
    "else": {"not": {"required": ["token_url"]}}
  })");
  EXPECT_TRUE(valid(s, R"({"auth":"oauth2","token_url":"https://x/token"})"));
  EXPECT_TRUE(valid(s, R"({"auth":"none"})"));
  EXPECT_EQ(errors_of(s, R"({"auth":"oauth2"})"), (Fields{{"/token_url", "is required"}}));
  EXPECT_FALSE(valid(s, R"({"auth":"none","token_url":"x"})"));
  EXPECT_TRUE(valid(schema(R"({"if":{"type":"string"}})"), "1"));
}

TEST(JsonSchemaTest, BooleanSchemas) {
  EXPECT_TRUE(valid(schema("true"), R"({"anything":[1]})"));
  EXPECT_EQ(errors_of(schema("false"), "1"), (Fields{{"", "is not allowed"}}));
  EXPECT_EQ(errors_of(schema(R"({"properties":{"secret":false}})"), R"({"secret":1})"),
            (Fields{{"/secret", "is not allowed"}}));
}

TEST(JsonSchemaTest, RefResolvesDefsAndPointers) {
  const auto s = schema(R"({
    "$defs": {"id": {"type": "string", "pattern": "^[a-z]+$"}, "a/b": {"minimum": 1},
             "choices": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    "properties": {
      "id": {"$ref": "#/$defs/id"},
      "copy": {"$ref": "#/properties/id"},
      "escaped": {"$ref": "#/$defs/a~1b"},
      "encoded": {"$ref": "#/%24defs/id"},
      "indexed": {"$ref": "#/$defs/choices/anyOf/1"},
      "whole": {"$ref": "#/properties/id", "maxLength": 2}
    }
  })");
  EXPECT_TRUE(valid(s, R"({"id":"abc","copy":"x","escaped":2,"encoded":"y","indexed":null,"whole":"ab"})"));
  EXPECT_EQ(errors_of(s, R"({"id":"A","copy":1,"escaped":0,"encoded":"B","indexed":0,"whole":"abc"})"),
            (Fields{{"/id", R"(must match the pattern "^[a-z]+$")"},
                    {"/copy", "must be a string, not integer"},
                    {"/escaped", "must be at least 1"},
                    {"/encoded", R"(must match the pattern "^[a-z]+$")"},
                    {"/indexed", "must be null, not integer"},
                    {"/whole", "must be at most 2 characters"}}));
}

TEST(JsonSchemaTest, RecursiveRefThroughSubValuesIsAllowed) {
  const auto s = schema(R"({
    "$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                       "additionalProperties": false}},
    "$ref": "#/$defs/node"
  })");
  EXPECT_TRUE(valid(s, R"({"children":[{"children":[]},{"children":[{}]}]})"));
  EXPECT_EQ(errors_of(s, R"({"children":[{"children":[{"x":1}]}]})"),
            (Fields{{"/children/0/children/0/x", "is not allowed (unknown member)"}}));
  std::string deep = "{}";
  for (int i = 0; i < 60; ++i) deep = R"({"children":[)" + deep + "]}";
  EXPECT_TRUE(valid(s, deep));
}

TEST(JsonSchemaTest, RefCyclesThatConsumeNoInputAreCompileErrors) {
  EXPECT_EQ(compile_error(R"({"$ref":"#"})").first, "/$ref");
  const auto [pointer, detail] =
      compile_error(R"({"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"allOf":[{"$ref":"#/$defs/a"}]}}})");
  EXPECT_TRUE(pointer == "/$defs/a/$ref" || pointer == "/$defs/b/allOf/0/$ref") << pointer;
  EXPECT_TRUE(contains(detail, "cycle")) << detail;
  EXPECT_EQ(compile_error(R"({"anyOf":[{"type":"string"},{"$ref":"#"}]})").first, "/anyOf/1/$ref");
  EXPECT_EQ(compile_error(R"({"properties":{"a":{"not":{"$ref":"#/properties/a"}}}})").first,
            "/properties/a/not/$ref");
}

TEST(JsonSchemaTest, UnresolvableRefsAreCompileErrors) {
  EXPECT_EQ(compile_error(R"({"properties":{"a":{"$ref":"#/$defs/missing"}}})").first, "/properties/a/$ref");
  EXPECT_EQ(compile_error(R"({"$ref":"https://example.com/schema"})").first, "/$ref");
  EXPECT_EQ(compile_error(R"({"$ref":"#anchor"})").first, "/$ref");
  EXPECT_EQ(compile_error(R"({"$ref":"#/$defs/%zz"})").first, "/$ref");
  EXPECT_EQ(compile_error(R"({"$ref":"#/allOf/01","allOf":[true,true]})").first, "/$ref");
}

TEST(JsonSchemaTest, DefsAreCompiledEvenWhenUnused) {
  EXPECT_EQ(compile_error(R"({"$defs":{"unused":{"minLenght":1}}})").first, "/$defs/unused/minLenght");
}

TEST(JsonSchemaTest, LongChainsOfRefsAreCompileErrors) {
  // Listed from the end of the chain so that compiling follows no long chain of $ref.
  boost::json::object defs;
  defs["d100"] = true;
  for (int i = 99; i >= 0; --i)
    defs["d" + std::to_string(i)] = {{"$ref", "#/$defs/d" + std::to_string(i + 1)}};
  boost::json::object root;
  root["$defs"] = std::move(defs);
  root["$ref"] = "#/$defs/d0";
  const auto compiled = JsonSchema::compile(root);
  ASSERT_FALSE(compiled);
  EXPECT_TRUE(contains(compiled.error().detail, "chain of more than 64 subschemas"))
      << compiled.error().detail;
}

TEST(JsonSchemaTest, ValidationRecursionIsBounded) {
  // Each level of array nesting goes through a chain of 60 $refs: 30 levels exceed the evaluator's limit.
  boost::json::object defs;
  defs["c59"] = {{"items", {{"$ref", "#/$defs/c0"}}}};
  for (int i = 58; i >= 0; --i)
    defs["c" + std::to_string(i)] = {{"$ref", "#/$defs/c" + std::to_string(i + 1)}};
  boost::json::object root;
  root["$defs"] = std::move(defs);
  root["$ref"] = "#/$defs/c0";
  const auto compiled = JsonSchema::compile(root);
  ASSERT_TRUE(compiled) << compiled.error().detail;
  std::string shallow = "[]";
  for (int i = 0; i < 5; ++i) shallow = "[" + shallow + "]";
  EXPECT_TRUE(valid(*compiled, shallow));
  std::string deep = "[]";
  for (int i = 0; i < 30; ++i) deep = "[" + deep + "]";
  const auto errors = errors_of(*compiled, deep);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].second, "is nested too deeply to validate");
}

TEST(JsonSchemaTest, SchemasNestedTooDeeplyAreCompileErrors) {
  boost::json::value nested = boost::json::object{{"type", "string"}};
  for (int i = 0; i < 200; ++i) nested = boost::json::object{{"items", std::move(nested)}};
  const auto compiled = JsonSchema::compile(nested);
  ASSERT_FALSE(compiled);
  EXPECT_TRUE(contains(compiled.error().detail, "nested more than 128 levels")) << compiled.error().detail;
}

TEST(JsonSchemaTest, UnknownAndUnsupportedKeywordsAreRejectedWithTheirPointer) {
  const auto [pointer, detail] = compile_error(R"({"properties":{"name":{"type":"string","maxLenght":5}}})");
  EXPECT_EQ(pointer, "/properties/name/maxLenght");
  EXPECT_EQ(detail, R"(unknown keyword "maxLenght")");
  EXPECT_EQ(
      compile_error(R"({"items":{"contains":{}}})"),
      (std::pair<std::string, std::string>{"/items/contains", R"(keyword "contains" is not supported)"}));
  EXPECT_EQ(compile_error(R"({"unevaluatedProperties":false})").first, "/unevaluatedProperties");
  const auto whole = JsonSchema::compile(parse(R"({"a/b":1})"));
  ASSERT_FALSE(whole);
  EXPECT_EQ(whole.error().detail, R"(invalid JSON Schema at /a~1b: unknown keyword "a/b")");
}

TEST(JsonSchemaTest, MalformedKeywordsAreRejectedWithTheirPointer) {
  EXPECT_EQ(compile_error(R"({"minLength":-1})").first, "/minLength");
  EXPECT_EQ(compile_error(R"({"maxItems":1.5})").first, "/maxItems");
  EXPECT_EQ(compile_error(R"({"type":["string","text"]})").first, "/type/1");
  EXPECT_EQ(compile_error(R"({"type":["string","string"]})").first, "/type/1");
  EXPECT_EQ(compile_error(R"({"type":[]})").first, "/type");
  EXPECT_EQ(compile_error(R"({"enum":[]})").first, "/enum");
  EXPECT_EQ(compile_error(R"({"required":["a",1]})").first, "/required/1");
  EXPECT_EQ(compile_error(R"({"required":["a","a"]})").first, "/required/1");
  EXPECT_EQ(compile_error(R"({"properties":{"a":3}})").first, "/properties/a");
  EXPECT_EQ(compile_error(R"({"items":[{"type":"string"}]})").first, "/items");
  EXPECT_EQ(compile_error(R"({"prefixItems":{}})").first, "/prefixItems");
  EXPECT_EQ(compile_error(R"({"oneOf":[]})").first, "/oneOf");
  EXPECT_EQ(compile_error(R"({"allOf":[{"type":"string"},{"minimum":"1"}]})").first, "/allOf/1/minimum");
  EXPECT_EQ(compile_error(R"({"multipleOf":0})").first, "/multipleOf");
  EXPECT_EQ(compile_error(R"({"uniqueItems":"yes"})").first, "/uniqueItems");
  EXPECT_EQ(compile_error(R"({"pattern":"(unclosed"})").first, "/pattern");
  EXPECT_EQ(compile_error(R"({"pattern":"\\p{L}"})").first, "/pattern");
  EXPECT_EQ(compile_error(R"({"pattern":"^\\cC$"})").first, "/pattern");
  EXPECT_EQ(compile_error(R"({"pattern":"^é$"})").first, "/pattern");
  EXPECT_EQ(compile_error(R"({"patternProperties":{"[":{}}})").first, "/patternProperties/[");
  EXPECT_EQ(compile_error(R"({"format":"date"})").first, "/format");
  EXPECT_EQ(compile_error(R"({"title":1})").first, "/title");
  EXPECT_EQ(compile_error(R"({"$schema":"http://json-schema.org/draft-07/schema#"})").first, "/$schema");
  EXPECT_EQ(compile_error(R"({"properties":{"a":{"$id":"https://example.com/a"}}})").first,
            "/properties/a/$id");
  EXPECT_EQ(compile_error("3"), (std::pair<std::string, std::string>{
                                    "", "must be a schema (an object or a boolean), not integer"}));
}

TEST(JsonSchemaTest, AnnotationsAreAccepted) {
  const auto s = schema(R"({
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://twinbridge.example/schemas/system.json",
    "$comment": "published schema",
    "title": "System",
    "description": "A registered system",
    "type": "object",
    "properties": {
      "id": {"type": "string", "readOnly": true, "examples": ["a"], "default": "x", "deprecated": false},
      "secret": {"type": "string", "writeOnly": true}
    }
  })");
  EXPECT_TRUE(valid(s, R"({"id":"a"})"));
}

TEST(JsonSchemaTest, CollectsEveryErrorInOnePass) {
  const auto s = schema(R"({
    "type": "object",
    "required": ["id", "name", "kind"],
    "properties": {
      "id": {"type": "string", "pattern": "^[a-z0-9-]+$"},
      "name": {"type": "string", "minLength": 1},
      "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
      "port": {"type": "integer", "minimum": 1, "maximum": 65535}
    },
    "additionalProperties": false
  })");
  EXPECT_EQ(errors_of(s, R"({"id":"Bad Id","name":"","tags":["a",1,"a"],"port":70000,"extra":true})"),
            (Fields{{"/kind", "is required"},
                    {"/id", R"(must match the pattern "^[a-z0-9-]+$")"},
                    {"/name", "must be at least 1 character"},
                    {"/tags", "must not contain duplicate items (items 0 and 2 are equal)"},
                    {"/tags/1", "must be a string, not integer"},
                    {"/port", "must be at most 65535"},
                    {"/extra", "is not allowed (unknown member)"}}));
}

TEST(JsonSchemaTest, MaxErrorsBoundsTheReport) {
  const auto s = schema(R"({"items":{"type":"string"}})");
  std::string many = "[";
  for (int i = 0; i < 200; ++i) many += i == 0 ? "0" : ",0";
  many += "]";
  const auto instance = parse(many);
  std::vector<FieldError> errors;
  EXPECT_FALSE(s.validate(instance, errors));
  EXPECT_EQ(errors.size(), 50u);
  errors.clear();
  EXPECT_FALSE(s.validate(instance, errors, "", 3));
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[2].pointer, "/2");
  errors.assign(1, FieldError{"/earlier", "kept"});
  EXPECT_FALSE(s.validate(instance, errors, "", 2));
  EXPECT_EQ(errors.size(), 3u);  // appends at most max_errors
  errors.clear();
  EXPECT_FALSE(s.validate(instance, errors, "", 0));
  EXPECT_TRUE(errors.empty());
  EXPECT_TRUE(s.validate(parse(R"(["a"])"), errors, "", 0));
}

TEST(JsonSchemaTest, CheckReturnsOneValidationError) {
  const auto s = schema(R"({"required":["a","b"]})");
  EXPECT_TRUE(s.check(parse(R"({"a":1,"b":2})")));
  const auto result = s.check(parse("{}"));
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code, Errc::validation_failed);
  ASSERT_EQ(result.error().fields.size(), 2u);
  EXPECT_EQ(result.error().fields[0].pointer, "/a");
  EXPECT_EQ(result.error().fields[1].pointer, "/b");
}

TEST(JsonSchemaTest, InstancesNestedTooDeeplyAreRejected) {
  boost::json::value deep = boost::json::array{};
  for (std::size_t i = 0; i < JsonSchema::kMaxInstanceDepth; ++i) deep = boost::json::array{std::move(deep)};
  std::vector<FieldError> errors;
  EXPECT_FALSE(schema("true").validate(deep, errors, "/body"));
  EXPECT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors.front().pointer, "/body");
  EXPECT_TRUE(contains(errors.front().detail, "nested more than 128 levels")) << errors.front().detail;
  errors.clear();
  EXPECT_TRUE(schema("true").validate(deep.get_array().front(), errors));
}

TEST(JsonSchemaTest, CopiesOutliveTheOriginal) {
  std::optional<JsonSchema> original =
      schema(R"({"$defs":{"s":{"type":"string"}},"items":{"$ref":"#/$defs/s"}})");
  const JsonSchema copy = *original;
  original.reset();
  EXPECT_TRUE(valid(copy, R"(["a"])"));
  EXPECT_FALSE(valid(copy, "[1]"));
}

TEST(JsonSchemaTest, ValidatesConcurrentlyFromFourThreads) {
  const auto s = schema(kCharging);
  const auto good = parse(R"({"charge":{"model":"usage","unit":"GB","price":0.5}})");
  const auto bad = parse(R"({"charge":{"model":"usage","unit":"TB","price":-1}})");
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const JsonSchema mine = t % 2 == 0 ? s : JsonSchema(s);
      for (int i = 0; i < 500; ++i) {
        std::vector<FieldError> errors;
        if (!mine.validate(good, errors) || !errors.empty()) ++failures;
        errors.clear();
        if (mine.validate(bad, errors) || errors.size() != 2 || errors[0].pointer != "/charge/unit" ||
            errors[1].pointer != "/charge/price") {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace twinbridge::core
