#include "core/json_schema.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <iterator>
#include <limits>
#include <optional>
#include <regex>
#include <string>
#include <unordered_map>

#include "core/json_reader.hpp"
#include "core/time.hpp"

namespace twinbridge::core {
namespace detail {

enum class Format { none, date_time, uri, uri_reference, email, uuid };

struct Pattern {
  std::string quoted;  // the pattern as a JSON string, for messages
  std::regex regex;
  std::string message;  // "must match the pattern ..."
};

struct NamedSchema {
  std::string name;
  const SchemaNode* schema = nullptr;
};

struct PatternSchema {
  Pattern pattern;
  const SchemaNode* schema = nullptr;
};

// A numeric bound (minimum, maximum, ...) and the sentence that reports its violation.
struct Bound {
  boost::json::value limit;
  std::string message;
};

// How the alternatives of an anyOf / oneOf that all describe objects are told apart: by the single allowed
// value of one property (e.g. {"model": {"const": "usage"}}). Lets a failure report the errors of the
// alternative the instance meant, rather than "matches none of them".
struct Discriminator {
  std::string property;
  std::vector<const boost::json::value*> values;  // one per alternative, in order
  bool required_everywhere = false;
  std::string unknown_message;  // "must be one of ..."
};

// One compiled schema. Nodes live in an arena (std::deque, stable addresses) owned through JsonSchema::root_;
// the pointers between them never own.
struct SchemaNode {
  std::string pointer;      // where this schema is in the schema document
  bool reject_all = false;  // the schema `false`

  unsigned types = 0;  // bit set of type bits; 0 when "type" is absent
  std::string types_expected;

  std::optional<boost::json::value> const_value;
  std::string const_message;
  bool has_enum = false;
  std::vector<boost::json::value> enum_values;
  std::string enum_message;

  std::vector<NamedSchema> properties;  // sorted by name
  std::vector<std::string> required;
  std::vector<PatternSchema> pattern_properties;
  const SchemaNode* additional_properties = nullptr;
  const SchemaNode* property_names = nullptr;
  std::optional<std::size_t> min_properties;
  std::optional<std::size_t> max_properties;

  std::vector<const SchemaNode*> prefix_items;
  const SchemaNode* items = nullptr;
  std::optional<std::size_t> min_items;
  std::optional<std::size_t> max_items;
  bool unique_items = false;

  std::optional<std::size_t> min_length;
  std::optional<std::size_t> max_length;
  std::optional<Pattern> pattern;
  Format format = Format::none;

  std::optional<Bound> minimum;
  std::optional<Bound> maximum;
  std::optional<Bound> exclusive_minimum;
  std::optional<Bound> exclusive_maximum;
  std::optional<Bound> multiple_of;

