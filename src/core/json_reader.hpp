#pragma once
// Strict reading of JSON request documents. An ObjectReader walks one JSON object, takes the members a
// resource declares, and records every problem (missing member, wrong type, too long, unknown member) as a
// FieldError with the RFC 6901 pointer of the member. A handler reads all members, then asks finish() for the
// single validation error that lists them all, so that a client sees every bad field at once.

#include <boost/json/value.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace twinbridge::core {

// Parses untrusted JSON text such as a request body: RFC 8259 only (no comments, no trailing commas, valid
// UTF-8), nested at most `max_depth` arrays or objects deep, no number beyond the range of a double (it would
// become an infinity, which JSON cannot write back). Errors: Errc::bad_request with a detail saying what is
// wrong and where, e.g. "nesting is deeper than 64 levels at byte offset 130", and one FieldError at "" (at
// the number's pointer for a number out of range).
Result<boost::json::value> parse_json(std::string_view text, std::size_t max_depth);

// Parses JSON text as boost::json::parse does (RFC 8259, at most `max_depth` levels; `ec` set and null
// returned on error), except that a number with a fraction or an exponent is read with std::from_chars: the
// double nearest to its text, which Boost.JSON 1.81's own reading misses by an ulp or more for some numbers,
// so that text twinbridge wrote (Boost.JSON writes the shortest text that reads back exactly) reads back to
// the same value, however many times a document is stored and read. Request bodies (parse_json), stored
// documents, MQTT payloads, stream commands and health answers are read with it; what remains on
// boost::json::parse is text without such numbers (cursors, problem bodies twinbridge built, JWT headers,
// built-in schemas). The value is allocated from `sp`.
boost::json::value read_json(std::string_view text, boost::system::error_code& ec, std::size_t max_depth = 32,
                             std::size_t* consumed = nullptr, boost::json::storage_ptr sp = {});

// Appends one reference token to a JSON pointer, escaping '~' and '/' (RFC 6901).
std::string pointer_append(std::string_view pointer, std::string_view token);

class ObjectReader {
 public:
  // `value` must outlive the reader. When it is not an object, the reader records that and every read returns
  // empty.
  ObjectReader(const boost::json::value& value, std::string pointer, std::vector<FieldError>& errors);

  bool is_object() const { return object_ != nullptr; }
  const std::string& pointer() const { return pointer_; }
  std::string member_pointer(std::string_view key) const { return pointer_append(pointer_, key); }

  // Each returns nullopt when the member is absent (an error when `required`) or has the wrong type (always
  // an error).
  std::optional<std::string> string(std::string_view key, bool required, std::size_t max_bytes = 1024);
  std::optional<bool> boolean(std::string_view key, bool required = false);
  std::optional<std::int64_t> integer(std::string_view key, bool required, std::int64_t min,
                                      std::int64_t max);
  std::optional<double> number(std::string_view key, bool required, double min, double max);
  std::optional<boost::json::object> object(std::string_view key, bool required,
                                            std::size_t max_members = 256);
  std::optional<std::vector<std::string>> string_array(std::string_view key, bool required,
                                                       std::size_t max_items, std::size_t max_item_bytes);
  // Any JSON value; marks the member as known.
  const boost::json::value* value(std::string_view key, bool required);
  // Marks members that are accepted but ignored (e.g. read-only members echoed back by a client after a GET).
  void ignore(std::string_view key);

  void add_error(std::string pointer, std::string detail);

  // Records an error for every member that no read or ignore() named.
  void reject_unknown();

 private:
  const boost::json::value* find(std::string_view key, bool required, std::string_view expected);
  void wrong_type(std::string_view key, std::string_view expected);

  const boost::json::object* object_ = nullptr;
  std::string pointer_;
  std::vector<FieldError>& errors_;
  std::vector<std::string> known_;
};

// Errc::validation_failed listing `errors` when there are any.
Result<void> validation_result(std::vector<FieldError> errors);

// Name of the JSON type of `v` as JSON Schema says it ("object", "array", "string", "number", "integer",
// "boolean", "null").
std::string_view json_type_name(const boost::json::value& v);

}  // namespace twinbridge::core
