#include "core/json_reader.hpp"

#include <gtest/gtest.h>
#include <boost/json/error.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <bit>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace twinbridge::core {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// The (pointer, detail) pairs of `errors`, in order; every error of a body reader is about the body.
Fields fields_of(const std::vector<FieldError>& errors) {
  Fields out;
  for (const auto& e : errors) {
    EXPECT_EQ(e.in, FieldIn::body) << e.pointer;
    out.emplace_back(e.pointer, e.detail);
  }
  return out;
}

std::vector<std::string> pointers_of(const std::vector<FieldError>& errors) {
  std::vector<std::string> out;
  for (const auto& e : errors) out.push_back(e.pointer);
  return out;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

class ObjectReaderTest : public ::testing::Test {
 protected:
  ObjectReader read(std::string_view json, std::string pointer = "") {
    doc_ = boost::json::parse(json);
    return ObjectReader(doc_, std::move(pointer), errors_);
  }

  boost::json::value doc_;
  std::vector<FieldError> errors_;
};

// Numbers read as the double nearest to their text (std::from_chars), where Boost.JSON 1.81's own reading
// lands an ulp or more away for some (found by fuzz/json_body): text twinbridge writes reads back to the same
// double, bit for bit, however many times a document is written and read.
TEST(ReadJsonTest, NumbersAreTheNearestDoubleAndSurviveEveryRoundTrip) {
  const std::vector<std::string> texts = {"-9223372233720368036854775809",
                                          "58888888888888888888888",
                                          "184467440737095592.0",
                                          "1844674407370955968888888888888888888888888888888888888888888",
                                          "900719240737095592.0",
                                          "1844674407370955968888888888888888800000011885524883092216944",
                                          "9007199254740993.0",
                                          "1e23",
                                          "8.41e21",
                                          "2.2250738585072011e-308",
                                          "5e-324",
                                          "0.1",
                                          "-0.0",
                                          "1.7976931348623157e308",
                                          "4.35679367245e-311"};
  for (const auto& text : texts) {
    double nearest = 0;
    ASSERT_EQ(std::from_chars(text.data(), text.data() + text.size(), nearest).ec, std::errc()) << text;
    boost::system::error_code ec;
    auto value = read_json("[" + text + "]", ec);
    ASSERT_FALSE(ec) << text;
    ASSERT_TRUE(value.at(0).is_double()) << text;
    EXPECT_EQ(std::bit_cast<std::uint64_t>(value.at(0).get_double()), std::bit_cast<std::uint64_t>(nearest))
        << text;
    for (int round = 0; round < 3; ++round) {
      auto again = read_json(boost::json::serialize(value), ec);
      ASSERT_FALSE(ec);
      EXPECT_EQ(std::bit_cast<std::uint64_t>(again.at(0).get_double()), std::bit_cast<std::uint64_t>(nearest))
          << text << " after " << round + 1 << " round trips";
      value = std::move(again);
    }
  }
  // Integers stay integers; everything else is as boost::json::parse reads it.
  boost::system::error_code ec;
  const auto doc = read_json(R"( {"a": [1, -2, 18446744073709551615, true, null, "s\u00e9"], "b": {}} )", ec);
  ASSERT_FALSE(ec);
  EXPECT_EQ(doc,
            boost::json::parse(R"({"a": [1, -2, 18446744073709551615, true, null, "s\u00e9"], "b": {}})"));
  EXPECT_TRUE(doc.at("a").at(0).is_int64());
  EXPECT_TRUE(doc.at("a").at(2).is_uint64());
}

// read_json fails as boost::json::parse does: syntax, trailing data, depth.
TEST(ReadJsonTest, RefusesWhatBoostJsonRefuses) {
  for (const auto* text : {"", "[1,", "{\"a\" 1}", "[1] x", "[1][2]", "01", "[1.]", "nul"}) {
    boost::system::error_code ec;
    EXPECT_TRUE(read_json(text, ec).is_null()) << text;
    EXPECT_TRUE(ec) << text;
  }
  boost::system::error_code ec;
  std::size_t consumed = 0;
  read_json(std::string(40, '[') + std::string(40, ']'), ec, 32, &consumed);
  EXPECT_EQ(ec, boost::json::error::too_deep);
  EXPECT_LT(consumed, 80u);  // stopped inside the document
  EXPECT_FALSE(read_json(std::string(40, '[') + std::string(40, ']'), ec, 64).is_null());
  EXPECT_FALSE(ec);
}

TEST(PointerAppendTest, EscapesTildeAndSlash) {
  EXPECT_EQ(pointer_append("", "a"), "/a");
  EXPECT_EQ(pointer_append("", "a/b"), "/a~1b");
  EXPECT_EQ(pointer_append("", "m~n"), "/m~0n");
  EXPECT_EQ(pointer_append("/x", "~1"), "/x/~01");
  EXPECT_EQ(pointer_append("/x", "/~"), "/x/~1~0");
  EXPECT_EQ(pointer_append("", ""), "/");
}

TEST(JsonTypeNameTest, NamesJsonSchemaTypes) {
  EXPECT_EQ(json_type_name(boost::json::parse("{}")), "object");
  EXPECT_EQ(json_type_name(boost::json::parse("[]")), "array");
  EXPECT_EQ(json_type_name(boost::json::parse(R"("s")")), "string");
  EXPECT_EQ(json_type_name(boost::json::parse("-1")), "integer");
  EXPECT_EQ(json_type_name(boost::json::parse("18446744073709551615")), "integer");
  EXPECT_EQ(json_type_name(boost::json::parse("1.5")), "number");
  EXPECT_EQ(json_type_name(boost::json::parse("true")), "boolean");
  EXPECT_EQ(json_type_name(boost::json::parse("null")), "null");
}

TEST_F(ObjectReaderTest, ReadsMembersOfTheirTypes) {
  auto r = read(R"({"s":"text","b":true,"i":7,"n":2.5,"o":{"k":1},"a":["x","y"],"v":null})");
  EXPECT_TRUE(r.is_object());
  EXPECT_EQ(r.string("s", true), "text");
  EXPECT_EQ(r.boolean("b"), true);
  EXPECT_EQ(r.integer("i", true, 0, 10), 7);
  EXPECT_EQ(r.number("n", true, 0, 10), 2.5);
  EXPECT_EQ(r.object("o", true), (boost::json::object{{"k", 1}}));
  EXPECT_EQ(r.string_array("a", true, 10, 10), (std::vector<std::string>{"x", "y"}));
  const auto* v = r.value("v", true);
  ASSERT_NE(v, nullptr);
  EXPECT_TRUE(v->is_null());
  r.reject_unknown();
  EXPECT_TRUE(errors_.empty());
}

TEST_F(ObjectReaderTest, AbsentOptionalMembersAreNoError) {
  auto r = read("{}");
  EXPECT_FALSE(r.string("s", false));
  EXPECT_FALSE(r.boolean("b"));
  EXPECT_FALSE(r.integer("i", false, 0, 1));
  EXPECT_FALSE(r.number("n", false, 0, 1));
  EXPECT_FALSE(r.object("o", false));
  EXPECT_FALSE(r.string_array("a", false, 1, 1));
  EXPECT_EQ(r.value("v", false), nullptr);
  EXPECT_TRUE(errors_.empty());
}

TEST_F(ObjectReaderTest, MissingRequiredMembersAreReportedWithTheirType) {
  auto r = read("{}");
  EXPECT_FALSE(r.string("name", true));
  EXPECT_FALSE(r.integer("count", true, 0, 1));
  EXPECT_FALSE(r.boolean("flag", true));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/name", "required member 'name' (a string) is missing"},
                                        {"/count", "required member 'count' (an integer) is missing"},
                                        {"/flag", "required member 'flag' (a boolean) is missing"}}));
  EXPECT_EQ(errors_[0].in, FieldIn::body);
}

