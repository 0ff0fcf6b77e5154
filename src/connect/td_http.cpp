#include "connect/td_http.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/json_reader.hpp"
#include "core/text.hpp"

namespace twinbridge::connect {

namespace json = boost::json;
using core::Errc;

namespace {

constexpr std::size_t kExcerptBytes = 200;
constexpr int kMaxComboDepth = 8;
constexpr std::string_view kJson = "application/json";

std::string_view view(const json::string& s) {
  return {s.data(), s.size()};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
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
bool is_unreserved(unsigned char c) {
  return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}
bool is_reserved(unsigned char c) {
  return std::string_view(":/?#[]@!$&'()*+,;=").find(static_cast<char>(c)) != std::string_view::npos;
}
// RFC 9110 token characters (header names).
bool is_tchar(unsigned char c) {
  return is_alpha(c) || is_digit(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

// Appends `s` percent-encoded: every byte outside the unreserved set (and, with `allow_reserved`, outside the
// reserved set and not the start of a percent-encoded triplet) becomes %XX.
void append_encoded(std::string& out, std::string_view s, bool allow_reserved) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (is_unreserved(c) || (allow_reserved && is_reserved(c))) {
      out += static_cast<char>(c);
    } else if (allow_reserved && c == '%' && i + 2 < s.size() &&
               is_hex(static_cast<unsigned char>(s[i + 1])) && is_hex(static_cast<unsigned char>(s[i + 2]))) {
      out.append(s.substr(i, 3));
      i += 2;
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
}

// RFC 6570 §2.3: varchar = ALPHA / DIGIT / "_" / pct-encoded; varname = varchar *( ["."] varchar ).
bool is_varname(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '%') {
      if (i + 2 >= s.size() || !is_hex(static_cast<unsigned char>(s[i + 1])) ||
          !is_hex(static_cast<unsigned char>(s[i + 2])))
        return false;
      i += 2;
    } else if (c == '.') {
      if (s[i + 1] == '.') return false;
    } else if (!is_alpha(c) && !is_digit(c) && c != '_') {
      return false;
    }
  }
  return true;
}

// RFC 6570 Appendix A: how each operator expands.
struct OperatorRule {
  std::string_view first;
  char separator;
  bool named;
  std::string_view if_empty;
  bool allow_reserved;
};

OperatorRule rule_for(char op) {
  switch (op) {
    case '+':
      return {"", ',', false, "", true};
    case '#':
      return {"#", ',', false, "", true};
    case '.':
      return {".", '.', false, "", false};
    case '/':
      return {"/", '/', false, "", false};
    case ';':
      return {";", ';', true, "", false};
    case '?':
      return {"?", '&', true, "=", false};
    case '&':
      return {"&", '&', true, "=", false};
    default:
      return {"", ',', false, "", false};
  }
}

// The text of a scalar value; nullopt for an object or an array.
std::optional<std::string> scalar_text(const json::value& v) {
  if (v.is_string()) return std::string(view(v.get_string()));
  if (v.is_bool()) return v.get_bool() ? "true" : "false";
  if (v.is_int64()) return std::to_string(v.get_int64());
  if (v.is_uint64()) return std::to_string(v.get_uint64());
  if (v.is_double()) return fmt::format("{}", v.get_double());
  return std::nullopt;
}

// "the property 'temp'", "the action 'start'", "the Thing".
struct Target {
  const json::object* affordance = nullptr;  // the TD itself for Thing-level operations
  std::string pointer;                       // of the affordance ("" for the Thing)
  std::string what;
  bool is_property = false;
  bool is_action = false;
};

bool is_thing_operation(TdOperation op) {
  return op == TdOperation::readallproperties || op == TdOperation::readmultipleproperties;
}

core::Result<Target> find_target(const json::object& td, TdOperation op, std::string_view name) {
  Target t;
  if (is_thing_operation(op)) {
    if (!name.empty()) {
      return core::fail(Errc::bad_request,
                        fmt::format("{} is an operation on the whole Thing: give no property name ('{}')",
                                    to_string(op), name));
    }
    t.affordance = &td;
    t.what = "the Thing";
    return t;
  }
  const bool property = op != TdOperation::invokeaction;
  const std::string_view kind = property ? "property" : "action";
  const std::string_view member = property ? "properties" : "actions";
  if (name.empty()) {
    return core::fail(Errc::bad_request,
                      fmt::format("{} needs the name of {} {}", to_string(op), property ? "a" : "an", kind));
  }
  const auto* map = td.if_contains(member);
  const auto* affordance = map != nullptr && map->is_object() ? map->get_object().if_contains(name) : nullptr;
  if (affordance == nullptr || !affordance->is_object()) {
    return core::fail(Errc::not_found, fmt::format("the Thing Description has no {} '{}'", kind, name));
  }
  t.affordance = &affordance->get_object();
  t.pointer = core::pointer_append(core::pointer_append("", member), name);
  t.what = fmt::format("the {} '{}'", kind, name);
  t.is_property = property;
  t.is_action = !property;
  return t;
}

bool flag(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

// The operation types of a form: its op (a string or an array of strings), else the TD 1.1 defaults.
std::vector<std::string_view> form_ops(const json::object& form, const Target& target) {
  std::vector<std::string_view> ops;
  if (const auto* op = form.if_contains("op")) {
    if (op->is_string()) {
      ops.push_back(view(op->get_string()));
    } else if (op->is_array()) {
      for (const auto& item : op->get_array()) {
        if (item.is_string()) ops.push_back(view(item.get_string()));
      }
    }
    return ops;
  }
  if (target.is_property) {
    if (!flag(*target.affordance, "writeOnly")) ops.emplace_back("readproperty");
    if (!flag(*target.affordance, "readOnly")) ops.emplace_back("writeproperty");
  } else if (target.is_action) {
    ops.emplace_back("invokeaction");
  }
  return ops;
}

std::optional<std::string_view> string_member(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return view(v->get_string());
}

// The scheme of a URI reference in lower case, or "" when it is relative (RFC 3986 §3.1; a template
// expression before the first ':' makes it relative too).
std::string scheme_of(std::string_view href) {
  const auto end = href.find_first_of(":/?#{");
  if (end == std::string_view::npos || end == 0 || href[end] != ':') return "";
  const auto scheme = href.substr(0, end);
  if (!is_alpha(static_cast<unsigned char>(scheme[0]))) return "";
  for (const char ch : scheme) {
    const auto c = static_cast<unsigned char>(ch);
    if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') return "";
  }
  return lower(scheme);
}

bool is_json_media_type(std::string_view type) {
  const auto essence = lower(core::trim(type.substr(0, type.find(';'))));
  return essence == kJson || (essence.starts_with("application/") && essence.ends_with("+json"));
}

std::vector<std::string> names_of(const json::value* v) {
  std::vector<std::string> names;
  if (v == nullptr) return names;
  if (v->is_string()) {
    names.emplace_back(view(v->get_string()));
  } else if (v->is_array()) {
    for (const auto& item : v->get_array()) {
      if (item.is_string()) names.emplace_back(view(item.get_string()));
    }
  }
  return names;
}

std::string default_method(TdOperation op) {
  switch (op) {
    case TdOperation::writeproperty:
      return "PUT";
    case TdOperation::invokeaction:
      return "POST";
    default:
      return "GET";
  }
}

std::string join(const std::vector<std::string>& items, std::string_view last) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? fmt::format(" {} ", last) : ", ";
    out += items[i];
  }
  return out;
}

// Security: what a call adds to the request, and the secrets it carries (to keep them out of errors).
struct Applied {
  Headers headers;
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::string> secrets;
};

// A credential may go into a header or a query: no control characters (no header injection).
bool is_printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c < 0x20 || c == 0x7f;
  });
}

