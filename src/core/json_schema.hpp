#pragma once
// A JSON Schema (2020-12) validator for the documents twinbridge publishes schemas for (registrations of
// 3rd-party systems and twin systems). A schema is compiled once into an immutable tree; validation reports
// every violation as a FieldError with the RFC 6901 pointer of the bad value inside the instance.
//
// Supported keywords: type, enum, const; properties, required, additionalProperties, patternProperties,
// propertyNames, minProperties, maxProperties; prefixItems, items, minItems, maxItems, uniqueItems;
// minLength, maxLength (Unicode code points), pattern, format (date-time, uri, uri-reference, email, uuid);
// minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf; allOf, anyOf, oneOf, not, if/then/else;
// $ref to a "#..." JSON pointer inside the same document, $defs. Annotations (title, description, examples,
// default, $comment, deprecated, readOnly, writeOnly, $schema, $id at the root) are accepted and ignored.
// Anything else is a compile error, so that a misspelt keyword cannot silently accept every document.
//
// Errors of anyOf / oneOf: one error at the value ("must match exactly one of the 3 alternatives (matched
// 0)"), except when the alternatives are objects told apart by the single allowed value (const) of one
// property, e.g. "model": then the errors of the alternative the instance names, or one error at that
// property.
//
// Limits and deviations, all deliberate:
// - Patterns are ECMAScript regular expressions run by std::regex on the UTF-8 bytes; they must be ASCII. The
//   libstdc++ matcher recurses once per input character, so a string longer than kMaxPatternSubjectBytes is
//   reported as too long to check rather than matched.
// - Unknown "format" values are compile errors; the known ones are assertions, not annotations. $schema, when
//   present, must name 2020-12; $id is accepted only at the root (no embedded schema resources).
// - When a value has the wrong type, only the type error is reported for that schema.
// - Instances nested deeper than kMaxInstanceDepth are rejected with one error. Schemas nested deeper
//   than 128 levels, or chaining more than 64 subschemas on one value ($ref, allOf, ...), do not compile.
//
// Thread-safety: a JsonSchema is immutable after compile(); copies share the compiled tree and any number of
// threads may validate with the same schema at once.

#include <boost/json/value.hpp>

#include <cstddef>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"

namespace twinbridge::core {

namespace detail {
struct SchemaNode;
}

class JsonSchema {
 public:
  // Deepest nesting of arrays and objects in an instance that validate() accepts.
  static constexpr std::size_t kMaxInstanceDepth = 128;
  // Longest string (in bytes) that "pattern" and "patternProperties" run a regular expression on.
  static constexpr std::size_t kMaxPatternSubjectBytes = 1024;

  // Compiles a schema document. Errors: Errc::validation_failed with one FieldError whose pointer is the JSON
  // pointer inside the schema of the unsupported or malformed keyword (a $ref that does not resolve, or a
  // cycle of $ref that never reaches a sub-value of the instance, e.g. a $ref to itself).
  static Result<JsonSchema> compile(const boost::json::value& schema);

  // Appends one FieldError per violation to `errors` (pointer: RFC 6901 pointer into the instance, prefixed
  // by `base_pointer`; detail: an English sentence such as "is required"). Collects every violation, but
  // appends at most `max_errors`; with max_errors == 0 it only answers. Returns true when the instance is
  // valid.
  bool validate(const boost::json::value& instance, std::vector<FieldError>& errors,
                std::string_view base_pointer = "", std::size_t max_errors = 50) const;

  // Errc::validation_failed listing every violation (at most 50) when the instance is invalid.
  Result<void> check(const boost::json::value& instance) const;

 private:
  explicit JsonSchema(std::shared_ptr<const detail::SchemaNode> root) : root_(std::move(root)) {}

  // The root node; it shares ownership of the arena that holds every node of the schema, and nodes refer to
  // each other (subschemas, $ref targets) by plain pointer into that arena.
  std::shared_ptr<const detail::SchemaNode> root_;
};

}  // namespace twinbridge::core
