#include "query/jsonpath.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "query/iregexp.hpp"
#include "query/unicode_category.hpp"

namespace twinbridge::query {
namespace {

namespace json = boost::json;

// ---- The RFC 9535 Compliance Test Suite (tests/query/data/jsonpath-cts.json), one test per case.

const json::value& cts_document() {
  static const json::value document = [] {
    std::ifstream in(TB_TEST_DATA_DIR "/data/jsonpath-cts.json", std::ios::binary);
    std::ostringstream buffer;
    buffer << in.rdbuf();
    const std::string text = std::move(buffer).str();
    json::parse_options options;
    options.max_depth = 256;
    boost::system::error_code ec;
    json::value parsed = json::parse(text, ec, {}, options);
    return ec ? json::value() : parsed;
  }();
  return document;
}

struct CtsCase {
  std::string test_name;  // the case name as a GoogleTest name
  std::size_t index = 0;  // into "tests"; npos when the suite could not be loaded
};

// "filter, equals number, exponent +0" -> "filter_equals_number_exponent_plus0"; operators and non-ASCII code
// points become words so that cases differing only in them keep distinct names.
std::string test_name_of(std::string_view name) {
  static const std::pair<std::string_view, std::string_view> kWords[] = {
      {"==", "eq"}, {"!=", "ne"}, {"<=", "le"},  {">=", "ge"},    {"<", "lt"},
      {">", "gt"},  {"||", "or"}, {"&&", "and"}, {"+0", "plus0"}, {"-0", "minus0"},
  };
  std::string out;
  const auto separate = [&] {
    if (!out.empty() && out.back() != '_') out.push_back('_');
  };
  for (std::size_t i = 0; i < name.size();) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (std::isalnum(c) != 0) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    bool replaced = false;
    for (const auto& [symbol, word] : kWords) {
      if (name.substr(i, symbol.size()) == symbol) {
        separate();
        out += word;
        i += symbol.size();
        replaced = true;
        break;
      }
    }
    if (replaced) continue;
    if (c >= 0x80) {
      // A UTF-8 sequence: name it by its bytes.
      separate();
      out += "u";
      while (i < name.size() && static_cast<unsigned char>(name[i]) >= 0x80) {
        char hex[3];
        std::snprintf(hex, sizeof hex, "%02X", static_cast<unsigned char>(name[i]));
        out += hex;
        ++i;
      }
      continue;
    }
    separate();
    ++i;
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

std::vector<CtsCase> cts_cases() {
  std::vector<CtsCase> cases;
  const json::value& document = cts_document();
  const json::array* tests = document.is_object() ? document.get_object().at("tests").if_array() : nullptr;
  if (tests == nullptr) return {{"suite_not_loaded", std::string::npos}};
  std::set<std::string> seen;
  for (std::size_t i = 0; i < tests->size(); ++i) {
    const std::string base = test_name_of((*tests)[i].at("name").as_string());
    std::string name = base;
    for (int n = 2; !seen.insert(name).second; ++n) name = base + "_" + std::to_string(n);
    cases.push_back({name, i});
  }
  return cases;
}

class JsonPathCts : public testing::TestWithParam<CtsCase> {};

json::array values_of(const std::vector<Node>& nodes) {
  json::array values;
  for (const Node& node : nodes) values.push_back(*node.value);
  return values;
}

json::array paths_of(const std::vector<Node>& nodes) {
  json::array paths;
  for (const Node& node : nodes) paths.push_back(json::string(node.path));
  return paths;
}

TEST_P(JsonPathCts, Case) {
  ASSERT_NE(GetParam().index, std::string::npos) << "cannot read " TB_TEST_DATA_DIR "/data/jsonpath-cts.json";
  const json::object& test = cts_document().at("tests").at(GetParam().index).as_object();
  const json::string& selector = test.at("selector").as_string();
  SCOPED_TRACE("selector: " + std::string(selector));
  const auto path = JsonPath::parse(selector);

  if (test.contains("invalid_selector")) {
    ASSERT_FALSE(path) << "accepted an invalid selector";
    EXPECT_EQ(path.error().code, core::Errc::bad_request);
    EXPECT_TRUE(path.error().detail.starts_with("invalid JSONPath at offset ")) << path.error().detail;
    return;
  }
  ASSERT_TRUE(path) << path.error().detail;
  const json::value& document = test.at("document");
  const std::vector<Node> nodes = path->select_nodes(document);
  const json::array values = values_of(nodes);
  const json::array paths = paths_of(nodes);

  if (test.contains("result")) {
    EXPECT_EQ(values, test.at("result").as_array()) << "selected " << json::serialize(values);
    EXPECT_EQ(paths, test.at("result_paths").as_array()) << "paths " << json::serialize(paths);
  } else {
    const json::array& results = test.at("results").as_array();
    const json::array& results_paths = test.at("results_paths").as_array();
    bool found = false;
    for (std::size_t i = 0; i < results.size(); ++i) {
      found = found || (values == results[i].as_array() && paths == results_paths[i].as_array());
    }
    EXPECT_TRUE(found) << "selected " << json::serialize(values) << " at " << json::serialize(paths);
  }

  // The fast path selects the same values, and matches() agrees with the nodelist.
  const std::vector<const json::value*> fast = path->select(document);
  ASSERT_EQ(fast.size(), nodes.size());
  for (std::size_t i = 0; i < fast.size(); ++i) EXPECT_EQ(fast[i], nodes[i].value) << "node " << i;
  EXPECT_EQ(path->matches(document), !nodes.empty());

  // The packed form of the document (the twin index's) gives the same nodelist.
  const std::string packed = core::packed::pack(document);
  const core::packed::Ref root(reinterpret_cast<const std::uint8_t*>(packed.data()));
  const std::vector<PackedNode> packed_nodes = path->select_nodes(root);
  ASSERT_EQ(packed_nodes.size(), nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    EXPECT_EQ(packed_nodes[i].path, nodes[i].path) << "node " << i;
    EXPECT_EQ(core::packed::serialize(packed_nodes[i].value), json::serialize(*nodes[i].value))
        << "node " << i;
  }
  EXPECT_EQ(path->matches(root), !nodes.empty());
  JsonPath::Matcher matcher(*path);
  EXPECT_EQ(matcher(root), !nodes.empty());
  EXPECT_EQ(matcher(document), !nodes.empty());
}

INSTANTIATE_TEST_SUITE_P(Rfc9535, JsonPathCts, testing::ValuesIn(cts_cases()),
                         [](const testing::TestParamInfo<CtsCase>& param_info) {
                           return param_info.param.test_name;
                         });

TEST(JsonPathCtsSuite, HasEveryCase) {
  const json::value& document = cts_document();
  ASSERT_TRUE(document.is_object());
  EXPECT_GE(document.at("tests").as_array().size(), 700U);
}

// ---- The API.

json::value doc(std::string_view text) {
  return json::parse(text);
}

std::vector<std::string> paths(const JsonPath& path, const json::value& document) {
  std::vector<std::string> out;
  for (const Node& node : path.select_nodes(document)) out.push_back(node.path);
  return out;
}

JsonPath must_parse(std::string_view query) {
  auto path = JsonPath::parse(query);
  if (!path) ADD_FAILURE() << query << ": " << path.error().detail;
  return path ? *path : *JsonPath::parse("$");
}

void expect_error(std::string_view query, std::size_t offset, std::string_view what) {
  SCOPED_TRACE(std::string(query));
  const auto path = JsonPath::parse(query);
  ASSERT_FALSE(path);
  const core::Error& error = path.error();
  EXPECT_EQ(error.code, core::Errc::bad_request);
  EXPECT_EQ(error.detail, "invalid JSONPath at offset " + std::to_string(offset) + ": " + std::string(what));
  ASSERT_EQ(error.fields.size(), 1U);
  EXPECT_EQ(error.fields[0].pointer, "");
  EXPECT_EQ(error.fields[0].detail, error.detail);
}

TEST(JsonPathErrors, SayWhatAndWhere) {
  expect_error("", 0, "a query starts with '$'");
  expect_error(" $", 0, "a query starts with '$'");
  expect_error("$ ", 1, "unexpected whitespace");
  expect_error("$a", 1, "expected '.', '..' or '['");
  expect_error("$.a[0 1]", 6, "expected ',' or ']'");
  expect_error("$['a'", 5, "expected ',' or ']'");
  expect_error("$[]", 2, "expected a selector");
  expect_error("$[@.a]", 2, "a query inside brackets must follow '?'");
  expect_error("$.1", 2, "expected a member name or '*' after '.'");
  expect_error("$..", 3, "expected a member name, '*' or '[' after '..'");
  expect_error("$[01]", 2, "leading zeros are not allowed");
  expect_error("$[-0]", 2, "-0 is not an integer here");
  expect_error("$[9007199254740992]", 2, "integer out of range (at most 2^53-1 in magnitude)");
  expect_error("$['abc", 2, "unterminated string literal");
  expect_error("$['a\\qb']", 4, "invalid escape sequence");
  expect_error("$['\\uD800']", 3, "unpaired surrogate in \\u escape");
  expect_error("$['a\nb']", 4, "control character in a string literal (write it as an escape)");
  expect_error("$[?@.a == 1.]", 12, "expected a digit after '.'");
  expect_error("$[?(@.a == 1]", 12, "expected ')'");
  expect_error("$[?true]", 3, "a literal cannot be a filter on its own; compare it with something");
  expect_error(
      "$[?@.* == 1]", 3,
      "only a singular query can be compared: one name or index per segment, no blanks inside brackets");
  expect_error(
      "$[?@[ 'a' ] == 1]", 3,
      "only a singular query can be compared: one name or index per segment, no blanks inside brackets");
  expect_error("$[?length(@.a)]", 3, "the result of length() must be compared with something");
  expect_error("$[?match(@.a, 'a') == true]", 3, "the result of match() cannot be compared");
  expect_error("$[?count(1) > 0]", 9, "argument 1 of count() must be a query");
  expect_error(
      "$[?length(@.*) > 0]", 10,
      "argument 1 of length() must be a singular query: one name or index per segment, no blanks inside "
      "brackets");
  EXPECT_TRUE(JsonPath::parse("$[?@ ['a'] .b [0] == 1]"));  // blanks between segments are fine
  expect_error("$[?match(@.a) > 0]", 3, "match() takes 2 arguments");
  expect_error("$[?nope(@)]", 3, "unknown function 'nope'");
  expect_error("$[?count (@.*) > 0]", 8, "expected '(' right after the function name");
  expect_error("$[?@.a == Null]", 10, "expected a literal, a query or a function");
  expect_error("$[?!1]", 4, "'!' must be followed by a query, a function or '('");
  expect_error("$['\xff']", 3, "invalid UTF-8");
}

TEST(JsonPathErrors, RejectOverlongQueries) {
  std::string query = "$";
  while (query.size() < 4095) query += ".a";
  query.resize(4095);
  query += "b";  // exactly 4096 bytes
  EXPECT_TRUE(JsonPath::parse(query));
  query += "c";
  expect_error(query, 4096, "query is longer than 4096 bytes");
}

TEST(JsonPathErrors, RejectDeepNestingWithoutRecursingDeeply) {
  const auto nested_filters = [](int depth) {
    std::string query = "$";
    for (int i = 0; i < depth; ++i) query += "[?@";
    for (int i = 0; i < depth; ++i) query += "]";
    return query;
  };
  EXPECT_TRUE(JsonPath::parse(nested_filters(64)));
  expect_error(nested_filters(65), 1 + 3 * 64, "brackets and parentheses nest deeper than 64");

  // Hostile input: parentheses up to the length bound.
  const std::string parens = "$[?" + std::string(2000, '(') + "@" + std::string(2000, ')') + "]";
  expect_error(parens, 3 + 63, "brackets and parentheses nest deeper than 64");
  EXPECT_FALSE(JsonPath::parse("$" + std::string(4000, '[')));
  EXPECT_FALSE(JsonPath::parse("$[?" + std::string(4000, '!') + "@]"));
}

TEST(JsonPathErrors, RejectTooComplexLiteralPattern) {
  expect_error("$[?match(@, '(a{1000}){1000}')]", 12, "regular expression is too complex");
}

TEST(JsonPath, KeepsItsText) {
  const auto path = JsonPath::parse("$..book[?@.price < 10].title");
  ASSERT_TRUE(path);
  EXPECT_EQ(path->text(), "$..book[?@.price < 10].title");
}

TEST(JsonPath, NormalizedPathsEscapeNames) {
  const json::value document =
      doc(R"({"a'b": 1, "c\\d": 2, "e\u0001\b\f\n\r\tf": 3, "\u00e9\u007f": 4, "": 5})");
  EXPECT_EQ(paths(must_parse("$.*"), document),
            (std::vector<std::string>{"$['a\\'b']", "$['c\\\\d']", "$['e\\u0001\\b\\f\\n\\r\\tf']",
                                      "$['\u00e9\u007f']", "$['']"}));
  EXPECT_EQ(paths(must_parse("$..[1]"), doc(R"({"x": [[0, 1], 2]})")),
            (std::vector<std::string>{"$['x'][1]", "$['x'][0][1]"}));
}

TEST(JsonPath, SelectsValuesInDocumentOrder) {
  const json::value document = doc(R"({"store": {"book": [
      {"title": "A", "price": 8.95, "tags": ["x"]},
      {"title": "B", "price": 12.99},
      {"title": "C", "price": 8, "isbn": "0-553"}]}})");
  const auto titles = must_parse("$.store.book[?@.price < 10].title").select(document);
  ASSERT_EQ(titles.size(), 2U);
  EXPECT_EQ(*titles[0], "A");
  EXPECT_EQ(*titles[1], "C");
  EXPECT_EQ(must_parse("$..book[-1:].title").select(document).front()->as_string(), "C");
  EXPECT_EQ(must_parse("$..[?@.isbn]").select(document).size(), 1U);
  EXPECT_EQ(must_parse("$..*").select(document).size(), 14U);
}

TEST(JsonPath, MatchesStopsAtTheFirstNode) {
  const json::value document = doc(R"({"twins": [{"kind": "pump"}, {"kind": "valve"}]})");
  EXPECT_TRUE(must_parse("$.twins[?@.kind == 'valve']").matches(document));
  EXPECT_FALSE(must_parse("$.twins[?@.kind == 'fan']").matches(document));
  EXPECT_TRUE(must_parse("$..kind").matches(document));
  EXPECT_FALSE(must_parse("$.missing").matches(document));
}

TEST(JsonPath, CopiesAndMovesShareTheParsedQuery) {
  std::optional<JsonPath> original = must_parse("$[?search(@.name, 'p.mp')].id");
  JsonPath copy = *original;
  JsonPath moved = std::move(*original);
  original.reset();
  const json::value document = doc(R"([{"name": "pump", "id": 1}, {"name": "fan", "id": 2}])");
  ASSERT_EQ(copy.select(document).size(), 1U);
  EXPECT_EQ(*copy.select(document).front(), 1);
  EXPECT_EQ(moved.text(), copy.text());
  copy = moved;
  EXPECT_TRUE(copy.matches(document));
}

TEST(JsonPath, EvaluatesConcurrently) {
  const JsonPath path = must_parse("$.items[?match(@.name, $.pattern) && @.n >= 0].n");
  json::array items;
  for (int i = 0; i < 200; ++i) items.push_back(json::object{{"name", i % 2 ? "odd" : "even"}, {"n", i}});
  const json::value document = json::object{{"pattern", "o.d"}, {"items", items}};
  std::vector<std::thread> threads;
  std::vector<std::size_t> counts(4);
  for (std::size_t t = 0; t < counts.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) counts[t] += path.select_nodes(document).size();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::size_t count : counts) EXPECT_EQ(count, 20U * 100U);
}