class SecurityApplier {
 public:
  SecurityApplier(const json::object& td, const TdCredentials& credentials) : credentials_(credentials) {
    if (const auto* defs = td.if_contains("securityDefinitions")) definitions_ = defs->if_object();
  }

  core::Result<void> apply(std::string_view name, Applied& out, int depth) const;

 private:
  template <class T>
  core::Result<const T*> secret(std::string_view name, std::string_view scheme,
                                std::string_view needs) const {
    const auto it = credentials_.by_scheme_name.find(name);
    if (it == credentials_.by_scheme_name.end()) {
      return core::fail(
          Errc::forbidden,
          fmt::format("the Thing requires the security scheme '{}' ({}), and twinbridge holds no "
                      "credentials for it",
                      name, scheme));
    }
    const auto* value = std::get_if<T>(&it->second);
    if (value == nullptr) {
      return core::fail(Errc::forbidden,
                        fmt::format("the credentials twinbridge holds for the security scheme "
                                    "'{}' ({}) are not {}",
                                    name, scheme, needs));
    }
    return value;
  }

  // Where a basic, bearer or apikey credential goes: {in, header or parameter name}.
  static core::Result<std::pair<std::string, std::string>> location(const json::object& def,
                                                                    std::string_view name,
                                                                    std::string_view scheme,
                                                                    std::string_view default_in,
                                                                    std::string_view default_name);