  const SchemaNode* ref = nullptr;
  std::vector<const SchemaNode*> all_of;
  std::vector<const SchemaNode*> any_of;
  std::vector<const SchemaNode*> one_of;
  const SchemaNode* not_schema = nullptr;
  const SchemaNode* if_schema = nullptr;
  const SchemaNode* then_schema = nullptr;
  const SchemaNode* else_schema = nullptr;
  std::optional<Discriminator> any_of_discriminator;
  std::optional<Discriminator> one_of_discriminator;
};

}  // namespace detail

namespace {

using boost::json::array;
using boost::json::object;
using boost::json::value;
using detail::Format;
using detail::SchemaNode;

// Deepest nesting of subschemas in a schema document (each $ref followed counts as one more level).
constexpr std::size_t kMaxSchemaDepth = 128;
// Longest chain of subschemas applied to one value ($ref, allOf, ...); a longer one is a compile error.
constexpr std::size_t kMaxInPlaceChain = 64;
// Deepest recursion of the validator (instance depth times in-place chains); beyond it validation fails.
constexpr std::size_t kMaxEvaluationDepth = 1024;
// How far the search for a discriminating property follows $ref and allOf.
constexpr int kDiscriminatorSearchDepth = 8;
// Arrays up to this size are checked for duplicates pairwise; longer ones through sorted canonical forms.
constexpr std::size_t kPairwiseUniqueLimit = 16;
// Values listed at most in "must be one of ..." messages.
constexpr std::size_t kMaxListedValues = 10;

constexpr std::string_view kDraft202012 = "https://json-schema.org/draft/2020-12/schema";

enum TypeBit : unsigned {
  kNull = 1u << 0,
  kBoolean = 1u << 1,
  kObject = 1u << 2,
  kArray = 1u << 3,
  kNumber = 1u << 4,
  kInteger = 1u << 5,
  kString = 1u << 6,
};

bool is_whole(double d) {
  return std::isfinite(d) && std::trunc(d) == d;
}

unsigned type_bits(const value& v) {
  switch (v.kind()) {
    case boost::json::kind::null:
      return kNull;
    case boost::json::kind::bool_:
      return kBoolean;
    case boost::json::kind::object:
      return kObject;
    case boost::json::kind::array:
      return kArray;
    case boost::json::kind::string:
      return kString;
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return kNumber | kInteger;
    case boost::json::kind::double_:
      return is_whole(v.get_double()) ? (kNumber | kInteger) : kNumber;
  }
  return 0;
}

template <class T>
int three_way(T a, T b) {
  return (a > b) - (a < b);
}

// -1, 0 or 1 as `i` is below, equal to or above `d`, exactly (no rounding of large integers).
int compare_int_double(std::int64_t i, double d) {
  constexpr double k2p63 = 9223372036854775808.0;
  if (d >= k2p63) return -1;
  if (d < -k2p63) return 1;
  const double whole = std::trunc(d);
  const auto w = static_cast<std::int64_t>(whole);
  if (i != w) return i < w ? -1 : 1;
  return three_way(0.0, d - whole);
}

int compare_uint_double(std::uint64_t u, double d) {
  constexpr double k2p64 = 18446744073709551616.0;
  if (d < 0) return 1;
  if (d >= k2p64) return -1;
  const double whole = std::trunc(d);
  const auto w = static_cast<std::uint64_t>(whole);
  if (u != w) return u < w ? -1 : 1;
  return three_way(0.0, d - whole);
}

int compare_to_double(const value& a, double d) {
  if (a.is_int64()) return compare_int_double(a.get_int64(), d);
  if (a.is_uint64()) return compare_uint_double(a.get_uint64(), d);
  return three_way(a.get_double(), d);
}

// Exact comparison of two JSON numbers by their mathematical value.
int compare_numbers(const value& a, const value& b) {
  if (b.is_double()) return compare_to_double(a, b.get_double());
  if (a.is_double()) return -compare_to_double(b, a.get_double());
  if (a.is_int64() && b.is_int64()) return three_way(a.get_int64(), b.get_int64());
  if (a.is_uint64() && b.is_uint64()) return three_way(a.get_uint64(), b.get_uint64());
  if (a.is_int64()) {
    return a.get_int64() < 0 ? -1 : three_way(static_cast<std::uint64_t>(a.get_int64()), b.get_uint64());
  }
  return b.get_int64() < 0 ? 1 : three_way(a.get_uint64(), static_cast<std::uint64_t>(b.get_int64()));
}

// Equality as JSON Schema defines it: numbers by value (1 == 1.0), objects regardless of member order.
bool json_equal(const value& a, const value& b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b) == 0;
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case boost::json::kind::null:
      return true;
    case boost::json::kind::bool_:
      return a.get_bool() == b.get_bool();
    case boost::json::kind::string:
      return a.get_string() == b.get_string();
    case boost::json::kind::array: {
      const auto& x = a.get_array();
      const auto& y = b.get_array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i) {
        if (!json_equal(x[i], y[i])) return false;
      }
      return true;
    }
    case boost::json::kind::object: {
      const auto& x = a.get_object();
      const auto& y = b.get_object();
      if (x.size() != y.size()) return false;
      for (const auto& member : x) {
        const auto* other = y.if_contains(member.key());
        if (other == nullptr || !json_equal(member.value(), *other)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

// The integer value of a whole number that fits 64 bits, written in decimal; nullopt for other numbers.
std::optional<std::string> integer_text(const value& v) {
  if (v.is_int64()) return fmt::format("{}", v.get_int64());
  if (v.is_uint64()) return fmt::format("{}", v.get_uint64());
  const double d = v.get_double();
  if (!is_whole(d)) return std::nullopt;
  if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
    return fmt::format("{}", static_cast<std::int64_t>(d));
  }
  if (d >= 0 && d < 18446744073709551616.0) return fmt::format("{}", static_cast<std::uint64_t>(d));
  return std::nullopt;
}

// Appends a canonical encoding of `v`: two values are json_equal exactly when their encodings are equal.
void append_canonical(const value& v, std::string& out) {
  switch (v.kind()) {
    case boost::json::kind::null:
      out += 'n';
      return;
    case boost::json::kind::bool_:
      out += v.get_bool() ? 't' : 'f';
      return;
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_: {
      const auto text = integer_text(v);
      out += text ? 'i' : 'd';
      out += text ? *text : fmt::format("{}", v.get_double());
      out += ';';
      return;
    }
    case boost::json::kind::string: {
      const auto& s = v.get_string();
      fmt::format_to(std::back_inserter(out), "s{}:", s.size());
      out.append(s.data(), s.size());
      return;
    }
    case boost::json::kind::array:
      fmt::format_to(std::back_inserter(out), "a{}:", v.get_array().size());
      for (const auto& item : v.get_array()) append_canonical(item, out);
      return;
    case boost::json::kind::object: {
      const auto& obj = v.get_object();
      std::vector<const boost::json::key_value_pair*> members;
      members.reserve(obj.size());
      for (const auto& member : obj) members.push_back(&member);
      std::sort(members.begin(), members.end(),
                [](const auto* x, const auto* y) { return x->key() < y->key(); });
      fmt::format_to(std::back_inserter(out), "o{}:", obj.size());
      for (const auto* member : members) {
        fmt::format_to(std::back_inserter(out), "{}:", member->key().size());
        out.append(member->key().data(), member->key().size());
        append_canonical(member->value(), out);
      }
      return;
    }
  }
}

// The first pair (by the later index, then the earlier) of equal items, if any.
std::optional<std::pair<std::size_t, std::size_t>> find_duplicate(const array& items) {
  const std::size_t n = items.size();
  if (n <= kPairwiseUniqueLimit) {
    for (std::size_t j = 1; j < n; ++j) {
      for (std::size_t i = 0; i < j; ++i) {
        if (json_equal(items[i], items[j])) return std::pair{i, j};
      }
    }
    return std::nullopt;
  }
  // Sorting canonical forms is O(n log n) whatever the items are (no hash flooding).
  std::vector<std::string> forms(n);
  for (std::size_t i = 0; i < n; ++i) append_canonical(items[i], forms[i]);
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t x, std::size_t y) { return forms[x] < forms[y]; });
  std::optional<std::pair<std::size_t, std::size_t>> best;
  for (std::size_t k = 1; k < n; ++k) {
    // Equal forms are adjacent and, thanks to the stable sort, in index order; the first of a run pairs with
    // the second.
    if (forms[order[k]] != forms[order[k - 1]]) continue;
    if (k >= 2 && forms[order[k - 2]] == forms[order[k]]) continue;
    const std::pair pair{order[k - 1], order[k]};
    if (!best || pair.second < best->second) best = pair;
  }
  return best;
}

// True when arrays and objects in `v` are nested more than `limit` levels deep. Iterative: `v` may come from
// anywhere.
bool nested_deeper_than(const value& v, std::size_t limit) {
  std::vector<std::pair<const value*, std::size_t>> stack;
  if (v.is_array() || v.is_object()) stack.emplace_back(&v, 1);
  while (!stack.empty()) {
    const auto [current, depth] = stack.back();
    stack.pop_back();
    if (depth > limit) return true;
    if (const auto* arr = current->if_array()) {
      for (const auto& item : *arr) {
        if (item.is_array() || item.is_object()) stack.emplace_back(&item, depth + 1);
      }
    } else {
      for (const auto& member : current->get_object()) {
        if (member.value().is_array() || member.value().is_object()) {
          stack.emplace_back(&member.value(), depth + 1);
        }
      }
    }
  }
  return false;
}

// |v| = significand * 10^exponent, as the shortest decimal that reads back as the same double.
struct Decimal {
  std::uint64_t significand = 0;
  int exponent = 0;
};

std::optional<Decimal> decimal_of(const value& v) {
  Decimal out;
  if (v.is_int64()) {
    const auto i = v.get_int64();
    out.significand = i < 0 ? ~static_cast<std::uint64_t>(i) + 1 : static_cast<std::uint64_t>(i);
  } else if (v.is_uint64()) {
    out.significand = v.get_uint64();
  } else {
    const double d = std::fabs(v.get_double());
    if (!std::isfinite(d)) return std::nullopt;
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    if (ec != std::errc()) return std::nullopt;
    // "d.ddddde[+-]xx": at most 17 significant digits, which fit 64 bits.
    const std::string_view text(buf, static_cast<std::size_t>(end - buf));
    const auto e = text.find('e');
    int fraction_digits = 0;
    bool after_point = false;
    for (char c : text.substr(0, e)) {
      if (c == '.') {
        after_point = true;
        continue;
      }
      out.significand = out.significand * 10 + static_cast<std::uint64_t>(c - '0');
      if (after_point) ++fraction_digits;
    }
    int exponent = 0;
    const auto exp_text = text.substr(e + 1);
    const auto* first = exp_text.data() + (exp_text.front() == '+' ? 1 : 0);
    std::from_chars(first, exp_text.data() + exp_text.size(), exponent);
    out.exponent = exponent - fraction_digits;
  }
  if (out.significand == 0) return Decimal{};
  while (out.significand % 10 == 0) {
    out.significand /= 10;
    ++out.exponent;
  }
  return out;
}

// (a + b) mod m for a, b < m, without overflow.
std::uint64_t add_mod(std::uint64_t a, std::uint64_t b, std::uint64_t m) {
  return a >= m - b ? a - (m - b) : a + b;
}

std::uint64_t times_ten_mod(std::uint64_t r, std::uint64_t m) {
  const auto r2 = add_mod(r, r, m);
  const auto r4 = add_mod(r2, r2, m);
  const auto r8 = add_mod(r4, r4, m);
  return add_mod(r8, r2, m);
}

// Whether `x` is an integer multiple of `m` (> 0), reading both as the decimals they were written as: 0.3 is
// a multiple of 0.1, 0.00751 is not a multiple of 0.0001.
bool is_multiple_of(const value& x, const value& m) {
  const auto dx = decimal_of(x);
  const auto dm = decimal_of(m);
  if (!dx || !dm || dm->significand == 0) return false;
  if (dx->significand == 0) return true;
  if (dx->exponent >= dm->exponent) {
    // x / m = (sx * 10^(ex - em)) / sm: an integer when sx * 10^(ex - em) mod sm == 0.
    std::uint64_t r = dx->significand % dm->significand;
    for (int k = dx->exponent - dm->exponent; k > 0 && r != 0; --k) r = times_ten_mod(r, dm->significand);
    return r == 0;
  }
  // x / m = sx / (sm * 10^(em - ex)).
  std::uint64_t divisor = dm->significand;
  for (int k = dm->exponent - dx->exponent; k > 0; --k) {
    if (divisor > std::numeric_limits<std::uint64_t>::max() / 10) return false;  // larger than sx
    divisor *= 10;
  }
  return dx->significand % divisor == 0;
}

std::string format_number(const value& v) {
  if (v.is_int64()) return fmt::format("{}", v.get_int64());
  if (v.is_uint64()) return fmt::format("{}", v.get_uint64());
  return fmt::format("{}", v.get_double());
}

// A value as a message shows it: strings quoted as in JSON, numbers as written.
std::string display(const value& v) {
  if (v.is_number()) return format_number(v);
  return boost::json::serialize(v);
}

std::string one_of_message(const std::vector<const value*>& values) {
  if (values.size() == 1) return "must be " + display(*values.front());
  std::string out = "must be one of ";
  for (std::size_t i = 0; i < values.size() && i < kMaxListedValues; ++i) {
    if (i > 0) out += ", ";
    out += display(*values[i]);
  }
  if (values.size() > kMaxListedValues) {
    fmt::format_to(std::back_inserter(out), " (or {} more)", values.size() - kMaxListedValues);
  }
  return out;
}

std::string plural(std::size_t n, std::string_view noun) {
  return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
}

std::string_view format_message(Format f) {
  switch (f) {
    case Format::date_time:
      return "must be a date-time as in RFC 3339 (e.g. 2026-11-24T11:14:12Z)";
    case Format::uri:
      return "must be an absolute URI (RFC 3986) with a scheme";
    case Format::uri_reference:
      return "must be a URI reference (RFC 3986)";
    case Format::email:
      return "must be an email address";
    case Format::uuid:
      return "must be a UUID (8-4-4-4-12 hexadecimal digits)";
    case Format::none:
      break;
  }
  return "";
}

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_unreserved(char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool is_sub_delim(char c) {
  return std::string_view("!$&'()*+,;=").find(c) != std::string_view::npos;
}

// Every character is unreserved, a sub-delim, one of `extra`, or part of a %XX escape.
bool uri_chars(std::string_view s, std::string_view extra) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
      i += 2;
    } else if (!is_unreserved(c) && !is_sub_delim(c) && extra.find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool is_scheme(std::string_view s) {
  if (s.empty() || !is_alpha(s.front())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.'; });
}

bool is_ipv4(std::string_view s) {
  int parts = 0;
  while (true) {
    const auto dot = s.find('.');
    const auto part = s.substr(0, dot);
    if (part.empty() || part.size() > 3 || !std::all_of(part.begin(), part.end(), is_digit)) return false;
    if (part.size() > 1 && part.front() == '0') return false;
    int octet = 0;
    std::from_chars(part.data(), part.data() + part.size(), octet);
    if (octet > 255) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    s.remove_prefix(dot + 1);
  }
  return parts == 4;
}

// Counts the 16-bit groups of one side of an IPv6 address ("" has none); an IPv4 tail counts two.
bool ipv6_groups(std::string_view s, bool ipv4_tail_allowed, int& groups) {
  groups = 0;
  if (s.empty()) return true;
  while (true) {
    const auto colon = s.find(':');
    const auto group = s.substr(0, colon);
    if (colon == std::string_view::npos && ipv4_tail_allowed && group.find('.') != std::string_view::npos) {
      if (!is_ipv4(group)) return false;
      groups += 2;
      return true;
    }
    if (group.empty() || group.size() > 4 || !std::all_of(group.begin(), group.end(), is_hex)) return false;
    ++groups;
    if (colon == std::string_view::npos) return true;
    s.remove_prefix(colon + 1);
  }
}

bool is_ipv6(std::string_view s) {
  const auto gap = s.find("::");
  int head = 0;
  int tail = 0;
  if (gap == std::string_view::npos) return ipv6_groups(s, true, head) && head == 8;
  if (s.find("::", gap + 1) != std::string_view::npos) return false;
  return ipv6_groups(s.substr(0, gap), false, head) && ipv6_groups(s.substr(gap + 2), true, tail) &&
         head + tail <= 7;
}

bool is_ip_literal(std::string_view s) {
  if (!s.empty() && (s.front() == 'v' || s.front() == 'V')) {
    const auto dot = s.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 == s.size()) return false;
    const auto version = s.substr(1, dot - 1);
    const auto rest = s.substr(dot + 1);
    return std::all_of(version.begin(), version.end(), is_hex) &&
           std::all_of(rest.begin(), rest.end(),
                       [](char c) { return is_unreserved(c) || is_sub_delim(c) || c == ':'; });
  }
  return is_ipv6(s);
}

// authority = [ userinfo "@" ] host [ ":" port ]
bool is_authority(std::string_view s) {
  if (const auto at = s.find('@'); at != std::string_view::npos) {
    if (!uri_chars(s.substr(0, at), ":")) return false;
    s.remove_prefix(at + 1);
  }
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos || !is_ip_literal(s.substr(1, close - 1))) return false;
    const auto after = s.substr(close + 1);
    if (!after.empty() && after.front() != ':') return false;
    port = after.empty() ? after : after.substr(1);
  } else {
    const auto colon = s.find(':');
    if (colon != std::string_view::npos) {
      port = s.substr(colon + 1);
      s = s.substr(0, colon);
    }
    if (!uri_chars(s, "")) return false;
  }
  return std::all_of(port.begin(), port.end(), is_digit);
}

