#include "core/merge_patch.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <string>

namespace twinbridge::core {
namespace {

struct MergePatchCase {
  std::string target;
  std::string patch;
  std::string result;
};

void PrintTo(const MergePatchCase& c, std::ostream* os) {
  *os << "target " << c.target << " patch " << c.patch << " result " << c.result;
}

class MergePatchAppendixA : public ::testing::TestWithParam<MergePatchCase> {};

// RFC 7396 Appendix A: every row of the table of original document, patch and result.
TEST_P(MergePatchAppendixA, GivesTheResultOfTheRfc) {
  const auto& c = GetParam();
  const auto result = merge_patch(boost::json::parse(c.target), boost::json::parse(c.patch));
  EXPECT_EQ(result, boost::json::parse(c.result)) << "got " << boost::json::serialize(result);
}

INSTANTIATE_TEST_SUITE_P(
    Rfc7396, MergePatchAppendixA,
    ::testing::Values(MergePatchCase{R"({"a":"b"})", R"({"a":"c"})", R"({"a":"c"})"},
                      MergePatchCase{R"({"a":"b"})", R"({"b":"c"})", R"({"a":"b","b":"c"})"},
                      MergePatchCase{R"({"a":"b"})", R"({"a":null})", R"({})"},
                      MergePatchCase{R"({"a":"b","b":"c"})", R"({"a":null})", R"({"b":"c"})"},
                      MergePatchCase{R"({"a":["b"]})", R"({"a":"c"})", R"({"a":"c"})"},
                      MergePatchCase{R"({"a":"c"})", R"({"a":["b"]})", R"({"a":["b"]})"},
                      MergePatchCase{R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})",
                                     R"({"a":{"b":"d"}})"},
                      MergePatchCase{R"({"a":[{"b":"c"}]})", R"({"a":[1]})", R"({"a":[1]})"},
                      MergePatchCase{R"(["a","b"])", R"(["c","d"])", R"(["c","d"])"},
                      MergePatchCase{R"({"a":"b"})", R"(["c"])", R"(["c"])"},
                      MergePatchCase{R"({"a":"foo"})", R"(null)", R"(null)"},
                      MergePatchCase{R"({"a":"foo"})", R"("bar")", R"("bar")"},
                      MergePatchCase{R"({"e":null})", R"({"a":1})", R"({"e":null,"a":1})"},
                      MergePatchCase{R"([1,2])", R"({"a":"b","c":null})", R"({"a":"b"})"},
                      MergePatchCase{R"({})", R"({"a":{"bb":{"ccc":null}}})", R"({"a":{"bb":{}}})"}));

// The example of RFC 7396 section 3.
TEST(MergePatchTest, AppliesTheExampleOfSection3) {
  const auto target = boost::json::parse(R"({
    "title": "Goodbye!",
    "author": {"givenName": "John", "familyName": "Doe"},
    "tags": ["example", "sample"],
    "content": "This will be unchanged"
  })");
  const auto patch = boost::json::parse(R"({
    "title": "Hello!",
    "phoneNumber": "+01-123-456-7890",
    "author": {"familyName": null},
    "tags": ["example"]
  })");
  const auto expected = boost::json::parse(R"({
    "title": "Hello!",
    "author": {"givenName": "John"},
    "tags": ["example"],
    "content": "This will be unchanged",
    "phoneNumber": "+01-123-456-7890"
  })");
  EXPECT_EQ(merge_patch(target, patch), expected);
}

TEST(MergePatchTest, EmptyPatchLeavesTheTargetAsItIs) {
  const auto target = boost::json::parse(R"({"a":{"b":[1,2,{"c":null}]},"d":false})");
  EXPECT_EQ(merge_patch(target, boost::json::parse("{}")), target);
}

TEST(MergePatchTest, NullForAnAbsentMemberChangesNothing) {
  EXPECT_EQ(merge_patch(boost::json::parse(R"({"a":1})"), boost::json::parse(R"({"b":null})")),
            boost::json::parse(R"({"a":1})"));
}

}  // namespace
}  // namespace twinbridge::core

namespace twinbridge::core {
namespace {

TEST(MergeDiffTest, ProducesAPatchThatTurnsOneDocumentIntoTheOther) {
  const auto from = boost::json::parse(R"({"a":1,"b":{"c":2,"d":3},"e":[1,2],"f":"gone"})");
  const auto to = boost::json::parse(R"({"a":1,"b":{"c":5,"d":3},"e":[2],"g":true})");
  const auto diff = merge_diff(from, to);
  EXPECT_EQ(diff, boost::json::parse(R"({"b":{"c":5},"e":[2],"f":null,"g":true})"));
  EXPECT_EQ(merge_patch(from, diff), to);
  EXPECT_EQ(merge_diff(to, to), boost::json::parse("{}"));
}

}  // namespace
}  // namespace twinbridge::core
