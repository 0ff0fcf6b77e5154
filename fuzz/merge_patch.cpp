// JSON Merge Patch (RFC 7396) as PATCH routes apply it: the input is a target document and a patch, separated
// by the first byte 0x1E (ASCII record separator, which JSON text never contains), each read as a request
// body is (core::parse_json, depth 64).
//
// Checks: a patch applied twice gives what it gave once (merge patches are idempotent); an object patch gives
// an object; merge_diff(a, a) is empty; merge_diff(target, result) applied to target gives result back
// whenever result holds no null member (merge patches cannot express one).

#include <boost/json/value.hpp>

#include "core/json_reader.hpp"
#include "core/merge_patch.hpp"
#include "fuzz.hpp"

namespace {

using namespace twinbridge;

constexpr std::size_t kServerDefaultDepth = 64;

bool has_null_member(const boost::json::value& v) {
  const auto* object = v.if_object();
  if (object == nullptr) return false;
  for (const auto& member : *object) {
    if (member.value().is_null() || has_null_member(member.value())) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = fuzz::as_text(data, size);
  const auto separator = text.find('\x1e');
  if (separator == std::string_view::npos) return 0;
  const auto target = core::parse_json(text.substr(0, separator), kServerDefaultDepth);
  const auto patch = core::parse_json(text.substr(separator + 1), kServerDefaultDepth);
  if (!target || !patch) return 0;

  const boost::json::value result = core::merge_patch(*target, *patch);
  TB_FUZZ_CHECK(core::merge_patch(result, *patch) == result);
  if (patch->is_object()) TB_FUZZ_CHECK(result.is_object());
  if (target->is_object()) TB_FUZZ_CHECK(core::merge_diff(*target, *target) == boost::json::object());
  if (!has_null_member(result)) {
    const boost::json::value diff = core::merge_diff(*target, result);
    TB_FUZZ_CHECK(core::merge_patch(*target, diff) == result);
  }
  return 0;
}