  const TdCredentials& credentials_;
  const json::object* definitions_ = nullptr;
};

core::Result<std::pair<std::string, std::string>> SecurityApplier::location(const json::object& def,
                                                                            std::string_view name,
                                                                            std::string_view scheme,
                                                                            std::string_view default_in,
                                                                            std::string_view default_name) {
  const std::string in(string_member(def, "in").value_or(default_in));
  const bool query_allowed = scheme == "apikey";
  if (in != "header" && !(in == "query" && query_allowed)) {
    return core::fail(
        Errc::validation_failed,
        fmt::format("the security scheme '{}' ({}) puts its credentials in '{}'; twinbridge puts {} "
                    "credentials only in {}",
                    name, scheme, in, scheme, query_allowed ? "a header or the query" : "a header"));
  }
  const std::string field(string_member(def, "name").value_or(default_name));
  if (field.empty()) {
    return core::fail(Errc::validation_failed,
                      fmt::format("the security scheme '{}' ({}) does not say the name of its {}", name,
                                  scheme, in == "header" ? "header" : "query parameter"));
  }
  if (in == "header" && !std::all_of(field.begin(), field.end(),
                                     [](char c) { return is_tchar(static_cast<unsigned char>(c)); })) {
    return core::fail(
        Errc::validation_failed,
        fmt::format("the security scheme '{}' ({}) names a header that is not a header name", name, scheme));
  }
  return std::pair{in, field};
}

core::Result<void> SecurityApplier::apply(std::string_view name, Applied& out, int depth) const {
  const json::value* found = definitions_ != nullptr ? definitions_->if_contains(name) : nullptr;
  const json::object* def = found != nullptr ? found->if_object() : nullptr;
  if (def == nullptr) {
    return core::fail(Errc::validation_failed,
                      fmt::format("the Thing Description names the security scheme '{}', which its "
                                  "securityDefinitions does not define",
                                  name));
  }
  const std::string scheme(string_member(*def, "scheme").value_or(""));
  if (def->contains("proxy") && scheme != "nosec") {
    return core::fail(
        Errc::validation_failed,
        fmt::format("the security scheme '{}' ({}) is for a proxy, which twinbridge does not use", name,
                    scheme));
  }
  if (scheme == "nosec") return {};
  if (scheme == "basic") {
    auto where = location(*def, name, scheme, "header", "Authorization");
    if (!where) return std::unexpected(where.error());
    auto user = secret<UserPassword>(name, scheme, "a user name and password");
    if (!user) return std::unexpected(user.error());
    const auto& [username, password] = **user;
    if (username.find(':') != std::string::npos || !is_printable(username) || !is_printable(password)) {
      return core::fail(
          Errc::forbidden,
          fmt::format("the credentials twinbridge holds for the security scheme '{}' (basic) cannot "
                      "be sent: the user name has a ':' or a control character, or the password "
                      "has a control character",
                      name));
    }
    const auto encoded_pair = basic_credentials(username, password);
    out.headers.emplace_back(where->second, "Basic " + encoded_pair);
    out.secrets.push_back(password);
    out.secrets.push_back(encoded_pair);
    return {};
  }
  if (scheme == "bearer" || scheme == "apikey") {
    const bool bearer = scheme == "bearer";
    auto where = location(*def, name, scheme, bearer ? "header" : "query", bearer ? "Authorization" : "");
    if (!where) return std::unexpected(where.error());
    auto token = secret<Token>(name, scheme, "a token");
    if (!token) return std::unexpected(token.error());
    const auto& value = (*token)->token;
    if (value.empty() || !is_printable(value)) {
      return core::fail(Errc::forbidden,
                        fmt::format("the token twinbridge holds for the security scheme '{}' "
                                    "({}) is empty or has a control character",
                                    name, scheme));
    }
    if (where->first == "query") {
      out.query.emplace_back(where->second, value);
      out.secrets.push_back(percent_encoded(value));
    } else {
      out.headers.emplace_back(where->second, bearer ? "Bearer " + value : value);
    }
    out.secrets.push_back(value);
    return {};
  }
  if (scheme == "combo") {
    if (depth >= kMaxComboDepth) {
      return core::fail(Errc::validation_failed,
                        fmt::format("the combo security scheme '{}' nests combo schemes more than {} deep",
                                    name, kMaxComboDepth));
    }
    if (const auto all = names_of(def->if_contains("allOf")); !all.empty()) {
      for (const auto& each : all) {
        if (auto r = apply(each, out, depth + 1); !r) return r;
      }
      return {};
    }
    const auto any = names_of(def->if_contains("oneOf"));
    if (any.empty()) {
      return core::fail(
          Errc::validation_failed,
          fmt::format("the combo security scheme '{}' names no schemes (allOf or oneOf)", name));
    }
    // The first alternative that can be applied with the credentials twinbridge holds.
    std::string why;
    std::optional<Errc> code;
    for (const auto& each : any) {
      Applied attempt = out;
      auto r = apply(each, attempt, depth + 1);
      if (r) {
        out = std::move(attempt);
        return {};
      }
      if (!code) code = r.error().code;
      why += (why.empty() ? "" : "; ") + r.error().detail;
    }
    return core::fail(*code,
                      fmt::format("none of the schemes of the combo security scheme '{}' (oneOf) can be "
                                  "used: {}",
                                  name, why));
  }
  return core::fail(
      Errc::validation_failed,
      fmt::format("the security scheme '{}' is {}, which twinbridge does not support for HTTP forms "
                  "(it supports nosec, basic, bearer, apikey and combo)",
                  name, scheme.empty() ? "without a scheme" : "'" + scheme + "'"));
}

