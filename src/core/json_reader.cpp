#include "core/json_reader.hpp"

#include <fmt/format.h>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/error.hpp>
#include <boost/json/value_stack.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>

namespace twinbridge::core {

namespace {

// Boost.JSON reads a number beyond the range of a double (1e400) as an infinity, which it would then write as
// `Infinity`: not JSON. Finds the first such number and its pointer.
bool find_infinity(const boost::json::value& v, std::string& pointer) {
  if (v.is_double()) return !std::isfinite(v.get_double());
  if (const auto* object = v.if_object()) {
    for (const auto& member : *object) {
      if (find_infinity(member.value(), pointer)) {
        pointer.insert(0, pointer_append("", member.key()));
        return true;
      }
    }
  } else if (const auto* array = v.if_array()) {
    for (std::size_t i = 0; i < array->size(); ++i) {
      if (find_infinity((*array)[i], pointer)) {
        pointer.insert(0, "/" + std::to_string(i));
        return true;
      }
    }
  }
  return false;
}

// Builds the value as Boost.JSON's own parser does (a value_stack), reading doubles with std::from_chars.
class ExactNumbers {
 public:
  static constexpr std::size_t max_object_size = boost::json::object::max_size();
  static constexpr std::size_t max_array_size = boost::json::array::max_size();
  static constexpr std::size_t max_key_size = boost::json::string::max_size();
  static constexpr std::size_t max_string_size = boost::json::string::max_size();
  using error_code = boost::system::error_code;
  using string_view = boost::json::string_view;

  explicit ExactNumbers(boost::json::storage_ptr sp) : sp_(std::move(sp)) {}
  boost::json::value release() { return stack_.release(); }

  bool on_document_begin(error_code&) {
    stack_.reset(sp_);
    return true;
  }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code&) { return true; }
  bool on_object_end(std::size_t n, error_code&) {
    stack_.push_object(n);
    return true;
  }
  bool on_array_begin(error_code&) { return true; }
  bool on_array_end(std::size_t n, error_code&) {
    stack_.push_array(n);
    return true;
  }
  bool on_key_part(string_view s, std::size_t, error_code&) {
    stack_.push_chars(s);
    return true;
  }
  bool on_key(string_view s, std::size_t, error_code&) {
    stack_.push_key(s);
    return true;
  }
  bool on_string_part(string_view s, std::size_t, error_code&) {
    stack_.push_chars(s);
    return true;
  }
  bool on_string(string_view s, std::size_t, error_code&) {
    stack_.push_string(s);
    return true;
  }
  bool on_number_part(string_view s, error_code&) {
    number_.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, string_view, error_code&) {
    number_.clear();
    stack_.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, string_view, error_code&) {
    number_.clear();
    stack_.push_uint64(u);
    return true;
  }
  bool on_double(double d, string_view s, error_code&) {
    number_.append(s.data(), s.size());
    double exact = 0;
    const auto* end = number_.data() + number_.size();
    // Beyond the range of a double (either way), Boost.JSON's own value stands (an infinity is refused by
    // parse_json; an underflow is zero or a denormal either way).
    if (auto [at, error] = std::from_chars(number_.data(), end, exact); error == std::errc() && at == end)
      d = exact;
    number_.clear();
    stack_.push_double(d);
    return true;
  }
  bool on_bool(bool b, error_code&) {
    stack_.push_bool(b);
    return true;
  }
  bool on_null(error_code&) {
    stack_.push_null();
    return true;
  }
  bool on_comment_part(string_view, error_code&) { return true; }
  bool on_comment(string_view, error_code&) { return true; }

 private:
  boost::json::storage_ptr sp_;  // of the value read
  boost::json::value_stack stack_;
  std::string number_;  // the text of the number being read, when it came in parts
};

}  // namespace