TEST_F(ObjectReaderTest, TypeErrorsNameTheExpectedAndTheActualType) {
  auto r = read(R"({"s":1,"b":"yes","i":"3","n":null,"o":[],"a":{},"t":1.5})");
  EXPECT_FALSE(r.string("s", true));
  EXPECT_FALSE(r.boolean("b"));
  EXPECT_FALSE(r.integer("i", true, 0, 10));
  EXPECT_FALSE(r.number("n", true, 0, 10));
  EXPECT_FALSE(r.object("o", true));
  EXPECT_FALSE(r.string_array("a", true, 10, 10));
  EXPECT_FALSE(r.integer("t", true, 0, 10));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/s", "must be a string, not integer"},
                                        {"/b", "must be a boolean, not string"},
                                        {"/i", "must be an integer, not string"},
                                        {"/n", "must be a number, not null"},
                                        {"/o", "must be an object, not array"},
                                        {"/a", "must be an array of strings, not object"},
                                        {"/t", "must be an integer, not number"}}));
}

TEST_F(ObjectReaderTest, EscapesMemberNamesInPointers) {
  auto r = read(R"({"a/b":1,"m~n":2,"x":{"~/":3}})");
  EXPECT_FALSE(r.string("a/b", true));
  EXPECT_FALSE(r.string("m~n", true));
  EXPECT_EQ(r.member_pointer("a/b"), "/a~1b");
  const auto x = r.object("x", true);
  ASSERT_TRUE(x.has_value());
  const boost::json::value nested(*x);
  ObjectReader inner(nested, r.member_pointer("x"), errors_);
  EXPECT_FALSE(inner.boolean("~/"));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/a~1b", "must be a string, not integer"},
                                        {"/m~0n", "must be a string, not integer"},
                                        {"/x/~0~1", "must be a boolean, not integer"}}));
}