// Replaces every occurrence of a secret with "***".
std::string redact(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& secret : secrets) {
    if (secret.empty()) continue;
    for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at + 3)) {
      text.replace(at, secret.size(), "***");
    }
  }
  return text;
}

// The start of a response body for an error: at most kExcerptBytes, cut before an incomplete UTF-8 sequence,
// control characters as spaces.
std::string excerpt(std::string_view body) {
  if (body.size() <= kExcerptBytes) {
    std::string out(body);
    for (auto& c : out) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    return out;
  }
  auto cut = kExcerptBytes;
  while (cut > 0 && (static_cast<unsigned char>(body[cut]) & 0xC0) == 0x80) --cut;
  return excerpt(body.substr(0, cut)) + "...";
}

// A request ready to send, with what reading its response needs.
struct Prepared {
  HttpRequest request;
  TdOperation op = TdOperation::readproperty;
  std::string what;  // "readproperty of the property 'temp'"
  std::vector<std::string> properties;
  std::vector<std::string> secrets;
  std::size_t max_json_depth = 64;
  std::string url;  // TdResponse::url
};

core::Result<void> check_variables(const TdForm& form, const UriTemplate& href, const UriVariables& values,
                                   std::string_view what) {
  const auto used = href.variables();
  for (const auto& [name, value] : values) {
    if (value.is_null()) continue;
    const auto* schema_value = form.uri_variables.if_contains(name);
    if (schema_value == nullptr && std::find(used.begin(), used.end(), name) == used.end()) {
      std::vector<std::string> known;
      for (const auto& [key, unused] : form.uri_variables) known.emplace_back(key);
      for (const auto& each : used) {
        if (std::find(known.begin(), known.end(), each) == known.end()) known.push_back(each);
      }
      return core::fail(Errc::bad_request,
                        fmt::format("{} has no URI variable '{}' ({})", what, name,
                                    known.empty() ? "it has none" : "it has " + join(known, "and")));
    }
    if (value.is_object() || value.is_array()) {
      return core::fail(Errc::bad_request,
                        fmt::format("the URI variable '{}' must be a string, a number or a "
                                    "boolean, not {}",
                                    name, core::json_type_name(value)));
    }
    const auto* schema = schema_value != nullptr ? schema_value->if_object() : nullptr;
    const auto type = schema != nullptr ? string_member(*schema, "type") : std::nullopt;
    if (!type) continue;
    bool ok = true;
    if (*type == "string") {
      ok = value.is_string();
    } else if (*type == "number") {
      ok = value.is_number();
    } else if (*type == "integer") {
      ok = value.is_int64() || value.is_uint64() ||
           (value.is_double() && std::isfinite(value.get_double()) &&
            std::trunc(value.get_double()) == value.get_double());
    } else if (*type == "boolean") {
      ok = value.is_bool();
    }
    if (!ok) {
      return core::fail(Errc::bad_request,
                        fmt::format("the URI variable '{}' must be {} {}, not {}", name,
                                    *type == "integer" ? "an" : "a", *type, core::json_type_name(value)));
    }
  }
  return {};
}