boost::json::value read_json(std::string_view text, boost::system::error_code& ec, std::size_t max_depth,
                             std::size_t* consumed, boost::json::storage_ptr sp) {
  boost::json::parse_options options;
  options.max_depth = max_depth;
  boost::json::basic_parser<ExactNumbers> parser(options, std::move(sp));
  ec = {};
  const auto n = parser.write_some(false, text.data(), text.size(), ec);
  if (consumed != nullptr) *consumed = n;
  if (!ec && n < text.size()) ec = boost::json::error::extra_data;
  if (ec) return nullptr;
  return parser.handler().release();
}

Result<boost::json::value> parse_json(std::string_view text, std::size_t max_depth) {
  boost::system::error_code ec;
  std::size_t consumed = 0;
  auto value = read_json(text, ec, max_depth, &consumed);
  if (ec) {
    const std::string what = ec == boost::json::error::too_deep
                                 ? fmt::format("nesting is deeper than {} levels", max_depth)
                                 : ec.message();
    return fail_at(Errc::bad_request, "", fmt::format("{} at byte offset {}", what, consumed));
  }
  if (std::string pointer; find_infinity(value, pointer)) {
    return fail_at(
        Errc::bad_request, pointer,
        fmt::format("the number at '{}' is out of range (beyond +-1.7976931348623157e308)", pointer));
  }
  return value;
}

std::string pointer_append(std::string_view pointer, std::string_view token) {
  std::string out(pointer);
  out.reserve(out.size() + token.size() + 1);
  out.push_back('/');
  for (char c : token) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string_view json_type_name(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::object:
      return "object";
    case boost::json::kind::array:
      return "array";
    case boost::json::kind::string:
      return "string";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
      return "integer";
    case boost::json::kind::double_:
      return "number";
    case boost::json::kind::bool_:
      return "boolean";
    case boost::json::kind::null:
      return "null";
  }
  return "null";
}

ObjectReader::ObjectReader(const boost::json::value& value, std::string pointer,
                           std::vector<FieldError>& errors)
    : object_(value.if_object()), pointer_(std::move(pointer)), errors_(errors) {
  if (object_ == nullptr) {
    errors_.push_back({pointer_, fmt::format("must be an object, not {}", json_type_name(value))});
  }
}

void ObjectReader::add_error(std::string pointer, std::string detail) {
  errors_.push_back({std::move(pointer), std::move(detail)});
}

const boost::json::value* ObjectReader::find(std::string_view key, bool required, std::string_view expected) {
  known_.emplace_back(key);
  if (object_ == nullptr) return nullptr;
  const auto* v = object_->if_contains(key);
  if (v == nullptr && required) {
    add_error(member_pointer(key), fmt::format("required member '{}' ({}) is missing", key, expected));
  }
  return v;
}

void ObjectReader::wrong_type(std::string_view key, std::string_view expected) {
  const auto* v = object_->if_contains(key);
  add_error(member_pointer(key), fmt::format("must be {}, not {}", expected, json_type_name(*v)));
}

std::optional<std::string> ObjectReader::string(std::string_view key, bool required, std::size_t max_bytes) {
  const auto* v = find(key, required, "a string");
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    wrong_type(key, "a string");
    return std::nullopt;
  }
  const auto& s = v->get_string();
  if (s.size() > max_bytes) {
    add_error(member_pointer(key),
              fmt::format("is {} bytes long; at most {} are allowed", s.size(), max_bytes));
    return std::nullopt;
  }
  return std::string(s);
}

std::optional<bool> ObjectReader::boolean(std::string_view key, bool required) {
  const auto* v = find(key, required, "a boolean");
  if (v == nullptr) return std::nullopt;
  if (!v->is_bool()) {
    wrong_type(key, "a boolean");
    return std::nullopt;
  }
  return v->get_bool();
}

