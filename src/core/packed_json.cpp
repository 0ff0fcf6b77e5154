#include "core/packed_json.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>

#include <array>
#include <unordered_map>

#include "core/text.hpp"

namespace twinbridge::core::packed {

namespace {

namespace json = boost::json;
using namespace detail;

// Keys written as a term number: the members TDs, their data schemas, forms and security definitions use,
// and what twinbridge adds when it serves a TD. Any other key is written out. Order is free (the form is
// never stored), but a term's number must stay below 2^62.
constexpr std::array kTerms = std::to_array<std::string_view>({
    // W3C WoT TD 1.1: Thing, affordances, forms, links
    "@context",
    "@type",
    "id",
    "title",
    "titles",
    "description",
    "descriptions",
    "version",
    "instance",
    "model",
    "created",
    "modified",
    "support",
    "base",
    "properties",
    "actions",
    "events",
    "links",
    "forms",
    "security",
    "securityDefinitions",
    "profile",
    "schemaDefinitions",
    "uriVariables",
    "href",
    "contentType",
    "contentCoding",
    "subprotocol",
    "op",
    "response",
    "additionalResponses",
    "success",
    "scheme",
    "readOnly",
    "writeOnly",
    "observable",
    "safe",
    "idempotent",
    "synchronous",
    "input",
    "output",
    "data",
    "dataResponse",
    "subscription",
    "cancellation",
    "rel",
    "anchor",
    "sizes",
    "hreflang",
    "type",
    // JSON Schema (TD data schemas)
    "const",
    "default",
    "unit",
    "oneOf",
    "allOf",
    "enum",
    "format",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "multipleOf",
    "required",
    "contentEncoding",
    "contentMediaType",
    "pattern",
    // security schemes
    "name",
    "in",
    "qop",
    "authorization",
    "alg",
    "token",
    "refresh",
    "flow",
    "scopes",
    "proxy",
    "identity",
    // protocol bindings
    "htv:methodName",
    "htv:headers",
    "mqv:topic",
    "mqv:filter",
    "mqv:qos",
    "mqv:retain",
    "mqv:controlPacket",
    // W3C WoT Discovery registration, twinbridge's served members and extensions
    "registration",
    "expires",
    "ttl",
    "retrieved",
    "twinbridge:system",
    "twinbridge:version",
    "twinbridge:pose",
    "twinbridge:ephemeral",
    "twinbridge:poseEphemeral",
    "twinbridge:maxAge",
    "twinbridge:acquisition",
    "position",
    "orientation",
    "frame",
    "x",
    "y",
    "z",
    "w",
});

const std::unordered_map<std::string_view, std::uint64_t>& term_numbers() {
  static const auto* numbers = [] {
    auto* m = new std::unordered_map<std::string_view, std::uint64_t>;
    for (std::size_t i = 0; i < kTerms.size(); ++i) m->emplace(kTerms[i], i);  // the first of a duplicate
    return m;
  }();
  return *numbers;
}

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

std::uint8_t* write_varint(std::uint64_t v, std::uint8_t* out) {
  while (v >= 0x80) {
    *out++ = static_cast<std::uint8_t>(v | 0x80);
    v >>= 7;
  }
  *out++ = static_cast<std::uint8_t>(v);
  return out;
}

std::uint64_t zigzag(std::int64_t v) {
  return (static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63);
}

std::uint64_t key_code(std::string_view key) {
  const auto& numbers = term_numbers();
  if (auto it = numbers.find(key); it != numbers.end()) return (it->second << 1) | 1;
  return static_cast<std::uint64_t>(key.size()) << 1;
}

}  // namespace

// Pre-order: the first pass records each container's content size and each key's code, the second writes.
std::size_t Packer::measure(const json::value& value) {
  value_ = &value;
  codes_.clear();
  return measure_node(value);
}

std::size_t Packer::measure_node(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
    case json::kind::bool_:
      return 1;
    case json::kind::int64:
      return 1 + varint_size(zigzag(v.get_int64()));
    case json::kind::uint64:
      return 1 + varint_size(v.get_uint64());
    case json::kind::double_:
      return 1 + sizeof(double);
    case json::kind::string:
      return 1 + varint_size(v.get_string().size()) + v.get_string().size();
    case json::kind::array:
    case json::kind::object:
      break;
  }
  const std::size_t slot = codes_.size();
  codes_.push_back(0);
  std::size_t contents = 0;
  std::size_t count = 0;
  if (v.is_array()) {
    count = v.get_array().size();
    for (const auto& e : v.get_array()) contents += measure_node(e);
  } else {
    count = v.get_object().size();
    for (const auto& m : v.get_object()) {
      const std::string_view key(m.key().data(), m.key().size());
      const std::uint64_t code = key_code(key);
      codes_.push_back(code);
      contents += varint_size(code) + ((code & 1) != 0 ? 0 : key.size()) + measure_node(m.value());
    }
  }
  codes_[slot] = contents;
  return 1 + varint_size(count) + varint_size(contents) + contents;
}