TEST(JsonPath, DeepDocumentsDoNotExhaustTheStack) {
  // Built in a monotonic resource, whose values Boost.JSON frees without recursing through them.
  json::monotonic_resource resource;
  json::storage_ptr storage(&resource);
  constexpr int kDepth = 200000;
  json::value document(storage);
  json::value* innermost = &document;
  for (int i = 0; i < kDepth; ++i) {
    innermost->emplace_array().emplace_back(json::value(storage));
    innermost = &innermost->get_array()[0];
  }
  *innermost = "bottom";
  const auto found = must_parse("$..[?@ == 'bottom']").select_nodes(document);
  ASSERT_EQ(found.size(), 1U);
  EXPECT_EQ(found[0].path.size(), 1 + 3 * static_cast<std::size_t>(kDepth));
  EXPECT_EQ(must_parse("$..*").select(document).size(), static_cast<std::size_t>(kDepth));

  // Deep equality is iterative too.
  json::value pair(storage);
  json::array& both = pair.emplace_array();
  for (int copy = 0; copy < 2; ++copy) {
    json::value* end = &both.emplace_back(json::value(storage));
    for (int i = 0; i < kDepth; ++i) end = &end->emplace_array().emplace_back(json::value(storage));
  }
  EXPECT_TRUE(must_parse("$[?$[0] == $[1]]").matches(pair));
}