// Everything after the scheme (or the whole of a relative reference): [ "//" authority ] path [ "?" query ]
// [ "#" fragment ].
bool is_hier_part(std::string_view s) {
  if (s.starts_with("//")) {
    s.remove_prefix(2);
    const auto end = s.find_first_of("/?#");
    if (!is_authority(s.substr(0, end))) return false;
    s = end == std::string_view::npos ? std::string_view() : s.substr(end);
  }
  const auto hash = s.find('#');
  const auto fragment = hash == std::string_view::npos ? std::string_view() : s.substr(hash + 1);
  return uri_chars(s.substr(0, hash), ":@/?") && uri_chars(fragment, ":@/?");
}

bool is_uri(std::string_view s) {
  const auto colon = s.find(':');
  return colon != std::string_view::npos && is_scheme(s.substr(0, colon)) &&
         is_hier_part(s.substr(colon + 1));
}

bool is_uri_reference(std::string_view s) {
  const auto first = s.find_first_of(":/?#");
  // A ':' before any '/', '?' or '#' either ends a scheme or makes the reference invalid (RFC 3986 4.2).
  if (first != std::string_view::npos && s[first] == ':') return is_uri(s);
  return is_hier_part(s);
}

bool is_hostname(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  while (true) {
    const auto dot = s.find('.');
    const auto label = s.substr(0, dot);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    if (!std::all_of(label.begin(), label.end(),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '-'; })) {
      return false;
    }
    if (dot == std::string_view::npos) return true;
    s.remove_prefix(dot + 1);
  }
}

// RFC 5321 quoted-string: printable ASCII between double quotes, '"' and '\' escaped by a backslash.
bool is_quoted_local_part(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] < 32 || s[i] > 126 || s[i] == '"') return false;
    if (s[i] == '\\' && (++i + 1 >= s.size() || s[i] < 32 || s[i] > 126)) return false;
  }
  return true;
}

// RFC 5321 Mailbox: local-part "@" domain; the local part a dot-atom or a quoted string, the domain a host
// name or an address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]").
bool is_email(std::string_view s) {
  const auto at = s.rfind('@');
  if (at == std::string_view::npos || s.size() > 254) return false;
  const auto local = s.substr(0, at);
  const auto domain = s.substr(at + 1);
  if (local.empty() || local.size() > 64) return false;
  if (local.front() != '"' || !is_quoted_local_part(local)) {
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
      return false;
    const bool atext = std::all_of(local.begin(), local.end(), [](char c) {
      return is_alpha(c) || is_digit(c) || c == '.' ||
             std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
    });
    if (!atext) return false;
  }
  if (domain.size() > 2 && domain.front() == '[' && domain.back() == ']') {
    const auto literal = domain.substr(1, domain.size() - 2);
    return literal.starts_with("IPv6:") ? is_ipv6(literal.substr(5)) : is_ipv4(literal);
  }
  return is_hostname(domain);
}