core::Result<Prepared> prepare(const json::object& td, const TdCall& call, const TdCredentials& credentials,
                               const TdHttpSettings& settings) {
  auto form = select_form(td, call.op, call.affordance);
  if (!form) return std::unexpected(form.error());
  auto target = find_target(td, call.op, call.affordance);
  if (!target) return std::unexpected(target.error());
  Prepared p;
  p.op = call.op;
  p.what = fmt::format("{} of {}", to_string(call.op), target->what);
  p.max_json_depth = settings.max_json_depth;

  if (call.op == TdOperation::readmultipleproperties) {
    if (call.properties.empty()) {
      return core::fail(Errc::bad_request,
                        "readmultipleproperties needs the names of the properties to read");
    }
    const auto* properties = td.if_contains("properties");
    for (const auto& name : call.properties) {
      if (properties == nullptr || !properties->is_object() || !properties->get_object().contains(name)) {
        return core::fail(Errc::not_found, fmt::format("the Thing Description has no property '{}'", name));
      }
    }
    p.properties = call.properties;
  }
  const bool sends_body = call.op == TdOperation::writeproperty || call.op == TdOperation::invokeaction;
  if (call.op == TdOperation::writeproperty && !call.input) {
    return core::fail(Errc::bad_request, "writeproperty needs the value to write");
  }
  if (!sends_body && call.input) {
    return core::fail(Errc::bad_request, fmt::format("{} sends no value; give no input", to_string(call.op)));
  }

  auto href = UriTemplate::parse(form->href);
  if (!href) {
    return core::fail(Errc::validation_failed, fmt::format("the href of {} is not a URI template: {}",
                                                           form->pointer, href.error().detail));
  }
  if (auto checked = check_variables(*form, *href, call.uri_variables, target->what); !checked) {
    return std::unexpected(checked.error());
  }
  auto expanded = href->expand(call.uri_variables);
  if (!expanded) return std::unexpected(expanded.error());

  auto reference = boost::urls::parse_uri_reference(*expanded);
  if (!reference) {
    return core::fail(Errc::validation_failed,
                      fmt::format("the href of {} does not make a URI ('{}')", form->pointer, *expanded));
  }
  boost::urls::url url;
  if (reference->has_scheme()) {
    url = *reference;
  } else {
    const auto base_text = string_member(td, "base").value_or("");
    auto base = boost::urls::parse_uri(base_text);
    if (!base) {
      return core::fail(
          Errc::validation_failed,
          fmt::format("the href of {} is relative, and the Thing Description has no base URI to "
                      "resolve it against",
                      form->pointer));
    }
    if (auto resolved = boost::urls::resolve(*base, *reference, url); !resolved) {
      return core::fail(
          Errc::validation_failed,
          fmt::format("the href of {} cannot be resolved against the base '{}'", form->pointer, base_text));
    }
  }
  if (url.scheme_id() != boost::urls::scheme::http && url.scheme_id() != boost::urls::scheme::https) {
    return core::fail(
        Errc::validation_failed,
        fmt::format("the href of {} expands to a '{}' URI; twinbridge needs an HTTP form (http or "
                    "https) for {}",
                    form->pointer, url.scheme(), to_string(call.op)));
  }
  url.remove_fragment();

  p.url = std::string(url.buffer());
  Applied applied;
  const SecurityApplier security(td, credentials);
  for (const auto& name : form->security) {
    if (auto r = security.apply(name, applied, 0); !r) return std::unexpected(r.error());
  }
  if (!applied.query.empty()) {
    std::string query(url.encoded_query());
    for (const auto& [name, value] : applied.query) {
      if (!query.empty()) query += '&';
      query += percent_encoded(name) + "=" + percent_encoded(value);
    }
    url.set_encoded_query(query);
  }

  auto& req = p.request;
  req.method = form->method;
  req.url = std::string(url.buffer());
  req.timeout = settings.timeout;
  req.max_response_body = settings.max_response_body;
  req.headers.emplace_back("Accept", kJson);
  if (sends_body && call.input) {
    req.headers.emplace_back("Content-Type", form->content_type);
    req.body = json::serialize(*call.input);
  }
  for (auto& header : applied.headers) req.headers.push_back(std::move(header));
  p.secrets = std::move(applied.secrets);
  return p;
}