TEST(JsonPath, ComparesNumbersByValue) {
  const json::value document = doc(R"([1, 1.0, 1.5, 9007199254740992.0, 18446744073709551615, -3])");
  EXPECT_EQ(paths(must_parse("$[?@ == 1]"), document), (std::vector<std::string>{"$[0]", "$[1]"}));
  EXPECT_EQ(paths(must_parse("$[?@ == 1.0]"), document), (std::vector<std::string>{"$[0]", "$[1]"}));
  // 2^53 + 1 is not 2^53, though both round to the same double.
  EXPECT_TRUE(paths(must_parse("$[?@ == 9007199254740993]"), document).empty());
  EXPECT_EQ(paths(must_parse("$[?@ > 9007199254740992]"), document), (std::vector<std::string>{"$[4]"}));
  EXPECT_EQ(paths(must_parse("$[?@ < 1.2 && @ > -3]"), document), (std::vector<std::string>{"$[0]", "$[1]"}));
  EXPECT_EQ(paths(must_parse("$[?@ <= -3]"), document), (std::vector<std::string>{"$[5]"}));
  EXPECT_EQ(paths(must_parse("$[?@.a == @.b]"), doc(R"([{"a": [1, {"x": 2.0}], "b": [1.0, {"x": 2}]}])")),
            (std::vector<std::string>{"$[0]"}));
}