// RFC 3339 date-time; a leap second only as the last second of a UTC day.
bool is_date_time(std::string_view s) {
  const auto t = parse_rfc3339(s);
  if (!t) return false;
  if (s.substr(17, 2) != "60") return true;
  // 23:59:60Z reads as the first second of the next day.
  return *t - std::chrono::floor<std::chrono::days>(*t) < std::chrono::seconds(1);
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool hyphen = i == 8 || i == 13 || i == 18 || i == 23;
    if (hyphen ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

bool format_holds(Format f, std::string_view s) {
  switch (f) {
    case Format::date_time:
      return is_date_time(s);
    case Format::uri:
      return is_uri(s);
    case Format::uri_reference:
      return is_uri_reference(s);
    case Format::email:
      return is_email(s);
    case Format::uuid:
      return is_uuid(s);
    case Format::none:
      break;
  }
  return true;
}

std::size_t code_points(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

void append_token(std::string& pointer, std::string_view token) {
  pointer.push_back('/');
  for (char c : token) {
    if (c == '~') {
      pointer += "~0";
    } else if (c == '/') {
      pointer += "~1";
    } else {
      pointer.push_back(c);
    }
  }
}

const SchemaNode* find_property(const SchemaNode& node, std::string_view name) {
  const auto it =
      std::lower_bound(node.properties.begin(), node.properties.end(), name,
                       [](const detail::NamedSchema& p, std::string_view n) { return p.name < n; });
  return it != node.properties.end() && it->name == name ? it->schema : nullptr;
}

// Compiles one schema document into nodes appended to `nodes`; stops at the first error, kept for
// take_error().
class Compiler {
 public:
  Compiler(const value& root, std::deque<SchemaNode>& nodes) : root_(root), nodes_(nodes) {}

  const SchemaNode* compile_document() {
    const auto* root = compile(root_, "", 0);
    if (root == nullptr || !check_cycles()) return nullptr;
    for (auto& node : nodes_) {
      if (!node.any_of.empty()) node.any_of_discriminator = discriminator(node.any_of);
      if (!node.one_of.empty()) node.one_of_discriminator = discriminator(node.one_of);
    }
    return root;
  }

  Error take_error() { return std::move(*error_); }

 private:
  bool fail(const std::string& pointer, std::string detail) {
    if (error_) return false;
    Error e(Errc::validation_failed,
            fmt::format("invalid JSON Schema at {}: {}", pointer.empty() ? "the root" : pointer, detail));
    e.fields.push_back({pointer, std::move(detail)});
    error_ = std::move(e);
    return false;
  }

  const SchemaNode* compile(const value& schema, const std::string& pointer, std::size_t depth) {
    if (const auto it = by_pointer_.find(pointer); it != by_pointer_.end()) return it->second;
    if (depth > kMaxSchemaDepth) {
      fail(pointer, fmt::format("subschemas are nested more than {} levels deep", kMaxSchemaDepth));
      return nullptr;
    }
    SchemaNode& node = nodes_.emplace_back();
    node.pointer = pointer;
    by_pointer_.emplace(pointer, &node);
    if (schema.is_bool()) {
      node.reject_all = !schema.get_bool();
      return &node;
    }
    const auto* obj = schema.if_object();
    if (obj == nullptr) {
      fail(pointer, fmt::format("must be a schema (an object or a boolean), not {}", json_type_name(schema)));
      return nullptr;
    }
    for (const auto& member : *obj) {
      if (!keyword(node, member.key(), member.value(), pointer_append(pointer, member.key()), depth)) {
        return nullptr;
      }
    }
    return &node;
  }

  const SchemaNode* subschema(const value& schema, const std::string& pointer, std::size_t depth) {
    return compile(schema, pointer, depth + 1);
  }

  bool schema_array(const value& v, const std::string& pointer, std::size_t depth,
                    std::vector<const SchemaNode*>& out) {
    const auto* arr = v.if_array();
    if (arr == nullptr || arr->empty()) return fail(pointer, "must be a non-empty array of schemas");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const auto* node = subschema((*arr)[i], pointer_append(pointer, std::to_string(i)), depth);
      if (node == nullptr) return false;
      out.push_back(node);
    }
    return true;
  }

  bool schema_map(const value& v, const std::string& pointer, std::size_t depth,
                  std::vector<detail::NamedSchema>& out) {
    const auto* obj = v.if_object();
    if (obj == nullptr) return fail(pointer, "must be an object whose members are schemas");
    for (const auto& member : *obj) {
      const auto* node = subschema(member.value(), pointer_append(pointer, member.key()), depth);
      if (node == nullptr) return false;
      out.push_back({std::string(member.key()), node});
    }
    return true;
  }

  bool count(const value& v, const std::string& pointer, std::optional<std::size_t>& out) {
    if (v.is_int64() && v.get_int64() >= 0) {
      out = static_cast<std::size_t>(v.get_int64());
    } else if (v.is_uint64()) {
      out = static_cast<std::size_t>(v.get_uint64());
    } else if (v.is_double() && is_whole(v.get_double()) && v.get_double() >= 0 && v.get_double() < 9e15) {
      out = static_cast<std::size_t>(v.get_double());
    } else {
      return fail(pointer, "must be a non-negative integer");
    }
    return true;
  }

  bool bound(const value& v, const std::string& pointer, std::string_view sentence,
             std::optional<detail::Bound>& out) {
    if (!v.is_number() || (v.is_double() && !std::isfinite(v.get_double()))) {
      return fail(pointer, "must be a number");
    }
    out = detail::Bound{v, fmt::format("{} {}", sentence, format_number(v))};
    return true;
  }

  bool pattern(const value& v, const std::string& pointer, std::optional<detail::Pattern>& out) {
    if (!v.is_string()) return fail(pointer, "must be a string (a regular expression)");
    const std::string_view source = v.get_string();
    for (std::size_t i = 0; i < source.size(); ++i) {
      if (static_cast<unsigned char>(source[i]) >= 0x80) {
        return fail(pointer, "must be ASCII (patterns are matched byte by byte)");
      }
      if (source[i] == '\\' && i + 1 < source.size()) {
        ++i;
        if (source[i] == 'p' || source[i] == 'P') {
          return fail(pointer, "Unicode property escapes are not supported");
        }
        if (source[i] == 'c') {
          // libstdc++ reads "\cC" as "C" rather than the control character.
          return fail(pointer, "control escapes (\\cX) are not supported; use \\xHH");
        }
      }
    }
    try {
      const auto quoted = boost::json::serialize(v);
      out = detail::Pattern{quoted, std::regex(source.begin(), source.end(), std::regex::ECMAScript),
                            "must match the pattern " + quoted};
    } catch (const std::regex_error& e) {
      return fail(pointer, fmt::format("is not a valid regular expression ({})", e.what()));
    }
    return true;
  }

  // Resolves a "#..." reference to the value it names and the canonical JSON pointer of that value.
  std::optional<std::pair<const value*, std::string>> resolve(std::string_view ref,
                                                              const std::string& pointer) {
    if (!ref.starts_with('#')) {
      fail(pointer, "only references inside this document (\"#/...\") are supported");
      return std::nullopt;
    }
    std::string fragment;
    for (std::size_t i = 1; i < ref.size(); ++i) {
      if (ref[i] != '%') {
        fragment.push_back(ref[i]);
        continue;
      }
      unsigned byte = 0;
      if (i + 2 >= ref.size() || !is_hex(ref[i + 1]) || !is_hex(ref[i + 2]) ||
          std::from_chars(ref.data() + i + 1, ref.data() + i + 3, byte, 16).ec != std::errc()) {
        fail(pointer, "has an invalid percent-encoding");
        return std::nullopt;
      }
      fragment.push_back(static_cast<char>(byte));
      i += 2;
    }
    if (!fragment.empty() && fragment.front() != '/') {
      fail(pointer, "anchors are not supported; use a JSON pointer (\"#/$defs/name\")");
      return std::nullopt;
    }
    const value* target = &root_;
    std::string canonical;
    std::size_t pos = 0;
    while (pos < fragment.size()) {
      const auto next = fragment.find('/', pos + 1);
      const auto raw =
          std::string_view(fragment).substr(pos + 1, next == std::string::npos ? next : next - pos - 1);
      std::string token;
      for (std::size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
          token.push_back(raw[i + 1] == '0' ? '~' : '/');
          ++i;
        } else if (raw[i] == '~') {
          fail(pointer, "has an invalid JSON pointer escape ('~' must be followed by 0 or 1)");
          return std::nullopt;
        } else {
          token.push_back(raw[i]);
        }
      }
      const value* child = nullptr;
      if (const auto* obj = target->if_object()) {
        child = obj->if_contains(token);
      } else if (const auto* arr = target->if_array()) {
        std::size_t index = 0;
        const bool numeric =
            !token.empty() && std::all_of(token.begin(), token.end(), is_digit) &&
            (token.size() == 1 || token.front() != '0') &&
            std::from_chars(token.data(), token.data() + token.size(), index).ec == std::errc();
        if (numeric && index < arr->size()) child = &(*arr)[index];
      }
      if (child == nullptr) {
        fail(pointer, fmt::format("\"{}\" does not resolve to a value in this document", ref));
        return std::nullopt;
      }
      target = child;
      append_token(canonical, token);
      pos = next == std::string::npos ? fragment.size() : next;
    }
    return std::pair{target, std::move(canonical)};
  }

  bool annotation(std::string_view key, const value& v, const std::string& pointer, bool at_root) {
    if (key == "title" || key == "description" || key == "$comment") {
      return v.is_string() || fail(pointer, "must be a string");
    }
    if (key == "deprecated" || key == "readOnly" || key == "writeOnly") {
      return v.is_bool() || fail(pointer, "must be a boolean");
    }
    if (key == "examples") return v.is_array() || fail(pointer, "must be an array");
    if (key == "$schema") {
      const auto* s = v.if_string();
      const std::string_view uri = s == nullptr ? std::string_view() : std::string_view(*s);
      if (uri != kDraft202012 && uri != std::string(kDraft202012) + "#") {
        return fail(pointer, fmt::format("only JSON Schema 2020-12 (\"{}\") is supported", kDraft202012));
      }
      return true;
    }
    if (key == "$id") {
      if (!at_root) return fail(pointer, "is supported only at the root (embedded schema resources are not)");
      return v.is_string() || fail(pointer, "must be a string");
    }
    return true;  // "default": any value
  }

  bool keyword(SchemaNode& node, std::string_view key, const value& v, const std::string& kp,
               std::size_t depth) {
    static constexpr std::string_view kAnnotations[] = {"title",    "description", "examples", "default",
                                                        "$comment", "deprecated",  "readOnly", "writeOnly",
                                                        "$schema",  "$id"};
    static constexpr std::string_view kUnsupported[] = {
        "$anchor",          "$dynamicRef",           "$dynamicAnchor",
        "$vocabulary",      "$recursiveRef",         "$recursiveAnchor",
        "contains",         "minContains",           "maxContains",
        "unevaluatedItems", "unevaluatedProperties", "dependentRequired",
        "dependentSchemas", "contentEncoding",       "contentMediaType",
        "contentSchema",    "additionalItems",       "definitions",
        "dependencies"};

    if (std::find(std::begin(kAnnotations), std::end(kAnnotations), key) != std::end(kAnnotations)) {
      return annotation(key, v, kp, node.pointer.empty());
    }
    if (key == "type") return type(node, v, kp);
    if (key == "enum") {
      const auto* arr = v.if_array();
      if (arr == nullptr || arr->empty()) return fail(kp, "must be a non-empty array");
      node.has_enum = true;
      node.enum_values.assign(arr->begin(), arr->end());
      std::vector<const value*> shown;
      for (const auto& item : node.enum_values) shown.push_back(&item);
      node.enum_message = one_of_message(shown);
      return true;
    }
    if (key == "const") {
      node.const_value = v;
      node.const_message = "must be " + display(v);
      return true;
    }
    if (key == "properties") {
      if (!schema_map(v, kp, depth, node.properties)) return false;
      std::sort(node.properties.begin(), node.properties.end(),
                [](const auto& a, const auto& b) { return a.name < b.name; });
      return true;
    }
    if (key == "required") return required(node, v, kp);
    if (key == "additionalProperties") {
      return (node.additional_properties = subschema(v, kp, depth)) != nullptr;
    }
    if (key == "patternProperties") {
      const auto* obj = v.if_object();
      if (obj == nullptr) return fail(kp, "must be an object whose members are schemas");
      for (const auto& member : *obj) {
        const auto member_pointer = pointer_append(kp, member.key());
        std::optional<detail::Pattern> compiled;
        if (!pattern(value(member.key()), member_pointer, compiled)) return false;
        const auto* schema = subschema(member.value(), member_pointer, depth);
        if (schema == nullptr) return false;
        node.pattern_properties.push_back({std::move(*compiled), schema});
      }
      return true;
    }
    if (key == "propertyNames") return (node.property_names = subschema(v, kp, depth)) != nullptr;
    if (key == "minProperties") return count(v, kp, node.min_properties);
    if (key == "maxProperties") return count(v, kp, node.max_properties);
    if (key == "items") {
      if (v.is_array()) return fail(kp, "must be a schema (for tuples, use prefixItems)");
      return (node.items = subschema(v, kp, depth)) != nullptr;
    }
    if (key == "prefixItems") return schema_array(v, kp, depth, node.prefix_items);
    if (key == "minItems") return count(v, kp, node.min_items);
    if (key == "maxItems") return count(v, kp, node.max_items);
    if (key == "uniqueItems") {
      if (!v.is_bool()) return fail(kp, "must be a boolean");
      node.unique_items = v.get_bool();
      return true;
    }
    if (key == "minLength") return count(v, kp, node.min_length);
    if (key == "maxLength") return count(v, kp, node.max_length);
    if (key == "pattern") return pattern(v, kp, node.pattern);
    if (key == "format") return format(node, v, kp);
    if (key == "minimum") return bound(v, kp, "must be at least", node.minimum);
    if (key == "maximum") return bound(v, kp, "must be at most", node.maximum);
    if (key == "exclusiveMinimum") return bound(v, kp, "must be greater than", node.exclusive_minimum);
    if (key == "exclusiveMaximum") return bound(v, kp, "must be less than", node.exclusive_maximum);
    if (key == "multipleOf") {
      if (!bound(v, kp, "must be a multiple of", node.multiple_of)) return false;
      return compare_numbers(v, value(0)) > 0 || fail(kp, "must be greater than 0");
    }
    if (key == "allOf") return schema_array(v, kp, depth, node.all_of);
    if (key == "anyOf") return schema_array(v, kp, depth, node.any_of);
    if (key == "oneOf") return schema_array(v, kp, depth, node.one_of);
    if (key == "not") return (node.not_schema = subschema(v, kp, depth)) != nullptr;
    if (key == "if") return (node.if_schema = subschema(v, kp, depth)) != nullptr;
    if (key == "then") return (node.then_schema = subschema(v, kp, depth)) != nullptr;
    if (key == "else") return (node.else_schema = subschema(v, kp, depth)) != nullptr;
    if (key == "$defs") {
      std::vector<detail::NamedSchema> defs;
      return schema_map(v, kp, depth, defs);
    }
    if (key == "$ref") {
      if (!v.is_string()) return fail(kp, "must be a string");
      const auto target = resolve(v.get_string(), kp);
      if (!target) return false;
      return (node.ref = subschema(*target->first, target->second, depth)) != nullptr;
    }
    if (std::find(std::begin(kUnsupported), std::end(kUnsupported), key) != std::end(kUnsupported)) {
      return fail(kp, fmt::format("keyword \"{}\" is not supported", key));
    }
    return fail(kp, fmt::format("unknown keyword \"{}\"", key));
  }

  bool type(SchemaNode& node, const value& v, const std::string& kp) {
    static constexpr std::pair<std::string_view, unsigned> kTypes[] = {
        {"null", kNull},     {"boolean", kBoolean}, {"object", kObject}, {"array", kArray},
        {"number", kNumber}, {"integer", kInteger}, {"string", kString}};
    static constexpr std::string_view kNames[] = {"null",     "a boolean",  "an object", "an array",
                                                  "a number", "an integer", "a string"};
    std::vector<std::pair<const value*, std::string>> names;
    if (v.is_string()) {
      names.emplace_back(&v, kp);
    } else if (const auto* arr = v.if_array(); arr != nullptr && !arr->empty()) {
      for (std::size_t i = 0; i < arr->size(); ++i) {
        names.emplace_back(&(*arr)[i], pointer_append(kp, std::to_string(i)));
      }
    } else {
      return fail(kp, "must be a type name or a non-empty array of type names");
    }
    std::vector<std::string_view> expected;
    for (const auto& [name, pointer] : names) {
      const auto* s = name->if_string();
      const auto* it = s == nullptr ? std::end(kTypes)
                                    : std::find_if(std::begin(kTypes), std::end(kTypes), [&](const auto& t) {
                                        return t.first == std::string_view(*s);
                                      });
      if (it == std::end(kTypes)) {
        return fail(pointer,
                    "must be one of \"null\", \"boolean\", \"object\", \"array\", \"number\", \"integer\", "
                    "\"string\"");
      }
      if ((node.types & it->second) != 0) return fail(pointer, "repeats a type");
      node.types |= it->second;
      expected.push_back(kNames[it - std::begin(kTypes)]);
    }
    for (std::size_t i = 0; i < expected.size(); ++i) {
      if (i > 0) node.types_expected += i + 1 == expected.size() ? " or " : ", ";
      node.types_expected += expected[i];
    }
    return true;
  }

  bool required(SchemaNode& node, const value& v, const std::string& kp) {
    const auto* arr = v.if_array();
    if (arr == nullptr) return fail(kp, "must be an array of member names");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const auto item_pointer = pointer_append(kp, std::to_string(i));
      const auto* name = (*arr)[i].if_string();
      if (name == nullptr) return fail(item_pointer, "must be a string");
      if (std::find(node.required.begin(), node.required.end(), std::string_view(*name)) !=
          node.required.end()) {
        return fail(item_pointer, fmt::format("repeats \"{}\"", std::string_view(*name)));
      }
      node.required.emplace_back(*name);
    }
    return true;
  }

  bool format(SchemaNode& node, const value& v, const std::string& kp) {
    static constexpr std::pair<std::string_view, Format> kFormats[] = {
        {"date-time", Format::date_time},
        {"uri", Format::uri},
        {"uri-reference", Format::uri_reference},
        {"email", Format::email},
        {"uuid", Format::uuid}};
    const auto* s = v.if_string();
    const auto* it = s == nullptr
                         ? std::end(kFormats)
                         : std::find_if(std::begin(kFormats), std::end(kFormats),
                                        [&](const auto& f) { return f.first == std::string_view(*s); });
    if (it == std::end(kFormats)) {
      return fail(kp, "must be one of \"date-time\", \"uri\", \"uri-reference\", \"email\", \"uuid\"");
    }
    node.format = it->second;
    return true;
  }

  // Rejects cycles of subschemas applied to the same instance value ($ref, allOf, anyOf, oneOf, not, if,
  // then, else), as validating them would never end, and chains of them longer than kMaxInPlaceChain.
  // Iterative depth-first search.
  bool check_cycles() {
    enum class Mark : unsigned char { unvisited, on_path, done };
    std::unordered_map<const SchemaNode*, Mark> marks;
    std::unordered_map<const SchemaNode*, std::size_t> chain;  // longest in-place chain from a finished node
    struct Frame {
      const SchemaNode* node;
      std::vector<const SchemaNode*> edges;
      std::size_t next = 0;
    };
    const auto edges_of = [](const SchemaNode& n) {
      std::vector<const SchemaNode*> out;
      if (n.ref != nullptr) out.push_back(n.ref);
      out.insert(out.end(), n.all_of.begin(), n.all_of.end());
      out.insert(out.end(), n.any_of.begin(), n.any_of.end());
      out.insert(out.end(), n.one_of.begin(), n.one_of.end());
      for (const auto* s : {n.not_schema, n.if_schema, n.then_schema, n.else_schema}) {
        if (s != nullptr) out.push_back(s);
      }
      return out;
    };
    for (const auto& start : nodes_) {
      if (marks[&start] != Mark::unvisited) continue;
      std::vector<Frame> path;
      path.push_back({&start, edges_of(start)});
      marks[&start] = Mark::on_path;
      while (!path.empty()) {
        auto& top = path.back();
        if (top.next == top.edges.size()) {
          // Without cycles, every edge of a finished node leads to a finished node.
          std::size_t longest = 0;
          for (const auto* edge : top.edges) longest = std::max(longest, chain[edge]);
          if (longest + 1 > kMaxInPlaceChain) {
            return fail(
                top.node->pointer,
                fmt::format("starts a chain of more than {} subschemas applied to the same value ($ref, "
                            "allOf, anyOf, oneOf, not, if, then, else)",
                            kMaxInPlaceChain));
          }
          chain[top.node] = longest + 1;
          marks[top.node] = Mark::done;
          path.pop_back();
          continue;
        }
        const auto* next = top.edges[top.next++];
        const auto mark = marks[next];
        if (mark == Mark::on_path) return cycle_error(path, next);
        if (mark == Mark::unvisited) {
          marks[next] = Mark::on_path;
          path.push_back({next, edges_of(*next)});
        }
      }
    }
    return true;
  }

  template <class Frames>
  bool cycle_error(const Frames& path, const SchemaNode* back_to) {
    // Each frame's last edge taken leads to the next frame (the last one's back to `back_to`); the error
    // points at the first of them that is a $ref.
    auto it = std::find_if(path.begin(), path.end(), [&](const auto& f) { return f.node == back_to; });
    std::string chain;
    std::optional<std::string> at;
    for (; it != path.end(); ++it) {
      chain += "#" + it->node->pointer + " -> ";
      if (!at && it->edges[it->next - 1] == it->node->ref) at = it->node->pointer + "/$ref";
    }
    chain += "#" + back_to->pointer;
    return fail(at.value_or(back_to->pointer),
                fmt::format("$ref cycle that never descends into the instance ({})", chain));
  }

  static const value* single_value(const SchemaNode* n, int budget) {
    if (n == nullptr || budget <= 0) return nullptr;
    if (n->const_value) return &*n->const_value;
    if (n->has_enum && n->enum_values.size() == 1) return &n->enum_values.front();
    if (const auto* v = single_value(n->ref, budget - 1)) return v;
    for (const auto* part : n->all_of) {
      if (const auto* v = single_value(part, budget - 1)) return v;
    }
    return nullptr;
  }

  static const value* property_value(const SchemaNode* n, std::string_view name, int budget) {
    if (n == nullptr || budget <= 0) return nullptr;
    if (const auto* property = find_property(*n, name)) {
      if (const auto* v = single_value(property, kDiscriminatorSearchDepth)) return v;
    }
    if (const auto* v = property_value(n->ref, name, budget - 1)) return v;
    for (const auto* part : n->all_of) {
      if (const auto* v = property_value(part, name, budget - 1)) return v;
    }
    return nullptr;
  }

  static bool requires_property(const SchemaNode* n, std::string_view name, int budget) {
    if (n == nullptr || budget <= 0) return false;
    if (std::find(n->required.begin(), n->required.end(), name) != n->required.end()) return true;
    if (requires_property(n->ref, name, budget - 1)) return true;
    return std::any_of(n->all_of.begin(), n->all_of.end(),
                       [&](const auto* part) { return requires_property(part, name, budget - 1); });
  }

  static void property_names(const SchemaNode* n, int budget, std::vector<std::string_view>& out) {
    if (n == nullptr || budget <= 0) return;
    for (const auto& p : n->properties) out.push_back(p.name);
    property_names(n->ref, budget - 1, out);
    for (const auto* part : n->all_of) property_names(part, budget - 1, out);
  }

  static std::optional<detail::Discriminator> discriminator(
      const std::vector<const SchemaNode*>& alternatives) {
    std::vector<std::string_view> candidates;
    property_names(alternatives.front(), kDiscriminatorSearchDepth, candidates);
    for (const auto name : candidates) {
      detail::Discriminator d;
      d.property = std::string(name);
      for (const auto* alternative : alternatives) {
        const auto* v = property_value(alternative, name, kDiscriminatorSearchDepth);
        if (v == nullptr) break;
        d.values.push_back(v);
      }
      if (d.values.size() != alternatives.size()) continue;
      d.required_everywhere =
          std::all_of(alternatives.begin(), alternatives.end(), [&](const auto* alternative) {
            return requires_property(alternative, name, kDiscriminatorSearchDepth);
          });
      std::vector<const value*> distinct;
      for (const auto* v : d.values) {
        if (std::none_of(distinct.begin(), distinct.end(),
                         [&](const auto* seen) { return json_equal(*seen, *v); })) {
          distinct.push_back(v);
        }
      }
      d.unknown_message = one_of_message(distinct);
      return d;
    }
    return std::nullopt;
  }

  const value& root_;
  std::deque<SchemaNode>& nodes_;
  std::unordered_map<std::string, SchemaNode*> by_pointer_;
  std::optional<Error> error_;
};