std::uint8_t* Packer::write(std::uint8_t* out) {
  next_ = 0;
  return write_node(*value_, out);
}

std::uint8_t* Packer::write_node(const json::value& v, std::uint8_t* out) {
  switch (v.kind()) {
    case json::kind::null:
      *out++ = kNull;
      return out;
    case json::kind::bool_:
      *out++ = v.get_bool() ? kTrue : kFalse;
      return out;
    case json::kind::int64:
      *out++ = kInt64;
      return write_varint(zigzag(v.get_int64()), out);
    case json::kind::uint64:
      *out++ = kUint64;
      return write_varint(v.get_uint64(), out);
    case json::kind::double_: {
      *out++ = kDouble;
      const double d = v.get_double();
      std::memcpy(out, &d, sizeof d);
      return out + sizeof d;
    }
    case json::kind::string: {
      const auto& s = v.get_string();
      *out++ = kString;
      out = write_varint(s.size(), out);
      std::memcpy(out, s.data(), s.size());
      return out + s.size();
    }
    case json::kind::array: {
      const auto& a = v.get_array();
      *out++ = kArray;
      out = write_varint(a.size(), out);
      out = write_varint(codes_[next_++], out);
      for (const auto& e : a) out = write_node(e, out);
      return out;
    }
    case json::kind::object: {
      const auto& o = v.get_object();
      *out++ = kObject;
      out = write_varint(o.size(), out);
      out = write_varint(codes_[next_++], out);
      for (const auto& m : o) {
        const std::uint64_t code = codes_[next_++];
        out = write_varint(code, out);
        if ((code & 1) == 0) {
          std::memcpy(out, m.key().data(), m.key().size());
          out += m.key().size();
        }
        out = write_node(m.value(), out);
      }
      return out;
    }
  }
  return out;
}

std::string_view detail::term(std::size_t index) {
  return kTerms[index];
}

std::string pack(const json::value& value) {
  Packer packer;
  std::string out(packer.measure(value), '\0');
  packer.write(reinterpret_cast<std::uint8_t*>(out.data()));
  return out;
}

void append_json(Ref node, std::string& out) {
  switch (node.kind()) {
    case json::kind::null:
      out += "null";
      return;
    case json::kind::bool_:
      out += node.get_bool() ? "true" : "false";
      return;
    case json::kind::int64:
      out += std::to_string(node.get_int64());
      return;
    case json::kind::uint64:
      out += std::to_string(node.get_uint64());
      return;
    case json::kind::double_:
      out += json::serialize(json::value(node.get_double()));  // boost's own number format
      return;
    case json::kind::string:
      append_quoted(out, node.get_string(), '"');  // as boost::json escapes it
      return;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const Ref e : node.elements()) {
        if (!first) out += ',';
        first = false;
        append_json(e, out);
      }
      out += ']';
      return;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, value] : node.members()) {
        if (!first) out += ',';
        first = false;
        append_quoted(out, key, '"');
        out += ':';
        append_json(value, out);
      }
      out += '}';
      return;
    }
  }
}

std::string serialize(Ref node) {
  std::string out;
  append_json(node, out);
  return out;
}

json::value unpack(Ref node, json::storage_ptr sp) {
  switch (node.kind()) {
    case json::kind::null:
      return json::value(nullptr, sp);
    case json::kind::bool_:
      return json::value(node.get_bool(), sp);
    case json::kind::int64:
      return json::value(node.get_int64(), sp);
    case json::kind::uint64:
      return json::value(node.get_uint64(), sp);
    case json::kind::double_:
      return json::value(node.get_double(), sp);
    case json::kind::string:
      return json::value(json::string_view(node.get_string()), sp);
    case json::kind::array: {
      json::array a(sp);
      a.reserve(node.size());
      for (const Ref e : node.elements()) a.push_back(unpack(e, sp));
      return json::value(std::move(a));
    }
    case json::kind::object: {
      json::object o(sp);
      o.reserve(node.size());
      for (const auto& [key, value] : node.members()) o.emplace(key, unpack(value, sp));
      return json::value(std::move(o));
    }
  }
  return json::value(sp);
}

}  // namespace twinbridge::core::packed