TEST_F(ObjectReaderTest, UnknownMembersWithEscapedNamesAreReported) {
  auto r = read(R"({"a/b":1,"m~n":2})");
  r.reject_unknown();
  EXPECT_EQ(fields_of(errors_),
            (Fields{{"/a~1b", "unknown member 'a/b'"}, {"/m~0n", "unknown member 'm~n'"}}));
}

TEST_F(ObjectReaderTest, StringLongerThanTheLimitIsAnError) {
  auto r = read(R"({"short":"abcd","long":"abcde"})");
  EXPECT_EQ(r.string("short", true, 4), "abcd");
  EXPECT_FALSE(r.string("long", true, 4));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/long", "is 5 bytes long; at most 4 are allowed"}}));
}

TEST_F(ObjectReaderTest, IntegerBoundsAreInclusive) {
  auto r = read(R"({"min":-5,"max":5,"below":-6,"above":6,"float_int":3.0})");
  EXPECT_EQ(r.integer("min", true, -5, 5), -5);
  EXPECT_EQ(r.integer("max", true, -5, 5), 5);
  EXPECT_FALSE(r.integer("below", true, -5, 5));
  EXPECT_FALSE(r.integer("above", true, -5, 5));
  EXPECT_EQ(r.integer("float_int", true, -5, 5), 3);
  EXPECT_EQ(fields_of(errors_), (Fields{{"/below", "must be between -5 and 5, not -6"},
                                        {"/above", "must be between -5 and 5, not 6"}}));
}

TEST_F(ObjectReaderTest, IntegerAcceptsTheWholeInt64Range) {
  auto r = read(R"({"lo":-9223372036854775808,"hi":9223372036854775807})");
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  EXPECT_EQ(r.integer("lo", true, kMin, kMax), kMin);
  EXPECT_EQ(r.integer("hi", true, kMin, kMax), kMax);
  EXPECT_TRUE(errors_.empty());
}

TEST_F(ObjectReaderTest, IntegerBeyondInt64IsRefused) {
  auto r = read(R"({"huge":18446744073709551615})");
  EXPECT_FALSE(r.integer("huge", true, 0, 10));
  EXPECT_EQ(pointers_of(errors_), (std::vector<std::string>{"/huge"}));
}

TEST_F(ObjectReaderTest, NumberBoundsAreChecked) {
  auto r = read(R"({"ok":1,"low":-0.5,"high":1.5})");
  EXPECT_EQ(r.number("ok", true, 0, 1), 1.0);
  EXPECT_FALSE(r.number("low", true, 0, 1));
  EXPECT_FALSE(r.number("high", true, 0, 1));
  EXPECT_EQ(pointers_of(errors_), (std::vector<std::string>{"/low", "/high"}));
  EXPECT_TRUE(contains(errors_[0].detail, "must be between")) << errors_[0].detail;
}

TEST_F(ObjectReaderTest, ObjectWithTooManyMembersIsAnError) {
  auto r = read(R"({"o":{"a":1,"b":2,"c":3}})");
  EXPECT_FALSE(r.object("o", true, 2));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/o", "has 3 members; at most 2 are allowed"}}));
}

TEST_F(ObjectReaderTest, StringArrayItemErrorsPointAtTheItem) {
  auto r = read(R"({"x":["ok",1,"toolong",null]})");
  EXPECT_FALSE(r.string_array("x", true, 10, 3));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/x/1", "must be a string, not integer"},
                                        {"/x/2", "is longer than 3 bytes"},
                                        {"/x/3", "must be a string, not null"}}));
}

TEST_F(ObjectReaderTest, StringArrayWithTooManyItemsIsAnError) {
  auto r = read(R"({"x":["a","b","c"]})");
  EXPECT_FALSE(r.string_array("x", true, 2, 10));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/x", "has 3 items; at most 2 are allowed"}}));
}

TEST_F(ObjectReaderTest, StringArrayItemsOfANestedMemberCarryTheFullPointer) {
  doc_ = boost::json::parse(R"({"roles":[1]})");
  ObjectReader r(doc_, "/items/0", errors_);
  EXPECT_FALSE(r.string_array("roles", true, 10, 10));
  EXPECT_EQ(fields_of(errors_), (Fields{{"/items/0/roles/0", "must be a string, not integer"}}));
}