// Walks one instance against a compiled schema. With `errors` null it only answers (and stops at the first
// violation); otherwise it appends violations until `budget` is spent.
class Evaluator {
 public:
  Evaluator(std::vector<FieldError>* errors, std::size_t budget, std::string_view base_pointer,
            std::size_t frames = 0)
      : errors_(errors), budget_(budget), pointer_(base_pointer), frames_(frames) {}

  bool eval(const SchemaNode& node, const value& v) {
    const FrameGuard frame(*this);
    if (frames_ > kMaxEvaluationDepth) {
      report("is nested too deeply to validate");
      return false;
    }
    if (node.reject_all) {
      report("is not allowed");
      return false;
    }
    if (node.types != 0 && (node.types & type_bits(v)) == 0) {
      if (collecting()) report(fmt::format("must be {}, not {}", node.types_expected, json_type_name(v)));
      return false;
    }
    bool ok = true;
    // Records a violation; true when evaluation should stop (only answering, or no budget left).
    const auto violated = [&] {
      ok = false;
      return stopped();
    };
    if (node.const_value && !json_equal(*node.const_value, v)) {
      report(node.const_message);
      if (violated()) return false;
    }
    if (node.has_enum && std::none_of(node.enum_values.begin(), node.enum_values.end(),
                                      [&](const value& allowed) { return json_equal(allowed, v); })) {
      report(node.enum_message);
      if (violated()) return false;
    }
    bool kind_ok = true;
    switch (v.kind()) {
      case boost::json::kind::object:
        kind_ok = eval_object(node, v.get_object());
        break;
      case boost::json::kind::array:
        kind_ok = eval_array(node, v.get_array());
        break;
      case boost::json::kind::string:
        kind_ok = eval_string(node, v.get_string());
        break;
      case boost::json::kind::int64:
      case boost::json::kind::uint64:
      case boost::json::kind::double_:
        kind_ok = eval_number(node, v);
        break;
      default:
        break;
    }
    if (!kind_ok && violated()) return false;
    if (node.ref != nullptr && !eval(*node.ref, v) && violated()) return false;
    for (const auto* part : node.all_of) {
      if (!eval(*part, v) && violated()) return false;
    }
    if (!node.any_of.empty()) {
      const bool any = std::any_of(node.any_of.begin(), node.any_of.end(),
                                   [&](const SchemaNode* alternative) { return matches(*alternative, v); });
      if (!any) {
        if (collecting()) {
          report_alternatives(
              node.any_of, node.any_of_discriminator, v,
              fmt::format("must match at least one of the {} alternatives", node.any_of.size()));
        }
        if (violated()) return false;
      }
    }
    if (!node.one_of.empty()) {
      std::size_t matched = 0;
      for (const auto* alternative : node.one_of) {
        if (matches(*alternative, v)) ++matched;
      }
      if (matched != 1) {
        if (collecting()) {
          const auto generic = fmt::format("must match exactly one of the {} alternatives (matched {})",
                                           node.one_of.size(), matched);
          if (matched == 0) {
            report_alternatives(node.one_of, node.one_of_discriminator, v, generic);
          } else {
            report(generic);
          }
        }
        if (violated()) return false;
      }
    }
    if (node.not_schema != nullptr && matches(*node.not_schema, v)) {
      report("must not match the schema given by \"not\"");
      if (violated()) return false;
    }
    if (node.if_schema != nullptr) {
      const auto* branch = matches(*node.if_schema, v) ? node.then_schema : node.else_schema;
      if (branch != nullptr && !eval(*branch, v) && violated()) return false;
    }
    return ok;
  }