core::Result<TdResponse> finish(const Prepared& p, core::Result<HttpResponse> result) {
  const auto fail = [&p](Errc code, std::string detail) {
    return core::fail(code, redact(std::move(detail), p.secrets));
  };
  if (!result) {
    auto e = std::move(result.error());
    e.detail = redact(std::move(e.detail), p.secrets);
    for (auto& field : e.fields) field.detail = redact(std::move(field.detail), p.secrets);
    e.log_detail = redact(std::move(e.log_detail), p.secrets);
    return std::unexpected(std::move(e));
  }
  auto& response = *result;
  if (response.status < 200 || response.status > 299) {
    return fail(Errc::unavailable,
                fmt::format("the Thing answered HTTP {} to {}: {}", response.status, p.what,
                            response.body.empty() ? "(empty body)"
                                                  : "\"" + excerpt(redact(response.body, p.secrets)) + "\""));
  }
  const auto type = response.header("content-type");
  if (!type.empty() && !is_json_media_type(type)) {
    return fail(Errc::unavailable,
                fmt::format("the Thing answered {} with '{}', not JSON", p.what, excerpt(core::trim(type))));
  }
  TdResponse out;
  out.status = response.status;
  out.elapsed = response.elapsed;
  out.url = p.url;
  if (response.body.empty()) {
    if (p.op != TdOperation::writeproperty && p.op != TdOperation::invokeaction) {
      return fail(Errc::unavailable,
                  fmt::format("the Thing answered {} with an empty body, not a JSON value", p.what));
    }
    return out;
  }
  auto value = core::parse_json(response.body, p.max_json_depth);
  if (!value) {
    return fail(Errc::unavailable,
                fmt::format("the Thing's answer to {} is not JSON: {}", p.what, value.error().detail));
  }
  if (p.op == TdOperation::readallproperties || p.op == TdOperation::readmultipleproperties) {
    if (!value->is_object()) {
      return fail(Errc::unavailable,
                  fmt::format("the Thing answered {} with {}, not an object of property values", p.what,
                              core::json_type_name(*value)));
    }
  }
  if (p.op == TdOperation::readmultipleproperties) {
    json::object chosen;
    const auto& all = value->get_object();
    for (const auto& name : p.properties) {
      if (const auto* v = all.if_contains(name)) chosen[name] = *v;
    }
    out.value = std::move(chosen);
  } else {
    out.value = std::move(*value);
  }
  return out;
}

}  // namespace

std::string_view to_string(TdOperation op) {
  switch (op) {
    case TdOperation::readproperty:
      return "readproperty";
    case TdOperation::readallproperties:
      return "readallproperties";
    case TdOperation::readmultipleproperties:
      return "readmultipleproperties";
    case TdOperation::writeproperty:
      return "writeproperty";
    case TdOperation::invokeaction:
      return "invokeaction";
  }
  return "";
}

std::optional<TdOperation> parse_td_operation(std::string_view name) {
  for (const auto op :
       {TdOperation::readproperty, TdOperation::readallproperties, TdOperation::readmultipleproperties,
        TdOperation::writeproperty, TdOperation::invokeaction}) {
    if (to_string(op) == name) return op;
  }
  return std::nullopt;
}

core::Result<UriTemplate> UriTemplate::parse(std::string_view text) {
  UriTemplate t;
  std::size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '}') {
      return core::fail(Errc::validation_failed, fmt::format("'}}' at offset {} closes no expression", i));
    }
    if (text[i] != '{') {
      const auto end = text.find_first_of("{}", i);
      const auto literal = text.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
      Part part;
      append_encoded(part.literal, literal, true);
      t.parts_.push_back(std::move(part));
      i += literal.size();
      continue;
    }
    const auto close = text.find('}', i);
    if (close == std::string_view::npos) {
      return core::fail(Errc::validation_failed, fmt::format("the expression at offset {} is not closed", i));
    }
    auto body = text.substr(i + 1, close - i - 1);
    Part part;
    part.op = ' ';
    if (!body.empty() && std::string_view("+#./;?&").find(body.front()) != std::string_view::npos) {
      part.op = body.front();
      body.remove_prefix(1);
    } else if (!body.empty() && std::string_view("=,!@|").find(body.front()) != std::string_view::npos) {
      return core::fail(
          Errc::validation_failed,
          fmt::format("the operator '{}' at offset {} is reserved by RFC 6570", body.front(), i));
    }
    std::size_t start = 0;
    for (;;) {
      const auto comma = body.find(',', start);
      const auto name =
          body.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      if (!name.empty() && (name.back() == '*' || name.find(':') != std::string_view::npos)) {
        return core::fail(
            Errc::validation_failed,
            fmt::format("the expression at offset {} uses a level 4 modifier ('{}'), which is not "
                        "supported",
                        i, name));
      }
      if (!is_varname(name)) {
        return core::fail(
            Errc::validation_failed,
            fmt::format("the expression at offset {} has a malformed variable name ('{}')", i, name));
      }
      part.names.emplace_back(name);
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    t.parts_.push_back(std::move(part));
    i = close + 1;
  }
  return t;
}

