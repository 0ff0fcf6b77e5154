#include "core/thing_description.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/json_reader.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

namespace json = boost::json;

namespace {

using Names = std::span<const std::string_view>;

constexpr std::array<std::string_view, 4> kPropertyOps{"readproperty", "writeproperty", "observeproperty",
                                                       "unobserveproperty"};
constexpr std::array<std::string_view, 3> kActionOps{"invokeaction", "queryaction", "cancelaction"};
constexpr std::array<std::string_view, 2> kEventOps{"subscribeevent", "unsubscribeevent"};
constexpr std::array<std::string_view, 9> kThingOps{
    "readallproperties",       "writeallproperties",   "readmultipleproperties",
    "writemultipleproperties", "observeallproperties", "unobserveallproperties",
    "subscribeallevents",      "unsubscribeallevents", "queryallactions"};
constexpr std::array<std::string_view, 7> kSchemaTypes{"object",  "array",   "string", "number",
                                                       "integer", "boolean", "null"};
constexpr std::array<std::string_view, 9> kSecuritySchemes{"nosec",  "auto",   "combo", "basic", "digest",
                                                           "apikey", "bearer", "psk",   "oauth2"};
constexpr std::array<std::string_view, 6> kSecurityLocations{"header", "query", "body",
                                                             "cookie", "uri",   "auto"};
constexpr std::array<std::string_view, 2> kDigestQops{"auth", "auth-int"};
constexpr std::size_t kMaxFrameBytes = 256;
constexpr double kUnitTolerance = 1e-6;

enum class Kind { property, action, event, thing };

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::property:
      return "a property";
    case Kind::action:
      return "an action";
    case Kind::event:
      return "an event";
    case Kind::thing:
      return "the whole Thing";
  }
  return "";
}

Names ops_for(Kind kind) {
  switch (kind) {
    case Kind::property:
      return kPropertyOps;
    case Kind::action:
      return kActionOps;
    case Kind::event:
      return kEventOps;
    case Kind::thing:
      return kThingOps;
  }
  return {};
}