 private:
  struct FrameGuard {
    explicit FrameGuard(Evaluator& e) : evaluator(e) { ++evaluator.frames_; }
    ~FrameGuard() { --evaluator.frames_; }
    FrameGuard(const FrameGuard&) = delete;
    FrameGuard& operator=(const FrameGuard&) = delete;
    Evaluator& evaluator;
  };

  // Appends a reference token to the instance pointer for its lifetime (only when collecting errors).
  class Step {
   public:
    Step(Evaluator& e, std::string_view token) : evaluator_(e), size_(e.pointer_.size()) {
      if (evaluator_.collecting()) append_token(evaluator_.pointer_, token);
    }
    Step(Evaluator& e, std::size_t index) : evaluator_(e), size_(e.pointer_.size()) {
      if (evaluator_.collecting()) fmt::format_to(std::back_inserter(evaluator_.pointer_), "/{}", index);
    }
    ~Step() { evaluator_.pointer_.resize(size_); }
    Step(const Step&) = delete;
    Step& operator=(const Step&) = delete;

   private:
    Evaluator& evaluator_;
    std::size_t size_;
  };

  bool collecting() const { return errors_ != nullptr; }
  bool stopped() const { return errors_ == nullptr || budget_ == 0; }

  void report(std::string_view detail) {
    if (errors_ == nullptr || budget_ == 0) return;
    errors_->push_back({pointer_, fmt::format("{}{}", detail_prefix_, detail)});
    --budget_;
  }

