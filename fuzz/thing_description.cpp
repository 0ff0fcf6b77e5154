// W3C WoT Thing Descriptions as /things, twin registrations and twin updates read them: the input is a
// request body (core::parse_json, depth 64) validated by core::parse_thing_description, inside a larger
// document
// ("/twins/3", as a twin-system registration embeds it).
//
// Checks: a refused TD is a validation_failed with at most kMaxViolations fields, each pointer under the
// base; an accepted TD written back with to_json() (pose included) is accepted again and describes the same
// thing.

#include <boost/json/value.hpp>

#include "core/json_reader.hpp"
#include "core/thing_description.hpp"
#include "fuzz.hpp"

namespace {

using namespace twinbridge;

constexpr std::size_t kServerDefaultDepth = 64;
constexpr std::string_view kBase = "/twins/3";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto doc = core::parse_json(fuzz::as_text(data, size), kServerDefaultDepth);
  if (!doc) return 0;
  const auto td = core::parse_thing_description(*doc, kBase);
  if (!td) {
    TB_FUZZ_CHECK(td.error().code == core::Errc::validation_failed);
    TB_FUZZ_CHECK(!td.error().fields.empty() && td.error().fields.size() <= core::kMaxViolations);
    for (const auto& field : td.error().fields) TB_FUZZ_CHECK(field.pointer.starts_with(kBase));
    return 0;
  }
  const boost::json::value written(core::to_json(*td));
  const auto again = core::parse_thing_description(written);
  TB_FUZZ_CHECK(again.has_value());
  TB_FUZZ_CHECK(again->id == td->id && again->title == td->title);
  TB_FUZZ_CHECK(again->document == td->document);
  TB_FUZZ_CHECK(again->property_names == td->property_names && again->action_names == td->action_names &&
                again->event_names == td->event_names);
  TB_FUZZ_CHECK(again->pose.has_value() == td->pose.has_value());
  return 0;
}