TEST(JsonPath, ComparesStringsByCodePoint) {
  // UTF-16 order would put U+1D11E (a surrogate pair) before U+FFFF.
  const json::value document = doc(R"(["\uffff", "\ud834\udd1e", "a"])");
  EXPECT_EQ(paths(must_parse("$[?@ < '\xf0\x9d\x84\x9e']"), document),
            (std::vector<std::string>{"$[0]", "$[2]"}));
  EXPECT_EQ(paths(must_parse("$[?length(@) == 1]"), document),
            (std::vector<std::string>{"$[0]", "$[1]", "$[2]"}));
}

TEST(JsonPath, InvalidPatternIsFalseNotAnError) {
  const json::value document = doc(R"(["[", "a", {"p": "("}])");
  EXPECT_TRUE(must_parse("$[?match(@, '[')]").select(document).empty());
  EXPECT_TRUE(must_parse("$[?search(@, $[2].p)]").select(document).empty());
  EXPECT_EQ(must_parse("$[?!match(@, '[')]").select(document).size(), 3U);
}

TEST(JsonPath, PatternsFromTheDocument) {
  const json::value document = doc(R"({"rules": [{"re": "ab+", "v": "abbb"}, {"re": "ab+", "v": "xabx"},
                                                  {"re": "x", "v": "x"}, {"re": "[", "v": "["}]})");
  EXPECT_EQ(paths(must_parse("$.rules[?match(@.v, @.re)]"), document),
            (std::vector<std::string>{"$['rules'][0]", "$['rules'][2]"}));
  EXPECT_EQ(paths(must_parse("$.rules[?search(@.v, @.re)]"), document),
            (std::vector<std::string>{"$['rules'][0]", "$['rules'][1]", "$['rules'][2]"}));
}