  void report_member(std::string_view token, std::string_view detail) {
    const Step step(*this, token);
    report(detail);
  }

  // Whether `v` is valid against `node`, without reporting anything.
  bool matches(const SchemaNode& node, const value& v) {
    Evaluator quiet(nullptr, 0, {}, frames_);
    return quiet.eval(node, v);
  }

  // Reports a failed anyOf / oneOf that no alternative matched: through the discriminating property when
  // there is one, else with `generic`.
  void report_alternatives(const std::vector<const SchemaNode*>& alternatives,
                           const std::optional<detail::Discriminator>& discriminator, const value& v,
                           const std::string& generic) {
    const auto* obj = v.if_object();
    if (!discriminator || obj == nullptr) return report(generic);
    const auto* tag = obj->if_contains(discriminator->property);
    if (tag == nullptr) {
      if (discriminator->required_everywhere) return report_member(discriminator->property, "is required");
      return report(generic);
    }
    for (std::size_t i = 0; i < alternatives.size(); ++i) {
      if (json_equal(*discriminator->values[i], *tag)) {
        const auto before = budget_;
        if (eval(*alternatives[i], v) || budget_ == before) report(generic);
        return;
      }
    }
    report_member(discriminator->property, discriminator->unknown_message);
  }

  bool eval_object(const SchemaNode& node, const object& obj) {
    bool ok = true;
    for (const auto& name : node.required) {
      if (!obj.contains(name)) {
        report_member(name, "is required");
        ok = false;
        if (stopped()) return false;
      }
    }
    if (node.min_properties && obj.size() < *node.min_properties) {
      report(fmt::format("must have at least {}", plural(*node.min_properties, "member")));
      ok = false;
      if (stopped()) return false;
    }
    if (node.max_properties && obj.size() > *node.max_properties) {
      report(fmt::format("must have at most {}", plural(*node.max_properties, "member")));
      ok = false;
      if (stopped()) return false;
    }
    if (node.properties.empty() && node.pattern_properties.empty() && node.additional_properties == nullptr &&
        node.property_names == nullptr) {
      return ok;
    }
    for (const auto& member : obj) {
      const std::string_view name = member.key();
      const Step step(*this, name);
      if (node.property_names != nullptr && !eval_name(*node.property_names, name)) {
        ok = false;
        if (stopped()) return false;
      }
      bool known = false;
      if (const auto* schema = find_property(node, name)) {
        known = true;
        if (!eval(*schema, member.value())) {
          ok = false;
          if (stopped()) return false;
        }
      }
      for (const auto& pp : node.pattern_properties) {
        if (name.size() > JsonSchema::kMaxPatternSubjectBytes) {
          report(fmt::format("has a name longer than {} bytes, too long to check against the pattern {}",
                             JsonSchema::kMaxPatternSubjectBytes, pp.pattern.quoted));
          ok = false;
          if (stopped()) return false;
          continue;
        }
        if (!std::regex_search(name.begin(), name.end(), pp.pattern.regex)) continue;
        known = true;
        if (!eval(*pp.schema, member.value())) {
          ok = false;
          if (stopped()) return false;
        }
      }
      if (!known && node.additional_properties != nullptr) {
        if (node.additional_properties->reject_all) {
          report("is not allowed (unknown member)");
          ok = false;
        } else if (!eval(*node.additional_properties, member.value())) {
          ok = false;
        }
        if (!ok && stopped()) return false;
      }
    }
    return ok;
  }