bool contains(Names names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::string join(Names names) {
  std::string out;
  for (const auto name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

bool is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
bool is_scheme(std::string_view s) {
  if (s.empty() || !is_alpha(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
  });
}

// Characters a URI reference may hold outside percent-encodings: RFC 3986 unreserved characters, gen-delims
// and sub-delims, and non-ASCII octets (IRIs, RFC 3987).
bool is_uri_char(unsigned char c) {
  if (c >= 0x80 || is_alpha(c) || is_digit(c)) return true;
  return std::string_view("-._~:/?#[]@!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string describe_char(unsigned char c) {
  if (c == ' ') return "a space";
  if (c > 0x20 && c < 0x7f) return fmt::format("'{}'", static_cast<char>(c));
  return fmt::format("byte 0x{:02x}", c);
}

enum class UriKind {
  absolute,   // a URI with a scheme
  reference,  // a URI reference, possibly relative
  href,       // a URI reference that may hold RFC 6570 template expressions ("{?speed}")
};

// What is wrong with `s` as a URI of `kind`, or nullopt.
std::optional<std::string> uri_problem(std::string_view s, UriKind kind) {
  if (s.empty()) {
    return kind == UriKind::absolute ? "must be an absolute URI (with a scheme), not empty"
                                     : "must not be empty";
  }
  bool in_template = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (in_template) {
      if (c == '}') {
        in_template = false;
      } else if (c == '{' || c <= 0x20 || c == 0x7f) {
        return fmt::format("has a malformed URI template expression at offset {}", i);
      }
      continue;
    }
    if (c == '{' && kind == UriKind::href) {
      in_template = true;
      continue;
    }
    if (c == '%') {
      if (i + 2 >= s.size() || !is_hex(static_cast<unsigned char>(s[i + 1])) ||
          !is_hex(static_cast<unsigned char>(s[i + 2]))) {
        return fmt::format("is not a URI: '%' at offset {} is not followed by two hexadecimal digits", i);
      }
      i += 2;
      continue;
    }
    if (!is_uri_char(c)) {
      return fmt::format("is not a URI: {} at offset {} is not allowed", describe_char(c), i);
    }
  }
  if (in_template) return "has an unclosed URI template expression";
  const auto end = s.find_first_of(":/?#{");
  const bool has_scheme = end != std::string_view::npos && s[end] == ':';
  if (has_scheme && !is_scheme(s.substr(0, end))) {
    return fmt::format("is not a URI: '{}' before the first ':' is not a scheme", s.substr(0, end));
  }
  if (kind == UriKind::absolute && !has_scheme) return "must be an absolute URI (with a scheme)";
  return std::nullopt;
}

// RFC 9110 token characters.
bool is_tchar(unsigned char c) {
  return is_alpha(c) || is_digit(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// type "/" subtype *( OWS ";" OWS token "=" ( token / quoted-string ) ), as RFC 9110 writes media types.
bool is_media_type(std::string_view s) {
  std::size_t i = 0;
  const auto token = [&] {
    const auto start = i;
    while (i < s.size() && is_tchar(static_cast<unsigned char>(s[i]))) ++i;
    return i > start;
  };
  const auto whitespace = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  };
  if (!token() || i >= s.size() || s[i] != '/') return false;
  ++i;
  if (!token()) return false;
  for (;;) {
    whitespace();
    if (i == s.size()) return true;
    if (s[i] != ';') return false;
    ++i;
    whitespace();
    if (!token() || i >= s.size() || s[i] != '=') return false;
    ++i;
    if (i < s.size() && s[i] == '"') {
      ++i;
      while (i < s.size() && s[i] != '"') i += s[i] == '\\' ? 2 : 1;
      if (i >= s.size()) return false;
      ++i;
    } else if (!token()) {
      return false;
    }
  }
}

// BCP 47 syntax, loosely: subtags of 1 to 8 letters or digits joined by '-', the first of 2 to 8 letters (or
// the single-letter "x" and "i" prefixes).
bool is_language_tag(std::string_view s) {
  std::size_t i = 0;
  bool first = true;
  for (;;) {
    const auto start = i;
    while (i < s.size() && s[i] != '-') {
      const auto c = static_cast<unsigned char>(s[i]);
      if (!is_alpha(c) && (first || !is_digit(c))) return false;
      ++i;
    }
    const auto length = i - start;
    if (length < 1 || length > 8) return false;
    if (first && length == 1 && s[start] != 'x' && s[start] != 'X' && s[start] != 'i' && s[start] != 'I') {
      return false;
    }
    first = false;
    if (i == s.size()) return true;
    ++i;
  }
}

std::string_view view(const json::string& s) {
  return {s.data(), s.size()};
}

bool is_integral(const json::value& v) {
  if (v.is_int64() || v.is_uint64()) return true;
  return v.is_double() && std::isfinite(v.get_double()) && std::trunc(v.get_double()) == v.get_double();
}

std::string wrong_type(std::string_view expected, const json::value& v) {
  return fmt::format("must be {}, not {}", expected, json_type_name(v));
}

// Walks one TD and records every violation; also collects what ThingDescription holds.
class Checker {
 public:
  explicit Checker(const json::object& td) : td_(td) {}

  void check_thing(const std::string& root, ThingDescription& out);

  std::vector<FieldError> take_errors() { return std::move(errors_); }
  std::size_t violations() const { return errors_.size() + dropped_; }

 private:
  using StringVisitor = std::function<void(std::string_view value, const std::string& pointer)>;

  void fail(std::string pointer, std::string detail) {
    if (errors_.size() < kMaxViolations) {
      errors_.push_back({std::move(pointer), std::move(detail)});
    } else {
      ++dropped_;
    }
  }

  // Member readers: each returns null (or nullopt) when the member is absent (a violation when `required`)
  // or has the wrong type (always a violation).
  const json::value* member(const json::object& o, const std::string& pointer, std::string_view key,
                            bool required);
  const json::string* string_member(const json::object& o, const std::string& pointer, std::string_view key,
                                    bool required = false);
  const json::object* object_member(const json::object& o, const std::string& pointer, std::string_view key,
                                    bool required = false);
  const json::array* array_member(const json::object& o, const std::string& pointer, std::string_view key,
                                  bool required = false, bool non_empty = false);
  void boolean_member(const json::object& o, const std::string& pointer, std::string_view key);
  std::optional<double> number_member(const json::object& o, const std::string& pointer, std::string_view key,
                                      bool integer);
  std::optional<std::uint64_t> count_member(const json::object& o, const std::string& pointer,
                                            std::string_view key);
  void enum_member(const json::object& o, const std::string& pointer, std::string_view key, Names allowed);
  void uri_member(const json::object& o, const std::string& pointer, std::string_view key, UriKind kind,
                  bool required = false);
  void media_type_member(const json::object& o, const std::string& pointer, std::string_view key,
                         bool required = false);
  void date_time_member(const json::object& o, const std::string& pointer, std::string_view key);
  // A string or an array of strings (not empty when `non_empty`); calls `visit` for each string.
  void strings_member(const json::object& o, const std::string& pointer, std::string_view key, bool required,
                      bool non_empty, const StringVisitor& visit = {});
  void multilanguage_member(const json::object& o, const std::string& pointer, std::string_view key);
  void descriptive_members(const json::object& o, const std::string& pointer);
  void security_names(const json::object& o, const std::string& pointer, std::string_view key, bool required);

  void check_context(const std::string& root);
  void check_security_definitions(const std::string& root);
  void check_security_scheme(std::string_view name, const json::value& v, const std::string& pointer);
  void check_combo_cycles(const std::string& pointer);
  void check_affordance(Kind kind, const json::value& v, const std::string& pointer);
  void check_forms(Kind kind, const json::object& o, const std::string& pointer, bool required);
  void check_form(Kind kind, const json::value& v, const std::string& pointer);
  void check_link(const json::value& v, const std::string& pointer);
  void check_schema(const json::value& v, const std::string& pointer, int depth);
  void check_schema_terms(const json::object& o, const std::string& pointer, int depth);
  void check_schema_map(const json::object& o, const std::string& pointer, std::string_view key, int depth,
                        bool non_empty = false);
  std::optional<Pose> check_pose(const json::value& v, const std::string& pointer);

  const json::object& td_;
  const json::object* security_definitions_ = nullptr;
  const json::object* schema_definitions_ = nullptr;
  std::vector<FieldError> errors_;
  std::size_t dropped_ = 0;
};

const json::value* Checker::member(const json::object& o, const std::string& pointer, std::string_view key,
                                   bool required) {
  const auto* v = o.if_contains(key);
  if (v == nullptr && required) fail(pointer_append(pointer, key), "is required");
  return v;
}

const json::string* Checker::string_member(const json::object& o, const std::string& pointer,
                                           std::string_view key, bool required) {
  const auto* v = member(o, pointer, key, required);
  if (v == nullptr) return nullptr;
  if (!v->is_string()) {
    fail(pointer_append(pointer, key), wrong_type("a string", *v));
    return nullptr;
  }
  return &v->get_string();
}

const json::object* Checker::object_member(const json::object& o, const std::string& pointer,
                                           std::string_view key, bool required) {
  const auto* v = member(o, pointer, key, required);
  if (v == nullptr) return nullptr;
  if (!v->is_object()) {
    fail(pointer_append(pointer, key), wrong_type("an object", *v));
    return nullptr;
  }
  return &v->get_object();
}

const json::array* Checker::array_member(const json::object& o, const std::string& pointer,
                                         std::string_view key, bool required, bool non_empty) {
  const auto* v = member(o, pointer, key, required);
  if (v == nullptr) return nullptr;
  if (!v->is_array()) {
    fail(pointer_append(pointer, key), wrong_type("an array", *v));
    return nullptr;
  }
  if (non_empty && v->get_array().empty()) {
    fail(pointer_append(pointer, key), "must not be empty");
    return nullptr;
  }
  return &v->get_array();
}

void Checker::boolean_member(const json::object& o, const std::string& pointer, std::string_view key) {
  const auto* v = member(o, pointer, key, false);
  if (v != nullptr && !v->is_bool()) fail(pointer_append(pointer, key), wrong_type("a boolean", *v));
}

std::optional<double> Checker::number_member(const json::object& o, const std::string& pointer,
                                             std::string_view key, bool integer) {
  const auto* v = member(o, pointer, key, false);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) {
    fail(pointer_append(pointer, key), wrong_type(integer ? "an integer" : "a number", *v));
    return std::nullopt;
  }
  if (integer && !is_integral(*v)) {
    fail(pointer_append(pointer, key), "must be an integer, as the schema's type is integer");
    return std::nullopt;
  }
  return v->to_number<double>();
}

std::optional<std::uint64_t> Checker::count_member(const json::object& o, const std::string& pointer,
                                                   std::string_view key) {
  const auto* v = member(o, pointer, key, false);
  if (v == nullptr) return std::nullopt;
  if (v->is_uint64()) return v->get_uint64();
  if (v->is_int64() && v->get_int64() >= 0) return static_cast<std::uint64_t>(v->get_int64());
  if (is_integral(*v) && v->is_double() && v->get_double() >= 0 && v->get_double() < 1.8e19) {
    return static_cast<std::uint64_t>(v->get_double());
  }
  fail(pointer_append(pointer, key),
       v->is_number() ? "must be a non-negative integer" : wrong_type("a non-negative integer", *v));
  return std::nullopt;
}

void Checker::enum_member(const json::object& o, const std::string& pointer, std::string_view key,
                          Names allowed) {
  const auto* s = string_member(o, pointer, key);
  if (s != nullptr && !contains(allowed, view(*s))) {
    fail(pointer_append(pointer, key), fmt::format("must be one of {}, not \"{}\"", join(allowed), view(*s)));
  }
}

void Checker::uri_member(const json::object& o, const std::string& pointer, std::string_view key,
                         UriKind kind, bool required) {
  const auto* s = string_member(o, pointer, key, required);
  if (s == nullptr) return;
  if (auto problem = uri_problem(view(*s), kind)) fail(pointer_append(pointer, key), std::move(*problem));
}

void Checker::media_type_member(const json::object& o, const std::string& pointer, std::string_view key,
                                bool required) {
  const auto* s = string_member(o, pointer, key, required);
  if (s != nullptr && !is_media_type(view(*s))) {
    fail(pointer_append(pointer, key),
         fmt::format("\"{}\" is not a media type (type/subtype with optional ;parameters)", view(*s)));
  }
}

void Checker::date_time_member(const json::object& o, const std::string& pointer, std::string_view key) {
  const auto* s = string_member(o, pointer, key);
  if (s != nullptr && !parse_rfc3339(view(*s))) {
    fail(pointer_append(pointer, key), "must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z");
  }
}

void Checker::strings_member(const json::object& o, const std::string& pointer, std::string_view key,
                             bool required, bool non_empty, const StringVisitor& visit) {
  const auto* v = member(o, pointer, key, required);
  if (v == nullptr) return;
  const auto at = pointer_append(pointer, key);
  if (v->is_string()) {
    if (visit) visit(view(v->get_string()), at);
    return;
  }
  if (!v->is_array()) {
    fail(at, wrong_type("a string or an array of strings", *v));
    return;
  }
  const auto& items = v->get_array();
  if (items.empty() && non_empty) {
    fail(at, "must not be empty");
    return;
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto item_at = pointer_append(at, std::to_string(i));
    if (!items[i].is_string()) {
      fail(item_at, wrong_type("a string", items[i]));
    } else if (visit) {
      visit(view(items[i].get_string()), item_at);
    }
  }
}

void Checker::multilanguage_member(const json::object& o, const std::string& pointer, std::string_view key) {
  const auto* map = object_member(o, pointer, key);
  if (map == nullptr) return;
  const auto at = pointer_append(pointer, key);
  for (const auto& [tag, text] : *map) {
    if (!is_language_tag(tag)) {
      fail(pointer_append(at, tag),
           fmt::format("\"{}\" is not a language tag (BCP 47)", std::string_view(tag)));
    } else if (!text.is_string()) {
      fail(pointer_append(at, tag), wrong_type("a string", text));
    }
  }
}

void Checker::descriptive_members(const json::object& o, const std::string& pointer) {
  strings_member(o, pointer, "@type", false, false);
  string_member(o, pointer, "title");
  multilanguage_member(o, pointer, "titles");
  string_member(o, pointer, "description");
  multilanguage_member(o, pointer, "descriptions");
}

void Checker::security_names(const json::object& o, const std::string& pointer, std::string_view key,
                             bool required) {
  strings_member(o, pointer, key, required, true, [this](std::string_view name, const std::string& at) {
    if (security_definitions_ != nullptr && !security_definitions_->contains(name)) {
      fail(at, fmt::format("names no entry of securityDefinitions (\"{}\")", name));
    }
  });
}

void Checker::check_context(const std::string& root) {
  const auto* v = member(td_, root, "@context", true);
  if (v == nullptr) return;
  const auto at = pointer_append(root, "@context");
  const auto td_context = [](const json::value& item) {
    return item.is_string() && (item.get_string() == kTdContextV11 || item.get_string() == kTdContextV10);
  };
  const auto expected = fmt::format("must be the TD 1.1 context URI \"{}\" (or the TD 1.0 one, \"{}\")",
                                    kTdContextV11, kTdContextV10);
  if (v->is_string()) {
    if (!td_context(*v)) fail(at, expected);
    return;
  }
  if (!v->is_array()) {
    fail(at, wrong_type("a string or an array", *v));
    return;
  }
  const auto& items = v->get_array();
  if (items.empty()) {
    fail(at, "must not be empty: its first item is the TD context URI");
    return;
  }
  if (!td_context(items[0])) fail(pointer_append(at, "0"), expected);
  bool seen_v11 = items[0].is_string() && items[0].get_string() == kTdContextV11;
  for (std::size_t i = 1; i < items.size(); ++i) {
    const auto& item = items[i];
    if (item.is_string()) {
      if (item.get_string() == kTdContextV10 && seen_v11) {
        fail(pointer_append(at, std::to_string(i)), "the TD 1.0 context URI may not follow the TD 1.1 one");
      }
      seen_v11 = seen_v11 || item.get_string() == kTdContextV11;
    } else if (!item.is_object()) {
      fail(pointer_append(at, std::to_string(i)), wrong_type("a string (a URI) or an object", item));
    }
  }
}

void Checker::check_security_definitions(const std::string& root) {
  security_definitions_ = object_member(td_, root, "securityDefinitions", true);
  if (security_definitions_ == nullptr) return;
  const auto at = pointer_append(root, "securityDefinitions");
  if (security_definitions_->empty()) {
    fail(at, "must define at least one security scheme");
    return;
  }
  for (const auto& [name, scheme] : *security_definitions_) {
    check_security_scheme(name, scheme, pointer_append(at, name));
  }
  check_combo_cycles(at);
}

void Checker::check_security_scheme(std::string_view name, const json::value& v, const std::string& pointer) {
  if (!v.is_object()) {
    fail(pointer, wrong_type("an object (a security scheme)", v));
    return;
  }
  const auto& o = v.get_object();
  strings_member(o, pointer, "@type", false, false);
  string_member(o, pointer, "description");
  multilanguage_member(o, pointer, "descriptions");
  uri_member(o, pointer, "proxy", UriKind::reference);
  const auto* scheme = string_member(o, pointer, "scheme", true);
  if (scheme == nullptr) return;
  const std::string_view s = view(*scheme);
  if (!contains(kSecuritySchemes, s)) {
    // TD 1.1 admits further schemes from context extensions, always as prefixed names
    // ("ace:ACESecurityScheme").
    const auto colon = s.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      fail(pointer_append(pointer, "scheme"),
           fmt::format("must be one of {} or a prefixed extension scheme such as \"ace:ACESecurityScheme\", "
                       "not \"{}\"",
                       join(kSecuritySchemes), s));
    }
    return;
  }
  if (s == "basic" || s == "digest" || s == "apikey" || s == "bearer") {
    enum_member(o, pointer, "in", kSecurityLocations);
    string_member(o, pointer, "name");
  }
  if (s == "digest") enum_member(o, pointer, "qop", kDigestQops);
  if (s == "bearer") {
    uri_member(o, pointer, "authorization", UriKind::reference);
    string_member(o, pointer, "alg");
    string_member(o, pointer, "format");
  }
  if (s == "psk") string_member(o, pointer, "identity");
  if (s == "oauth2") {
    uri_member(o, pointer, "authorization", UriKind::reference);
    uri_member(o, pointer, "token", UriKind::reference);
    uri_member(o, pointer, "refresh", UriKind::reference);
    strings_member(o, pointer, "scopes", false, false);
    string_member(o, pointer, "flow");
  }
  if (s == "combo") {
    const bool one_of = o.contains("oneOf");
    const bool all_of = o.contains("allOf");
    if (one_of == all_of) {
      fail(pointer, one_of ? "a combo scheme has either oneOf or allOf, not both"
                           : "a combo scheme requires oneOf or allOf");
    }
    for (const std::string_view key : {"oneOf", "allOf"}) {
      const auto* names = array_member(o, pointer, key);
      if (names == nullptr) continue;
      const auto at = pointer_append(pointer, key);
      if (names->size() < 2) fail(at, "must name at least two security schemes");
      for (std::size_t i = 0; i < names->size(); ++i) {
        const auto& item = (*names)[i];
        const auto item_at = pointer_append(at, std::to_string(i));
        if (!item.is_string()) {
          fail(item_at, wrong_type("a string", item));
        } else if (view(item.get_string()) == name) {
          fail(item_at, "a combo scheme may not name itself");
        } else if (!security_definitions_->contains(item.get_string())) {
          fail(item_at,
               fmt::format("names no entry of securityDefinitions (\"{}\")", view(item.get_string())));
        }
      }
    }
  }
}

// Combo schemes that name each other in a loop could never be satisfied; reports the scheme that closes each
// loop. Iterative depth-first search with three colours, so that a long chain cannot exhaust the stack.
void Checker::check_combo_cycles(const std::string& pointer) {
  std::unordered_map<std::string_view, std::vector<std::string_view>> edges;
  for (const auto& [name, scheme] : *security_definitions_) {
    const auto* o = scheme.if_object();
    if (o == nullptr) continue;
    const auto* s = o->if_contains("scheme");
    if (s == nullptr || !s->is_string() || s->get_string() != "combo") continue;
    auto& out = edges[name];
    for (const std::string_view key : {"oneOf", "allOf"}) {
      const auto* names = o->if_contains(key);
      if (names == nullptr || !names->is_array()) continue;
      for (const auto& item : names->get_array()) {
        if (item.is_string() && view(item.get_string()) != name) out.push_back(view(item.get_string()));
      }
    }
  }
  enum class Colour { white, grey, black };
  std::unordered_map<std::string_view, Colour> colour;
  for (const auto& [start, unused] : edges) {
    if (colour[start] != Colour::white) continue;
    std::vector<std::pair<std::string_view, std::size_t>> stack{{start, 0}};
    colour[start] = Colour::grey;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      const auto it = edges.find(node);
      if (it == edges.end() || next == it->second.size()) {
        colour[node] = Colour::black;
        stack.pop_back();
        continue;
      }
      const auto target = it->second[next++];
      auto& c = colour[target];
      if (c == Colour::grey) {
        fail(pointer_append(pointer, node),
             fmt::format("combo schemes name each other in a loop (\"{}\" names \"{}\")", node, target));
      } else if (c == Colour::white) {
        c = Colour::grey;
        stack.emplace_back(target, 0);
      }
    }
  }
}

void Checker::check_affordance(Kind kind, const json::value& v, const std::string& pointer) {
  if (!v.is_object()) {
    fail(pointer, wrong_type(fmt::format("an object ({} affordance)", kind_name(kind)), v));
    return;
  }
  const auto& o = v.get_object();
  check_forms(kind, o, pointer, true);
  check_schema_map(o, pointer, "uriVariables", 1);
  switch (kind) {
    case Kind::property:
      check_schema_terms(o, pointer, 1);  // a property affordance is also a data schema
      boolean_member(o, pointer, "observable");
      break;
    case Kind::action:
      descriptive_members(o, pointer);
      for (const std::string_view key : {"input", "output"}) {
        if (const auto* schema = o.if_contains(key)) check_schema(*schema, pointer_append(pointer, key), 1);
      }
      for (const std::string_view key : {"safe", "idempotent", "synchronous"})
        boolean_member(o, pointer, key);
      break;
    case Kind::event:
      descriptive_members(o, pointer);
      for (const std::string_view key : {"subscription", "data", "dataResponse", "cancellation"}) {
        if (const auto* schema = o.if_contains(key)) check_schema(*schema, pointer_append(pointer, key), 1);
      }
      break;
    case Kind::thing:
      break;
  }
}

void Checker::check_forms(Kind kind, const json::object& o, const std::string& pointer, bool required) {
  const auto* forms = array_member(o, pointer, "forms", required, true);
  if (forms == nullptr) return;
  const auto at = pointer_append(pointer, "forms");
  for (std::size_t i = 0; i < forms->size(); ++i)
    check_form(kind, (*forms)[i], pointer_append(at, std::to_string(i)));
}

void Checker::check_form(Kind kind, const json::value& v, const std::string& pointer) {
  if (!v.is_object()) {
    fail(pointer, wrong_type("an object (a form)", v));
    return;
  }
  const auto& o = v.get_object();
  uri_member(o, pointer, "href", UriKind::href, true);
  media_type_member(o, pointer, "contentType");
  string_member(o, pointer, "contentCoding");
  string_member(o, pointer, "subprotocol");
  // Affordance forms default their operation types from the affordance; a Thing-level form has no default.
  strings_member(o, pointer, "op", kind == Kind::thing, true,
                 [this, kind](std::string_view op, const std::string& at) {
                   if (!contains(ops_for(kind), op)) {
                     fail(at, fmt::format("\"{}\" is not an operation type on {}; expected one of {}", op,
                                          kind_name(kind), join(ops_for(kind))));
                   }
                 });
  security_names(o, pointer, "security", false);
  strings_member(o, pointer, "scopes", false, false);
  if (const auto* response = object_member(o, pointer, "response")) {
    media_type_member(*response, pointer_append(pointer, "response"), "contentType", true);
  }
  if (const auto* responses = array_member(o, pointer, "additionalResponses")) {
    const auto at = pointer_append(pointer, "additionalResponses");
    for (std::size_t i = 0; i < responses->size(); ++i) {
      const auto item_at = pointer_append(at, std::to_string(i));
      const auto* response = (*responses)[i].if_object();
      if (response == nullptr) {
        fail(item_at, wrong_type("an object", (*responses)[i]));
        continue;
      }
      boolean_member(*response, item_at, "success");
      media_type_member(*response, item_at, "contentType");
      const auto* schema = string_member(*response, item_at, "schema");
      if (schema != nullptr && (schema_definitions_ == nullptr || !schema_definitions_->contains(*schema))) {
        fail(pointer_append(item_at, "schema"),
             fmt::format("names no entry of schemaDefinitions (\"{}\")", view(*schema)));
      }
    }
  }
}

void Checker::check_link(const json::value& v, const std::string& pointer) {
  if (!v.is_object()) {
    fail(pointer, wrong_type("an object (a link)", v));
    return;
  }
  const auto& o = v.get_object();
  uri_member(o, pointer, "href", UriKind::reference, true);
  string_member(o, pointer, "type");
  string_member(o, pointer, "rel");
  uri_member(o, pointer, "anchor", UriKind::reference);
  string_member(o, pointer, "sizes");
  strings_member(o, pointer, "hreflang", false, false, [this](std::string_view tag, const std::string& at) {
    if (!is_language_tag(tag)) fail(at, fmt::format("\"{}\" is not a language tag (BCP 47)", tag));
  });
}

void Checker::check_schema(const json::value& v, const std::string& pointer, int depth) {
  if (depth > kMaxSchemaDepth) {
    fail(pointer, fmt::format("data schemas may nest at most {} deep", kMaxSchemaDepth));
    return;
  }
  if (!v.is_object()) {
    fail(pointer, wrong_type("an object (a data schema)", v));
    return;
  }
  check_schema_terms(v.get_object(), pointer, depth);
}

void Checker::check_schema_map(const json::object& o, const std::string& pointer, std::string_view key,
                               int depth, bool non_empty) {
  const auto* map = object_member(o, pointer, key);
  if (map == nullptr) return;
  const auto at = pointer_append(pointer, key);
  if (non_empty && map->empty()) fail(at, "must define at least one data schema");
  for (const auto& [name, schema] : *map) check_schema(schema, pointer_append(at, name), depth);
}

void Checker::check_schema_terms(const json::object& o, const std::string& pointer, int depth) {
  descriptive_members(o, pointer);
  enum_member(o, pointer, "type", kSchemaTypes);
  const auto* type = o.if_contains("type");
  const bool integer = type != nullptr && type->is_string() && type->get_string() == "integer";
  for (const std::string_view key : {"unit", "format", "pattern", "contentEncoding", "contentMediaType"}) {
    string_member(o, pointer, key);
  }
  boolean_member(o, pointer, "readOnly");
  boolean_member(o, pointer, "writeOnly");

  if (const auto* items = array_member(o, pointer, "enum", false, true)) {
    std::unordered_set<std::string> seen;
    for (std::size_t i = 0; i < items->size(); ++i) {
      if (!seen.insert(json::serialize((*items)[i])).second) {
        fail(pointer_append(pointer_append(pointer, "enum"), std::to_string(i)), "repeats an earlier item");
      }
    }
  }
  if (const auto* schemas = array_member(o, pointer, "oneOf", false, true)) {
    const auto at = pointer_append(pointer, "oneOf");
    for (std::size_t i = 0; i < schemas->size(); ++i) {
      check_schema((*schemas)[i], pointer_append(at, std::to_string(i)), depth + 1);
    }
  }
  if (const auto* items = o.if_contains("items")) {
    const auto at = pointer_append(pointer, "items");
    if (items->is_object()) {
      check_schema(*items, at, depth + 1);
    } else if (items->is_array()) {
      for (std::size_t i = 0; i < items->get_array().size(); ++i) {
        check_schema(items->get_array()[i], pointer_append(at, std::to_string(i)), depth + 1);
      }
    } else {
      fail(at, wrong_type("an object (a data schema) or an array of data schemas", *items));
    }
  }

  // A lower bound must not exceed its upper bound; both are read first, in this order, so that the
  // violations are listed in a stable order.
  const auto ordered = [&](std::string_view low_key, std::string_view high_key, auto read, bool strict) {
    const auto low = read(low_key);
    const auto high = read(high_key);
    if (low && high && (strict ? *low >= *high : *low > *high)) {
      fail(pointer_append(pointer, low_key),
           fmt::format("must be {} {} ({})", strict ? "less than" : "at most", high_key, *high));
    }
  };
  const auto count = [&](std::string_view key) { return count_member(o, pointer, key); };
  const auto number = [&](std::string_view key) { return number_member(o, pointer, key, integer); };
  ordered("minItems", "maxItems", count, false);
  ordered("minLength", "maxLength", count, false);
  ordered("minimum", "maximum", number, false);
  ordered("exclusiveMinimum", "exclusiveMaximum", number, true);
  if (const auto step = number_member(o, pointer, "multipleOf", integer); step && !(*step > 0)) {
    fail(pointer_append(pointer, "multipleOf"), "must be greater than 0");
  }

  const auto* properties = object_member(o, pointer, "properties");
  if (properties != nullptr) {
    const auto at = pointer_append(pointer, "properties");
    for (const auto& [name, schema] : *properties) check_schema(schema, pointer_append(at, name), depth + 1);
  }
  if (const auto* required = array_member(o, pointer, "required")) {
    const auto at = pointer_append(pointer, "required");
    for (std::size_t i = 0; i < required->size(); ++i) {
      const auto& item = (*required)[i];
      const auto item_at = pointer_append(at, std::to_string(i));
      if (!item.is_string()) {
        fail(item_at, wrong_type("a string", item));
      } else if (properties == nullptr || !properties->contains(item.get_string())) {
        fail(item_at, fmt::format("names no member of properties (\"{}\")", view(item.get_string())));
      }
    }
  }
}

std::optional<Pose> Checker::check_pose(const json::value& v, const std::string& pointer) {
  if (!v.is_object()) {
    fail(pointer, wrong_type("an object", v));
    return std::nullopt;
  }
  Pose pose;
  bool ok = true;
  const auto numbers = [&](const json::value& value, const std::string& at, std::span<double> out,
                           std::string_view what) {
    if (!value.is_array()) {
      fail(at, wrong_type(fmt::format("an array of {} numbers ({})", out.size(), what), value));
      return false;
    }
    const auto& items = value.get_array();
    if (items.size() != out.size()) {
      fail(at, fmt::format("must have {} items ({}), not {}", out.size(), what, items.size()));
      return false;
    }
    bool good = true;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_number() || !std::isfinite(items[i].to_number<double>())) {
        fail(pointer_append(at, std::to_string(i)), wrong_type("a finite number", items[i]));
        good = false;
      } else {
        out[i] = items[i].to_number<double>();
      }
    }
    return good;
  };
  for (const auto& [key, value] : v.get_object()) {
    const auto at = pointer_append(pointer, key);
    if (key == "frame") {
      if (!value.is_string()) {
        fail(at, wrong_type("a string", value));
        ok = false;
      } else if (value.get_string().empty() || value.get_string().size() > kMaxFrameBytes) {
        fail(at, fmt::format("must be 1 to {} bytes long", kMaxFrameBytes));
        ok = false;
      } else {
        pose.frame = view(value.get_string());
      }
    } else if (key == "position") {
      ok = numbers(value, at, pose.position, "x, y, z in metres") && ok;
    } else if (key == "orientation") {
      if (!numbers(value, at, pose.orientation, "a quaternion x, y, z, w")) {
        ok = false;
        continue;
      }
      const auto& q = pose.orientation;
      const double norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
      if (!(std::abs(norm - 1.0) <= kUnitTolerance)) {
        fail(at, fmt::format("must be a unit quaternion (norm 1 within {}); its norm is {}", kUnitTolerance,
                             norm));
        ok = false;
        continue;
      }
      // Already unit to rounding: kept as given, so that normalising a normalised pose changes nothing.
      if (std::abs(norm - 1.0) > 4 * std::numeric_limits<double>::epsilon()) {
        for (double& c : pose.orientation) c /= norm;
      }
    } else {
      fail(at, "is not a member of the twinbridge pose (frame, position, orientation)");
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return pose;
}

void Checker::check_thing(const std::string& root, ThingDescription& out) {
  check_context(root);
  strings_member(td_, root, "@type", false, false);
  if (const auto* id = string_member(td_, root, "id")) {
    if (auto problem = uri_problem(view(*id), UriKind::absolute))
      fail(pointer_append(root, "id"), std::move(*problem));
    out.id = view(*id);
  }
  if (const auto* title = string_member(td_, root, "title", true)) out.title = view(*title);
  multilanguage_member(td_, root, "titles");
  string_member(td_, root, "description");
  multilanguage_member(td_, root, "descriptions");
  if (const auto* version = object_member(td_, root, "version")) {
    const auto at = pointer_append(root, "version");
    string_member(*version, at, "instance", true);
    string_member(*version, at, "model");
  }
  date_time_member(td_, root, "created");
  date_time_member(td_, root, "modified");
  uri_member(td_, root, "support", UriKind::reference);
  uri_member(td_, root, "base", UriKind::absolute);
  strings_member(td_, root, "profile", false, true, [this](std::string_view uri, const std::string& at) {
    if (auto problem = uri_problem(uri, UriKind::absolute)) fail(at, std::move(*problem));
  });

  // Definitions first: security names and additional responses refer to them.
  check_security_definitions(root);
  security_names(td_, root, "security", true);
  if (const auto* definitions = td_.if_contains("schemaDefinitions"))
    schema_definitions_ = definitions->if_object();
  check_schema_map(td_, root, "schemaDefinitions", 1, true);
  check_schema_map(td_, root, "uriVariables", 1);

  const std::array<std::tuple<std::string_view, Kind, std::vector<std::string>*>, 3> affordances{{
      {"properties", Kind::property, &out.property_names},
      {"actions", Kind::action, &out.action_names},
      {"events", Kind::event, &out.event_names},
  }};
  for (const auto& [key, kind, names] : affordances) {
    const auto* map = object_member(td_, root, key);
    if (map == nullptr) continue;
    const auto at = pointer_append(root, key);
    for (const auto& [name, affordance] : *map) {
      names->emplace_back(name);
      check_affordance(kind, affordance, pointer_append(at, name));
    }
  }
  check_forms(Kind::thing, td_, root, false);
  if (const auto* links = array_member(td_, root, "links")) {
    const auto at = pointer_append(root, "links");
    for (std::size_t i = 0; i < links->size(); ++i)
      check_link((*links)[i], pointer_append(at, std::to_string(i)));
  }
  if (const auto* pose = td_.if_contains(kPoseMember))
    out.pose = check_pose(*pose, pointer_append(root, kPoseMember));
}

}  // namespace

