#include "core/packed_json.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace twinbridge::core::packed {
namespace {

namespace json = boost::json;

Ref root_of(const std::string& bytes) {
  return Ref(reinterpret_cast<const std::uint8_t*>(bytes.data()));
}

// Packing, serializing and unpacking give back what boost::json has, byte for byte.
void expect_round_trip(const json::value& value) {
  const std::string bytes = pack(value);
  const Ref root = root_of(bytes);
  EXPECT_EQ(root.byte_size(), bytes.size());
  EXPECT_EQ(serialize(root), json::serialize(value));
  EXPECT_EQ(unpack(root), value);
}

TEST(PackedJsonTest, EveryKindRoundTrips) {
  const auto max64 = std::numeric_limits<std::int64_t>::max();
  const auto min64 = std::numeric_limits<std::int64_t>::min();
  for (const auto& v : std::vector<json::value>{nullptr,
                                                true,
                                                false,
                                                0,
                                                -1,
                                                1,
                                                63,
                                                64,
                                                -64,
                                                -65,
                                                127,
                                                128,
                                                max64,
                                                min64,
                                                std::numeric_limits<std::uint64_t>::max(),
                                                json::value(std::uint64_t{9223372036854775808ULL}),
                                                0.0,
                                                -0.0,
                                                1.5,
                                                1e300,
                                                -2.5e-300,
                                                std::numeric_limits<double>::min(),
                                                "",
                                                "short",
                                                json::string(300, 'x'),
                                                json::array(),
                                                json::object()}) {
    SCOPED_TRACE(json::serialize(v));
    expect_round_trip(v);
  }
}

TEST(PackedJsonTest, KindsAndValuesAreKept) {
  const json::value doc = json::parse(R"([null,true,-7,18446744073709551615,2.5,"s",[],{}])");
  const std::string bytes = pack(doc);
  const Ref root = root_of(bytes);
  ASSERT_TRUE(root.is_array());
  EXPECT_EQ(root.size(), 8U);
  EXPECT_TRUE(root.at(0).is_null());
  EXPECT_TRUE(root.at(1).is_bool() && root.at(1).get_bool());
  EXPECT_EQ(root.at(2).get_int64(), -7);
  EXPECT_EQ(root.at(3).get_uint64(), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(root.at(4).get_double(), 2.5);
  EXPECT_EQ(root.at(5).get_string(), "s");
  EXPECT_EQ(root.at(6).kind(), json::kind::array);
  EXPECT_EQ(root.at(7).kind(), json::kind::object);
  EXPECT_FALSE(root.at(8));  // past the end: nothing
  EXPECT_FALSE(root.at(8).is_object());
  EXPECT_EQ(root.at(8).string_or("none"), "none");
}

TEST(PackedJsonTest, EveryEscapeIsWrittenAsBoostWritesIt) {
  std::string all;
  for (int c = 1; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  all += "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";  // multi-byte UTF-8 stays as it is
  json::object o;
  o[all] = all;
  expect_round_trip(o);
}

TEST(PackedJsonTest, MembersKeepTheirOrderAndTermsReadBack) {
  // Terms of the vocabulary ("title", "forms", "href") and keys written out ("temperature", "") alike.
  const json::value td = json::parse(
      R"({"@context":"https://www.w3.org/2022/wot/td/v1.1","id":"urn:t","title":"T","":0,)"
      R"("properties":{"temperature":{"type":"number","forms":[{"href":"http://x/t","op":["readproperty"]}]}},)"
      R"("zeta":1,"alpha":2})");
  expect_round_trip(td);
  const std::string bytes = pack(td);
  const Ref root = root_of(bytes);
  std::vector<std::string> keys;
  for (const auto& m : root.members()) keys.emplace_back(m.key);
  EXPECT_EQ(keys, (std::vector<std::string>{"@context", "id", "title", "", "properties", "zeta", "alpha"}));
  EXPECT_EQ(root.find("title").get_string(), "T");
  EXPECT_EQ(root.find("").get_int64(), 0);
  EXPECT_FALSE(root.find("missing"));
  const Ref form = root.find("properties").find("temperature").find("forms").at(0);
  EXPECT_EQ(form.find("href").string_or(), "http://x/t");
  EXPECT_EQ(form.find("op").at(0).string_or(), "readproperty");
  EXPECT_FALSE(Ref().find("x"));  // nothing has no members
  EXPECT_EQ(Ref().size(), 0U);
}

TEST(PackedJsonTest, LargeAndDeepValuesRoundTrip) {
  json::array big;
  for (int i = 0; i < 1000; ++i) big.push_back(json::object{{"k" + std::to_string(i), i}, {"v", "x"}});
  expect_round_trip(big);
  json::value deep = 1;
  for (int i = 0; i < 200; ++i) deep = json::array{deep, json::object{{"d", i}}};
  expect_round_trip(deep);
  const std::string bytes = pack(big);
  EXPECT_EQ(root_of(bytes).at(999).find("k999").get_int64(), 999);
}

TEST(PackedJsonTest, IsSmallerThanItsText) {
  const json::value td = json::parse(
      R"({"@context":"https://www.w3.org/2022/wot/td/v1.1","id":"urn:dev:plant-1:twin-1","title":"Pump 1",)"
      R"("securityDefinitions":{"nosec_sc":{"scheme":"nosec"}},"security":"nosec_sc",)"
      R"("properties":{"speed":{"type":"number","minimum":0,"maximum":3000,"readOnly":true,)"
      R"("forms":[{"href":"http://plant-1.example/pumps/1/speed","op":["readproperty"]}]}}})");
  EXPECT_LT(pack(td).size(), json::serialize(td).size());
}

TEST(PackedJsonTest, PackerIsReusedForManyValues) {
  Packer packer;
  for (const char* text : {R"({"a":[1,2,{"b":null}]})", R"([])", R"({"title":"x","forms":[{}]})"}) {
    const json::value v = json::parse(text);
    std::string out(packer.measure(v), '\0');
    auto* end = packer.write(reinterpret_cast<std::uint8_t*>(out.data()));
    EXPECT_EQ(end, reinterpret_cast<std::uint8_t*>(out.data()) + out.size());
    EXPECT_EQ(serialize(root_of(out)), text);
  }
}

}  // namespace
}  // namespace twinbridge::core::packed
