// JSON request bodies as every route reads them: core::parse_json with the server's default depth limit
// (limits.max_json_depth), then an ObjectReader taking members of each kind, as a route handler does.
//
// Checks: a parse failure is a bad_request; a parsed document serializes to text that parses back to an equal
// document (numbers bit for bit, see same_document); every problem the reader reports about a member that
// is present carries an RFC 6901 pointer that resolves to that member in the document; its packed form
// (core/packed_json.hpp) serializes to the same text and unpacks to the same document.

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "core/json_reader.hpp"
#include "core/packed_json.hpp"
#include "fuzz.hpp"

namespace {

using namespace twinbridge;

constexpr std::size_t kServerDefaultDepth = 64;

// Equality, with numbers compared bit for bit (0.0 and -0.0 differ): core::read_json reads every number as
// the double nearest to its text, so a document written and read back is the same document (see README.md,
// "Found": Boost.JSON 1.81's own reading used to move some numbers by an ulp or more).
bool same_document(const boost::json::value& a, const boost::json::value& b) {
  if (a.is_double() && b.is_double()) {
    return std::bit_cast<std::uint64_t>(a.get_double()) == std::bit_cast<std::uint64_t>(b.get_double());
  }
  if (a.kind() != b.kind()) return false;
  if (const auto* oa = a.if_object()) {
    const auto& ob = b.get_object();
    if (oa->size() != ob.size()) return false;
    for (const auto& member : *oa) {
      const auto* other = ob.if_contains(member.key());
      if (other == nullptr || !same_document(member.value(), *other)) return false;
    }
    return true;
  }
  if (const auto* aa = a.if_array()) {
    const auto& ab = b.get_array();
    if (aa->size() != ab.size()) return false;
    for (std::size_t i = 0; i < aa->size(); ++i) {
      if (!same_document((*aa)[i], ab[i])) return false;
    }
    return true;
  }
  return a == b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto doc = core::parse_json(fuzz::as_text(data, size), kServerDefaultDepth);
  if (!doc) {
    TB_FUZZ_CHECK(doc.error().code == core::Errc::bad_request);
    // At "" (a syntax error), or at a number out of range, which then exists in the document.
    TB_FUZZ_CHECK(doc.error().fields.size() == 1);
    const auto& pointer = doc.error().fields.front().pointer;
    TB_FUZZ_CHECK(pointer.empty() || doc.error().detail.find("out of range") != std::string::npos);
    return 0;
  }
  const auto again = core::parse_json(boost::json::serialize(*doc), kServerDefaultDepth);
  TB_FUZZ_CHECK(again.has_value());
  TB_FUZZ_CHECK(same_document(*again, *doc));
  // The packed form the twin index keeps TDs in writes the same text and reads back the same document.
  const std::string packed = core::packed::pack(*doc);
  const core::packed::Ref root(reinterpret_cast<const std::uint8_t*>(packed.data()));
  TB_FUZZ_CHECK(root.byte_size() == packed.size());
  TB_FUZZ_CHECK(core::packed::serialize(root) == boost::json::serialize(*doc));
  TB_FUZZ_CHECK(same_document(core::packed::unpack(root), *doc));

  std::vector<core::FieldError> errors;
  core::ObjectReader reader(*doc, "", errors);
  reader.string("id", false);
  reader.string("name", true, 16);
  reader.boolean("enabled");
  reader.integer("version", false, 1, 1'000'000);
  reader.number("amount", false, 0, 1e9);
  if (auto nested = reader.object("properties", false, 8)) {
    const boost::json::value inner(std::move(*nested));
    core::ObjectReader sub(inner, reader.member_pointer("properties"), errors);
    sub.string("region", false, 8);
    sub.integer("rank", false, -10, 10);
    sub.reject_unknown();
  }
  reader.string_array("roles", false, 4, 32);
  reader.value("document", false);
  reader.ignore("created_at");
  reader.reject_unknown();
  for (const auto& e : errors) {
    boost::system::error_code ec;
    const boost::json::value* at = doc->find_pointer(e.pointer, ec);
    const bool missing = e.detail.starts_with("required member");
    TB_FUZZ_CHECK(missing || at != nullptr);
  }
  const auto result = core::validation_result(std::move(errors));
  TB_FUZZ_CHECK(result.has_value() || result.error().code == core::Errc::validation_failed);
  return 0;
}