std::optional<std::int64_t> ObjectReader::integer(std::string_view key, bool required, std::int64_t min,
                                                  std::int64_t max) {
  const auto* v = find(key, required, "an integer");
  if (v == nullptr) return std::nullopt;
  std::optional<std::int64_t> n;
  if (v->is_int64()) {
    n = v->get_int64();
  } else if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    n = static_cast<std::int64_t>(v->get_uint64());
  } else if (v->is_double() && std::trunc(v->get_double()) == v->get_double() &&
             std::abs(v->get_double()) < 9e15) {
    n = static_cast<std::int64_t>(v->get_double());
  }
  if (!n) {
    const bool whole = v->is_uint64() || (v->is_double() && std::trunc(v->get_double()) == v->get_double());
    if (whole) {
      add_error(member_pointer(key), fmt::format("must be between {} and {}", min, max));
    } else {
      wrong_type(key, "an integer");
    }
    return std::nullopt;
  }
  if (*n < min || *n > max) {
    add_error(member_pointer(key), fmt::format("must be between {} and {}, not {}", min, max, *n));
    return std::nullopt;
  }
  return n;
}

std::optional<double> ObjectReader::number(std::string_view key, bool required, double min, double max) {
  const auto* v = find(key, required, "a number");
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) {
    wrong_type(key, "a number");
    return std::nullopt;
  }
  const double d = v->to_number<double>();
  if (!(d >= min && d <= max)) {
    add_error(member_pointer(key), fmt::format("must be between {} and {}, not {}", min, max, d));
    return std::nullopt;
  }
  return d;
}

std::optional<boost::json::object> ObjectReader::object(std::string_view key, bool required,
                                                        std::size_t max_members) {
  const auto* v = find(key, required, "an object");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) {
    wrong_type(key, "an object");
    return std::nullopt;
  }
  if (v->get_object().size() > max_members) {
    add_error(member_pointer(key),
              fmt::format("has {} members; at most {} are allowed", v->get_object().size(), max_members));
    return std::nullopt;
  }
  return v->get_object();
}

std::optional<std::vector<std::string>> ObjectReader::string_array(std::string_view key, bool required,
                                                                   std::size_t max_items,
                                                                   std::size_t max_item_bytes) {
  const auto* v = find(key, required, "an array of strings");
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) {
    wrong_type(key, "an array of strings");
    return std::nullopt;
  }
  const auto& arr = v->get_array();
  if (arr.size() > max_items) {
    add_error(member_pointer(key),
              fmt::format("has {} items; at most {} are allowed", arr.size(), max_items));
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (std::size_t i = 0; i < arr.size(); ++i) {
    const auto item_pointer = pointer_append(member_pointer(key), std::to_string(i));
    if (!arr[i].is_string()) {
      add_error(item_pointer, fmt::format("must be a string, not {}", json_type_name(arr[i])));
      ok = false;
    } else if (arr[i].get_string().size() > max_item_bytes) {
      add_error(item_pointer, fmt::format("is longer than {} bytes", max_item_bytes));
      ok = false;
    } else {
      out.emplace_back(arr[i].get_string());
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

const boost::json::value* ObjectReader::value(std::string_view key, bool required) {
  return find(key, required, "a value");
}

void ObjectReader::ignore(std::string_view key) {
  known_.emplace_back(key);
}

void ObjectReader::reject_unknown() {
  if (object_ == nullptr) return;
  for (const auto& member : *object_) {
    if (std::find(known_.begin(), known_.end(), member.key()) == known_.end()) {
      add_error(member_pointer(member.key()),
                fmt::format("unknown member '{}'", std::string_view(member.key())));
    }
  }
}

Result<void> validation_result(std::vector<FieldError> errors) {
  if (errors.empty()) return {};
  Error e(
      Errc::validation_failed,
      errors.size() == 1
          ? fmt::format("{}: {}", errors.front().pointer.empty() ? "the document" : errors.front().pointer,
                        errors.front().detail)
          : fmt::format("the request has {} invalid fields", errors.size()));
  e.fields = std::move(errors);
  return std::unexpected(std::move(e));
}

}  // namespace twinbridge::core
