// The JSON Schema validator (core::JsonSchema) with the schemas twinbridge publishes, as registrations of
// 3rd-party systems and twin systems are checked: the input is a request body (core::parse_json, depth 64)
// validated against /schemas/third-party-system.json and /schemas/twin-system.json.
//
// Checks: validate() with and without collecting errors agrees, and with check(); an invalid instance has at
// least one and at most max_errors violations, each pointer under the base pointer and, unless the violation
// is a missing member, resolving to a value of the instance.

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "core/json_reader.hpp"
#include "core/json_schema.hpp"
#include "fuzz.hpp"

namespace twinbridge::fuzz {
std::string_view third_party_system_schema();
std::string_view twin_system_schema();
}  // namespace twinbridge::fuzz

namespace {

using namespace twinbridge;

constexpr std::size_t kServerDefaultDepth = 64;
constexpr std::size_t kMaxErrors = 50;
constexpr std::string_view kBase = "/body";

core::JsonSchema compile(std::string_view text) {
  auto schema = core::JsonSchema::compile(boost::json::parse(text));
  if (!schema) fuzz::check_failed("a published schema compiles", __FILE__, __LINE__);
  return std::move(*schema);
}

void check(const core::JsonSchema& schema, const boost::json::value& instance) {
  std::vector<core::FieldError> errors;
  const bool valid = schema.validate(instance, errors, kBase, kMaxErrors);
  std::vector<core::FieldError> none;
  TB_FUZZ_CHECK(schema.validate(instance, none, kBase, 0) == valid);
  TB_FUZZ_CHECK(none.empty());
  TB_FUZZ_CHECK(schema.check(instance).has_value() == valid);
  if (valid) {
    TB_FUZZ_CHECK(errors.empty());
    return;
  }
  TB_FUZZ_CHECK(!errors.empty() && errors.size() <= kMaxErrors);
  for (const auto& e : errors) {
    TB_FUZZ_CHECK(e.pointer.starts_with(kBase));
    if (e.detail == "is required") continue;
    boost::system::error_code ec;
    TB_FUZZ_CHECK(instance.find_pointer(std::string_view(e.pointer).substr(kBase.size()), ec) != nullptr);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const core::JsonSchema third_party = compile(fuzz::third_party_system_schema());
  static const core::JsonSchema twin_system = compile(fuzz::twin_system_schema());
  const auto instance = core::parse_json(fuzz::as_text(data, size), kServerDefaultDepth);
  if (!instance) return 0;
  check(third_party, *instance);
  check(twin_system, *instance);
  return 0;
}
