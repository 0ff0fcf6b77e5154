#pragma once
// Reading the served API documents (/openapi.json, /asyncapi.json) in tests: their "$ref"s, and a schema of
// theirs as a document core::JsonSchema compiles.

#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/value.hpp>

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace twinbridge::testing {

inline constexpr std::string_view kComponentSchemas = "#/components/schemas/";

// Members whose values are data, not schemas: a "$ref" inside them is not a reference.
inline bool is_data_keyword(std::string_view key) {
  return key == "const" || key == "enum" || key == "default" || key == "examples" || key == "example";
}

// Calls `visit` with every "$ref" string, outside data members.
template <typename Value, typename Visit>
void for_each_ref(Value& v, const Visit& visit) {
  if (auto* o = v.if_object()) {
    if (auto* ref = o->if_contains("$ref"); ref != nullptr && ref->is_string()) visit(ref->get_string());
    for (auto& [key, member] : *o) {
      if (!is_data_keyword(key)) for_each_ref(member, visit);
    }
  } else if (auto* a = v.if_array()) {
    for (auto& item : *a) for_each_ref(item, visit);
  }
}

// A schema of the document as one core::JsonSchema compiles: the component schemas it needs, directly or
// through others, move under $defs, and the references to them follow.
inline boost::json::value standalone(const boost::json::value& schema,
                                     const boost::json::object& components) {
  boost::json::object defs;
  std::set<std::string> seen;
  std::vector<std::string> pending;
  const auto rebase = [&](boost::json::string& ref) {
    if (!ref.starts_with(kComponentSchemas)) return;
    const std::string rest(ref.subview(kComponentSchemas.size()));
    const auto name = rest.substr(0, rest.find('/'));
    if (seen.insert(name).second) pending.push_back(name);
    ref = "#/$defs/" + rest;
  };
  auto root = schema;
  for_each_ref(root, rebase);
  while (!pending.empty()) {
    const auto name = pending.back();
    pending.pop_back();
    auto component = components.at(name);
    for_each_ref(component, rebase);
    defs[name] = std::move(component);
  }
  if (!defs.empty()) root.as_object()["$defs"] = std::move(defs);
  return root;
}

}  // namespace twinbridge::testing