// ---- I-Regexp.

bool full(std::string_view pattern, std::string_view text) {
  auto regex = IRegexp::compile(pattern);
  if (!regex) ADD_FAILURE() << "pattern " << pattern << " rejected";
  return regex && regex->full_match(text);
}

bool search(std::string_view pattern, std::string_view text) {
  auto regex = IRegexp::compile(pattern);
  if (!regex) ADD_FAILURE() << "pattern " << pattern << " rejected";
  return regex && regex->search(text);
}

TEST(IRegexp, DotIsAnyCodePointButLineEnds) {
  EXPECT_TRUE(full(".", "a"));
  EXPECT_TRUE(full(".", "\xf0\x9d\x84\x9e"));  // one code point, four bytes
  EXPECT_TRUE(full(".", "\u2028"));
  EXPECT_FALSE(full(".", "\n"));
  EXPECT_FALSE(full(".", "\r"));
  EXPECT_FALSE(full(".", ""));
  EXPECT_FALSE(full(".", "ab"));
  EXPECT_TRUE(full("[^a]", "\n"));
}

TEST(IRegexp, CaretAndDollarAnchor) {
  EXPECT_TRUE(full("^ab$", "ab"));
  EXPECT_FALSE(full("^ab$", "^ab$"));
  EXPECT_FALSE(full("a^b", "ab"));
  EXPECT_TRUE(search("^a", "ab"));
  EXPECT_FALSE(search("^b", "ab"));
  EXPECT_TRUE(search("b$", "ab"));
  EXPECT_FALSE(search("a$", "ab"));
  EXPECT_TRUE(search("^$", ""));
  EXPECT_TRUE(full("(^a|b)+", "abb"));
  EXPECT_TRUE(full("\\^[$^]+", "^$^"));  // escaped, or in a class, they are characters
}