core::Result<std::string> UriTemplate::expand(const UriVariables& values) const {
  std::string out;
  for (const auto& part : parts_) {
    if (part.op == 0) {
      out += part.literal;
      continue;
    }
    const auto rule = rule_for(part.op);
    bool first = true;
    for (const auto& name : part.names) {
      const auto it = values.find(name);
      if (it == values.end() || it->second.is_null()) continue;
      const auto text = scalar_text(it->second);
      if (!text) {
        return core::fail(Errc::bad_request,
                          fmt::format("the URI variable '{}' must be a string, a number or a "
                                      "boolean, not {}",
                                      name, core::json_type_name(it->second)));
      }
      if (first) {
        out += rule.first;
        first = false;
      } else {
        out += rule.separator;
      }
      if (rule.named) {
        out += name;
        if (text->empty()) {
          out += rule.if_empty;
          continue;
        }
        out += '=';
      }
      append_encoded(out, *text, rule.allow_reserved);
    }
  }
  return out;
}

std::vector<std::string> UriTemplate::variables() const {
  std::vector<std::string> names;
  for (const auto& part : parts_) names.insert(names.end(), part.names.begin(), part.names.end());
  return names;
}

std::vector<core::FieldError> refused_form_urls(const json::object& td, const OutboundGuard& guard,
                                                std::string_view pointer) {
  std::vector<core::FieldError> refused;
  const auto base = boost::urls::parse_uri(string_member(td, "base").value_or(""));
  auto check_forms = [&](const json::value* forms, const std::string& at) {
    if (forms == nullptr || !forms->is_array()) return;
    for (std::size_t i = 0; i < forms->get_array().size(); ++i) {
      const auto* form = forms->get_array()[i].if_object();
      const auto* href = form != nullptr ? form->if_contains("href") : nullptr;
      if (href == nullptr || !href->is_string()) continue;
      const std::string_view text = href->get_string();
      // A template expression before the path may write the host: only the call can tell where it goes.
      const auto authority_start = text.find("://");
      if (authority_start != std::string_view::npos) {
        const auto authority = text.substr(
            authority_start + 3, text.find_first_of("/?#", authority_start + 3) - (authority_start + 3));
        if (authority.find('{') != std::string_view::npos) continue;
      }
      auto parsed = UriTemplate::parse(text);
      auto expanded =
          parsed ? parsed->expand({}) : core::Result<std::string>(std::unexpected(parsed.error()));
      if (!expanded) continue;
      auto reference = boost::urls::parse_uri_reference(*expanded);
      if (!reference) continue;
      boost::urls::url url;
      if (reference->has_scheme()) {
        url = *reference;
      } else if (!base || !boost::urls::resolve(*base, *reference, url)) {
        continue;
      }
      if (url.scheme_id() != boost::urls::scheme::http && url.scheme_id() != boost::urls::scheme::https)
        continue;
      if (auto ok = guard.check_url(url.buffer()); !ok) {
        refused.push_back({fmt::format("{}/forms/{}/href", at, i), ok.error().detail});
      }
    }
  };
  check_forms(td.if_contains("forms"), std::string(pointer));
  for (const auto* kind : {"properties", "actions", "events"}) {
    const auto* affordances = td.if_contains(kind);
    if (affordances == nullptr || !affordances->is_object()) continue;
    for (const auto& [name, affordance] : affordances->get_object()) {
      if (!affordance.is_object()) continue;
      const auto at = core::pointer_append(core::pointer_append(pointer, kind), name);
      check_forms(affordance.get_object().if_contains("forms"), at);
    }
  }
  return refused;
}