  // Validates a member name (as a string) against propertyNames; its errors say "name ...".
  bool eval_name(const SchemaNode& schema, std::string_view name) {
    const value name_value(name);
    const auto saved = detail_prefix_;
    detail_prefix_ = "name ";
    const bool ok = eval(schema, name_value);
    detail_prefix_ = saved;
    return ok;
  }

  bool eval_array(const SchemaNode& node, const array& arr) {
    bool ok = true;
    const auto violated = [&] {
      ok = false;
      return stopped();
    };
    if (node.min_items && arr.size() < *node.min_items) {
      report(fmt::format("must have at least {}", plural(*node.min_items, "item")));
      if (violated()) return false;
    }
    if (node.max_items && arr.size() > *node.max_items) {
      report(fmt::format("must have at most {}", plural(*node.max_items, "item")));
      if (violated()) return false;
    }
    if (node.unique_items) {
      if (const auto duplicate = find_duplicate(arr)) {
        if (collecting()) {
          report(fmt::format("must not contain duplicate items (items {} and {} are equal)", duplicate->first,
                             duplicate->second));
        }
        if (violated()) return false;
      }
    }
    const std::size_t prefix = std::min(arr.size(), node.prefix_items.size());
    for (std::size_t i = 0; i < prefix; ++i) {
      const Step step(*this, i);
      if (!eval(*node.prefix_items[i], arr[i]) && violated()) return false;
    }
    if (node.items != nullptr) {
      for (std::size_t i = prefix; i < arr.size(); ++i) {
        const Step step(*this, i);
        if (!eval(*node.items, arr[i]) && violated()) return false;
      }
    }
    return ok;
  }

  bool eval_string(const SchemaNode& node, std::string_view s) {
    bool ok = true;
    const auto violated = [&] {
      ok = false;
      return stopped();
    };
    bool length_ok = true;
    if (node.min_length || node.max_length) {
      const auto length = code_points(s);
      if (node.min_length && length < *node.min_length) {
        report(fmt::format("must be at least {}", plural(*node.min_length, "character")));
        if (violated()) return false;
      }
      if (node.max_length && length > *node.max_length) {
        length_ok = false;
        report(fmt::format("must be at most {}", plural(*node.max_length, "character")));
        if (violated()) return false;
      }
    }
    if (node.pattern) {
      if (s.size() > JsonSchema::kMaxPatternSubjectBytes) {
        if (length_ok) {
          report(fmt::format("is longer than {} bytes, too long to check against the pattern {}",
                             JsonSchema::kMaxPatternSubjectBytes, node.pattern->quoted));
        }
        if (violated()) return false;
      } else if (!std::regex_search(s.begin(), s.end(), node.pattern->regex)) {
        report(node.pattern->message);
        if (violated()) return false;
      }
    }
    if (node.format != Format::none && !format_holds(node.format, s)) {
      report(format_message(node.format));
      if (violated()) return false;
    }
    return ok;
  }

  bool eval_number(const SchemaNode& node, const value& v) {
    bool ok = true;
    const auto check = [&](const std::optional<detail::Bound>& bound, auto holds) {
      if (!bound || holds(bound->limit)) return false;
      report(bound->message);
      ok = false;
      return stopped();
    };
    if (check(node.minimum, [&](const value& limit) { return compare_numbers(v, limit) >= 0; })) return false;
    if (check(node.exclusive_minimum, [&](const value& limit) { return compare_numbers(v, limit) > 0; })) {
      return false;
    }
    if (check(node.maximum, [&](const value& limit) { return compare_numbers(v, limit) <= 0; })) return false;
    if (check(node.exclusive_maximum, [&](const value& limit) { return compare_numbers(v, limit) < 0; })) {
      return false;
    }
    if (check(node.multiple_of, [&](const value& limit) { return is_multiple_of(v, limit); })) return false;
    return ok;
  }

  std::vector<FieldError>* errors_;
  std::size_t budget_;
  std::string pointer_;
  std::size_t frames_;
  std::string_view detail_prefix_;
};

}  // namespace

Result<JsonSchema> JsonSchema::compile(const boost::json::value& schema) {
  auto arena = std::make_shared<std::deque<SchemaNode>>();
  Compiler compiler(schema, *arena);
  const auto* root = compiler.compile_document();
  if (root == nullptr) return std::unexpected(compiler.take_error());
  return JsonSchema(std::shared_ptr<const SchemaNode>(std::move(arena), root));
}

bool JsonSchema::validate(const boost::json::value& instance, std::vector<FieldError>& errors,
                          std::string_view base_pointer, std::size_t max_errors) const {
  if (nested_deeper_than(instance, kMaxInstanceDepth)) {
    if (max_errors > 0) {
      errors.push_back(
          {std::string(base_pointer), fmt::format("is nested more than {} levels deep", kMaxInstanceDepth)});
    }
    return false;
  }
  Evaluator evaluator(max_errors > 0 ? &errors : nullptr, max_errors, base_pointer);
  return evaluator.eval(*root_, instance);
}

Result<void> JsonSchema::check(const boost::json::value& instance) const {
  std::vector<FieldError> errors;
  validate(instance, errors);
  return validation_result(std::move(errors));
}

}  // namespace twinbridge::core