TEST(IRegexp, FullMatchAgainstSearch) {
  EXPECT_FALSE(full("b", "abc"));
  EXPECT_TRUE(search("b", "abc"));
  EXPECT_TRUE(search("", "abc"));
  EXPECT_TRUE(full("", ""));
  EXPECT_TRUE(full("a|bc|", ""));
  EXPECT_TRUE(full("a|bc|", "bc"));
  EXPECT_FALSE(search("x", ""));
}

TEST(IRegexp, Quantifiers) {
  EXPECT_TRUE(full("a{2,3}", "aa"));
  EXPECT_TRUE(full("a{2,3}", "aaa"));
  EXPECT_FALSE(full("a{2,3}", "a"));
  EXPECT_FALSE(full("a{2,3}", "aaaa"));
  EXPECT_TRUE(full("a{2}", "aa"));
  EXPECT_TRUE(full("a{2,}", "aaaaa"));
  EXPECT_FALSE(full("a{2,}", "a"));
  EXPECT_TRUE(full("(ab)+c?", "ababc"));
  EXPECT_TRUE(full("(a*)*", "aaa"));
  EXPECT_TRUE(full("()*x", "x"));
  EXPECT_TRUE(full("(){3}x{0}", ""));
}

TEST(IRegexp, ClassesAndEscapes) {
  EXPECT_TRUE(full("[a-c]+", "abcba"));
  EXPECT_FALSE(full("[a-c]", "d"));
  EXPECT_TRUE(full("[-a]+", "-a"));
  EXPECT_TRUE(full("[a-]+", "-a"));
  EXPECT_TRUE(full("[^-]", "x"));
  EXPECT_TRUE(full("[\\^x]+", "^x"));
  EXPECT_TRUE(full("[x^]+", "^x"));
  EXPECT_TRUE(full("[.]", "."));
  EXPECT_FALSE(full("[.]", "a"));
  EXPECT_TRUE(full("\\n\\r\\t\\\\\\.\\{\\}\\|", "\n\r\t\\.{}|"));
  EXPECT_TRUE(full("[\\n-\\r]", "\x0b"));
  EXPECT_TRUE(full("\\p{Lu}\\p{Ll}\\p{Nd}", "Ab7"));
  EXPECT_TRUE(full("\\p{L}+", "\u00e9\u4e2d\u0416"));
  EXPECT_TRUE(full("\\P{L}", "1"));
  EXPECT_FALSE(full("\\P{L}", "a"));
  EXPECT_TRUE(full("[\\p{Lu}0-9]+", "A1B2"));
  EXPECT_TRUE(full("[^\\p{L}]", " "));
  EXPECT_TRUE(full("\\p{Zs}", " "));
  EXPECT_TRUE(full("\\p{Sc}", "\u20ac"));
  EXPECT_TRUE(full("\\p{Cn}", "\xf4\x8f\xbf\xbf"));  // U+10FFFF is unassigned
}