core::Result<TdForm> select_form(const json::object& td, TdOperation op, std::string_view affordance) {
  auto target = find_target(td, op, affordance);
  if (!target) return std::unexpected(target.error());
  const auto op_name = to_string(op);
  const auto forms_pointer = core::pointer_append(target->pointer, "forms");
  const auto* forms_value = target->affordance->if_contains("forms");
  const json::array* forms = forms_value != nullptr ? forms_value->if_array() : nullptr;
  const auto base_scheme = scheme_of(string_member(td, "base").value_or(""));

  std::vector<std::string> unusable;
  for (std::size_t i = 0; forms != nullptr && i < forms->size(); ++i) {
    const auto* form = (*forms)[i].if_object();
    if (form == nullptr) continue;
    const auto ops = form_ops(*form, *target);
    if (std::find(ops.begin(), ops.end(), op_name) == ops.end()) continue;
    const auto pointer = core::pointer_append(forms_pointer, std::to_string(i));
    const auto href = string_member(*form, "href");
    if (!href) {
      unusable.push_back(fmt::format("{} has no href", pointer));
      continue;
    }
    auto scheme = scheme_of(*href);
    if (scheme.empty()) scheme = base_scheme;
    if (scheme.empty()) {
      unusable.push_back(fmt::format("{} has a relative href and the Thing Description no base", pointer));
      continue;
    }
    if (scheme != "http" && scheme != "https") {
      unusable.push_back(fmt::format("{} uses {}", pointer, scheme));
      continue;
    }
    const std::string content_type(string_member(*form, "contentType").value_or(kJson));
    const auto* response = form->if_contains("response");
    const auto response_type = response != nullptr && response->is_object()
                                   ? string_member(response->get_object(), "contentType")
                                   : std::nullopt;
    if (!is_json_media_type(content_type) || (response_type && !is_json_media_type(*response_type))) {
      unusable.push_back(fmt::format("{} uses {}", pointer,
                                     is_json_media_type(content_type) ? *response_type : content_type));
      continue;
    }
    TdForm out;
    out.pointer = pointer;
    out.href = *href;
    out.content_type = content_type;
    if (const auto* method = form->if_contains("htv:methodName")) {
      const auto* name = method->if_string();
      if (name == nullptr || name->empty() || !std::all_of(name->begin(), name->end(), [](char c) {
            return is_tchar(static_cast<unsigned char>(c));
          })) {
        return core::fail(Errc::validation_failed,
                          fmt::format("the htv:methodName of {} is not an HTTP method", pointer));
      }
      out.method = view(*name);
    } else {
      out.method = default_method(op);
    }
    out.security = form->contains("security") ? names_of(form->if_contains("security"))
                                              : names_of(td.if_contains("security"));
    for (const auto* owner : {&td, target->affordance}) {
      const auto* variables = owner->if_contains("uriVariables");
      if (variables == nullptr || !variables->is_object()) continue;
      for (const auto& [name, schema] : variables->get_object()) out.uri_variables[name] = schema;
    }
    return out;
  }
  if (!unusable.empty()) {
    return core::fail(
        Errc::validation_failed,
        fmt::format("{} has no form for {} that twinbridge can use: twinbridge needs an HTTP form "
                    "(http or https) with JSON content for this operation, and {}",
                    target->what, op_name, join(unusable, "and")));
  }
  if (target->is_property && op == TdOperation::writeproperty && flag(*target->affordance, "readOnly")) {
    return core::fail(Errc::validation_failed,
                      fmt::format("{} is read-only: it has no form for writeproperty", target->what));
  }
  if (target->is_property && op == TdOperation::readproperty && flag(*target->affordance, "writeOnly")) {
    return core::fail(Errc::validation_failed,
                      fmt::format("{} is write-only: it has no form for readproperty", target->what));
  }
  return core::fail(Errc::validation_failed, fmt::format("{} has no form for {}", target->what, op_name));
}

TdHttpClient::TdHttpClient(boost::asio::io_context& io, HttpClient& http, TdHttpSettings settings)
    : io_(io), http_(http), settings_(settings) {}

void TdHttpClient::perform(const json::object& td, const TdCall& call, const TdCredentials& credentials,
                           Done done) {
  auto prepared = prepare(td, call, credentials, settings_);
  if (!prepared) {
    boost::asio::post(io_, [done = std::move(done), error = std::move(prepared.error())]() mutable {
      done(std::unexpected(std::move(error)));
    });
    return;
  }
  auto request = std::move(prepared->request);
  http_.send(std::move(request),
             [p = std::move(*prepared), done = std::move(done)](core::Result<HttpResponse> r) mutable {
               done(finish(p, std::move(r)));
             });
}

std::string percent_encoded(std::string_view s) {
  std::string out;
  append_encoded(out, s, false);
  return out;
}

std::string basic_credentials(std::string_view user, std::string_view password) {
  const std::string pair = std::string(user) + ":" + std::string(password);
  std::string out(4 * ((pair.size() + 2) / 3) + 1, '\0');
  const auto n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(pair.data()), static_cast<int>(pair.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace twinbridge::connect