Result<ThingDescription> parse_thing_description(const json::value& doc, std::string_view pointer_base) {
  const std::string root(pointer_base);
  const auto* td = doc.if_object();
  if (td == nullptr) {
    Error e(Errc::validation_failed,
            fmt::format("a Thing Description must be a JSON object, not {}", json_type_name(doc)));
    e.fields.push_back({root, wrong_type("an object (a Thing Description)", doc)});
    return std::unexpected(std::move(e));
  }
  Checker checker(*td);
  ThingDescription out;
  checker.check_thing(root, out);
  const auto violations = checker.violations();
  if (violations > 0) {
    auto errors = checker.take_errors();
    std::string detail;
    if (violations == 1) {
      detail = fmt::format("{}: {}",
                           errors.front().pointer.empty() ? "the Thing Description" : errors.front().pointer,
                           errors.front().detail);
    } else if (violations > errors.size()) {
      detail = fmt::format("the Thing Description has {} violations; the first {} are listed", violations,
                           errors.size());
    } else {
      detail = fmt::format("the Thing Description has {} violations", violations);
    }
    Error e(Errc::validation_failed, std::move(detail));
    e.fields = std::move(errors);
    return std::unexpected(std::move(e));
  }
  out.document = *td;
  out.document.erase(kPoseMember);
  return out;
}

json::object to_json(const ThingDescription& td) {
  json::object out = td.document;
  if (td.pose) {
    const auto& p = *td.pose;
    out[kPoseMember] = json::object{
        {"frame", p.frame},
        {"position", json::array{p.position[0], p.position[1], p.position[2]}},
        {"orientation", json::array{p.orientation[0], p.orientation[1], p.orientation[2], p.orientation[3]}},
    };
  }
  return out;
}

}  // namespace twinbridge::core