TEST(IRegexp, RejectsWhatIsNoIRegexp) {
  for (const std::string_view pattern :
       {"(",       ")",       "a)",    "[",     "[]",    "[^]",        "a**",        "*",
        "+a",      "?",       "{",     "}",     "a{",    "a{1",        "a{x}",       "a{3,2}",
        "]",       "\\",      "\\d",   "\\w",   "\\s",   "\\b",        "\\x41",      "\\u0041",
        "\\p{Cs}", "\\p{Xx}", "\\p{L", "\\p{}", "\\pL",  "[a-\\p{L}]", "[\\p{L}-a]", "[a-b-c]",
        "[b-a]",   "[[]",     "[a[]",  "a|*",   "(?:a)", "(?i)a",      "\xff"}) {
    const auto regex = IRegexp::compile(pattern);
    ASSERT_FALSE(regex) << pattern;
    EXPECT_EQ(regex.error(), IRegexp::Failure::syntax) << pattern;
  }
}

TEST(IRegexp, BoundsPatternCost) {
  EXPECT_EQ(IRegexp::compile("(a{1000}){1000}").error(), IRegexp::Failure::too_complex);
  EXPECT_EQ(IRegexp::compile("a{100001}").error(), IRegexp::Failure::too_complex);
  EXPECT_EQ(IRegexp::compile(std::string(65, '(') + std::string(65, ')')).error(),
            IRegexp::Failure::too_complex);
  EXPECT_TRUE(IRegexp::compile(std::string(64, '(') + std::string(64, ')')));
  EXPECT_TRUE(IRegexp::compile("((){100000}){100000}"));  // empty groups cost nothing
}

// Their time against the text's length (linear) is measured by bench/iregexp_bench.cpp.
TEST(IRegexp, PathologicalPatternsGiveTheRightAnswerOnLongTexts) {
  const std::string text(100000, 'a');
  EXPECT_FALSE(full("(a*)*b", text));
  EXPECT_FALSE(search("(a|a)*b", text));
  EXPECT_TRUE(full("(a|aa)*", text));
}

TEST(UnicodeCategory, LooksUpCodePoints) {
  const auto name = [](char32_t c) { return unicode::kCategoryNames[unicode::category_of(c)]; };
  EXPECT_EQ(name(U'A'), "Lu");
  EXPECT_EQ(name(U'a'), "Ll");
  EXPECT_EQ(name(U'0'), "Nd");
  EXPECT_EQ(name(U' '), "Zs");
  EXPECT_EQ(name(0), "Cc");
  EXPECT_EQ(name(0xD800), "Cs");
  EXPECT_EQ(name(0x10FFFF), "Cn");
  EXPECT_EQ(unicode::category_mask("L"), 0x1FU);
  EXPECT_FALSE(unicode::category_mask("Q"));
}

}  // namespace
}  // namespace twinbridge::query

namespace twinbridge::query {
namespace {

TEST(JsonPathMatcherTest, AgreesWithMatchesOverManyDocuments) {
  // Nested filters re-enter the evaluator; a reused matcher must keep its levels apart.
  auto path = JsonPath::parse("$[?@.items[?@.n > 1 && count(@.tags[*]) == 2] || match(@.name, 'b.*')]");
  ASSERT_TRUE(path) << path.error().detail;
  const std::vector<std::string> documents = {
      R"([{"items": [{"n": 2, "tags": ["x", "y"]}], "name": "a"}])",
      R"([{"items": [{"n": 2, "tags": ["x"]}], "name": "a"}])",
      R"([{"items": [], "name": "bob"}])",
      R"([{"name": "carol"}])",
      R"([])",
      R"({"k": {"items": [{"n": 5, "tags": [1, 2]}]}})",
  };
  JsonPath::Matcher matcher(*path);
  for (int round = 0; round < 2; ++round) {
    for (const auto& text : documents) {
      const auto doc = boost::json::parse(text);
      EXPECT_EQ(matcher(doc), path->matches(doc)) << text;
    }
  }
  std::vector<bool> got;
  for (const auto& text : documents) got.push_back(matcher(boost::json::parse(text)));
  EXPECT_EQ(got, (std::vector<bool>{true, false, true, false, false, true}));
}

}  // namespace
}  // namespace twinbridge::query