TEST_F(ObjectReaderTest, RejectUnknownReportsOnlyMembersNotReadOrIgnored) {
  auto r = read(R"({"read":1,"wrong":"type","ignored":true,"extra":1,"other":[]})");
  EXPECT_EQ(r.integer("read", true, 0, 10), 1);
  EXPECT_FALSE(r.integer("wrong", true, 0, 10));  // read with the wrong type: one error, not also "unknown"
  r.ignore("ignored");
  r.reject_unknown();
  EXPECT_EQ(fields_of(errors_), (Fields{{"/wrong", "must be an integer, not string"},
                                        {"/extra", "unknown member 'extra'"},
                                        {"/other", "unknown member 'other'"}}));
}

TEST_F(ObjectReaderTest, NonObjectInputIsOneErrorAtItsPointer) {
  auto r = read(R"(["not","an","object"])", "/spec");
  EXPECT_FALSE(r.is_object());
  EXPECT_EQ(r.pointer(), "/spec");
  EXPECT_FALSE(r.string("name", true));
  EXPECT_FALSE(r.integer("n", true, 0, 1));
  EXPECT_EQ(r.value("v", true), nullptr);
  r.reject_unknown();
  EXPECT_EQ(fields_of(errors_), (Fields{{"/spec", "must be an object, not array"}}));
}

TEST_F(ObjectReaderTest, NonObjectDocumentIsReportedAtTheRoot) {
  auto r = read("42");
  EXPECT_FALSE(r.is_object());
  EXPECT_EQ(fields_of(errors_), (Fields{{"", "must be an object, not integer"}}));
}

TEST_F(ObjectReaderTest, AddErrorRecordsABodyField) {
  auto r = read("{}");
  r.add_error("/custom", "is wrong");
  EXPECT_EQ(fields_of(errors_), (Fields{{"/custom", "is wrong"}}));
  EXPECT_EQ(errors_[0].in, FieldIn::body);
}

TEST(ValidationResultTest, NoErrorsIsSuccess) {
  EXPECT_TRUE(validation_result({}).has_value());
}

TEST(ValidationResultTest, OneErrorNamesThePointerAndTheProblem) {
  const auto result = validation_result({{"/name", "must not be empty"}});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, Errc::validation_failed);
  EXPECT_EQ(result.error().detail, "/name: must not be empty");
  EXPECT_EQ(fields_of(result.error().fields), (Fields{{"/name", "must not be empty"}}));
}

TEST(ValidationResultTest, OneErrorAtTheRootStillNamesTheProblem) {
  const auto result = validation_result({{"", "must be an object, not array"}});
  ASSERT_FALSE(result.has_value());
  EXPECT_TRUE(contains(result.error().detail, "must be an object, not array")) << result.error().detail;
  EXPECT_EQ(fields_of(result.error().fields), (Fields{{"", "must be an object, not array"}}));
}

TEST(ValidationResultTest, SeveralErrorsAreCountedAndAllListed) {
  const auto result = validation_result({{"/a", "one"}, {"/b", "two"}, {"/c", "three"}});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, Errc::validation_failed);
  EXPECT_EQ(result.error().detail, "the request has 3 invalid fields");
  EXPECT_EQ(fields_of(result.error().fields), (Fields{{"/a", "one"}, {"/b", "two"}, {"/c", "three"}}));
}

TEST(ParseJsonTest, ReadsADocumentWithinTheDepthLimit) {
  const auto doc = parse_json(R"({"a": [1, 2.5, "x", null, {"b": true}]})", 3);
  ASSERT_TRUE(doc) << doc.error().detail;
  EXPECT_EQ(doc->at("a").at(1), 2.5);
}

TEST(ParseJsonTest, RefusesNestingDeeperThanTheLimitWithTheOffset) {
  const auto doc = parse_json("[[[1]]]", 2);
  ASSERT_FALSE(doc);
  EXPECT_EQ(doc.error().code, Errc::bad_request);
  EXPECT_EQ(doc.error().detail, "nesting is deeper than 2 levels at byte offset 2");
}

// Found by fuzz/json_body.cpp: Boost.JSON reads 1e400 as an infinity and writes it back as `Infinity`, so a
// stored document would no longer be JSON (for every reader, and when the store reads it back).
TEST(ParseJsonTest, RefusesNumbersBeyondTheRangeOfADoubleWithTheirPointer) {
  for (const auto* text : {R"({"a": {"b~/c": [0, 1e400]}})", R"({"a": {"b~/c": [0, -1e3082]}})"}) {
    const auto doc = parse_json(text, 64);
    ASSERT_FALSE(doc) << text;
    EXPECT_EQ(doc.error().code, Errc::bad_request);
    ASSERT_EQ(doc.error().fields.size(), 1u);
    EXPECT_EQ(doc.error().fields.front().pointer, "/a/b~0~1c/1");
    EXPECT_NE(doc.error().detail.find("out of range"), std::string::npos) << doc.error().detail;
  }
  EXPECT_TRUE(parse_json("[1e308, -1.7976931348623157e308, 1e-400]", 64));
}

}  // namespace
}  // namespace twinbridge::core
