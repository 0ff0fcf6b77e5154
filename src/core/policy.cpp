#include "core/policy.hpp"

#include <fmt/format.h>
#include <boost/json/array.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <utility>

#include "core/access.hpp"
#include "core/json_reader.hpp"
#include "core/thing_description.hpp"

namespace twinbridge::core {

namespace json = boost::json;

namespace {

constexpr std::array<std::pair<std::string_view, Operation>, 5> kOperations{{
    {"readproperty", Operation::readproperty},
    {"writeproperty", Operation::writeproperty},
    {"observeproperty", Operation::observeproperty},
    {"invokeaction", Operation::invokeaction},
    {"subscribeevent", Operation::subscribeevent},
}};
// Thing-level operations, decided per property (see policy.hpp).
constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kThingOperations{{
    {"readallproperties", "readproperty"},
    {"readmultipleproperties", "readproperty"},
    {"writeallproperties", "writeproperty"},
    {"writemultipleproperties", "writeproperty"},
}};
constexpr std::string_view kEvery = "*";

std::string operation_names() {
  std::string out;
  for (const auto& [name, op] : kOperations) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

std::string role_names() {
  std::string out;
  for (const auto& role : role_catalogue()) {
    if (!out.empty()) out += ", ";
    out += role.name;
  }
  return out;
}

std::string wrong_type(std::string_view expected, const json::value& v) {
  return fmt::format("must be {}, not {}", expected, json_type_name(v));
}

// The TD member that holds the affordances `op` applies to, and the noun for one of them.
std::pair<std::string_view, std::string_view> affordance_kind(Operation op) {
  switch (op) {
    case Operation::readproperty:
    case Operation::writeproperty:
    case Operation::observeproperty:
      return {"properties", "property"};
    case Operation::invokeaction:
      return {"actions", "action"};
    case Operation::subscribeevent:
      return {"events", "event"};
  }
  return {"properties", "property"};
}

std::string with_article(std::string_view noun) {
  return fmt::format("{} {}", noun.front() == 'a' || noun.front() == 'e' ? "an" : "a", noun);
}

const json::object* find_affordance(const json::object& td, std::string_view kind, std::string_view name) {
  const auto* map = td.if_contains(kind);
  if (map == nullptr || !map->is_object()) return nullptr;
  const auto* affordance = map->get_object().if_contains(name);
  return affordance == nullptr ? nullptr : affordance->if_object();
}

bool flag(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}
bool flag(const json::object* o, std::string_view key) {
  return flag(*o, key);
}

// The same over a packed TD (a twin view's).
packed::Ref find_affordance(packed::Ref td, std::string_view kind, std::string_view name) {
  const auto affordance = td.find(kind).find(name);
  return affordance.is_object() ? affordance : packed::Ref();
}
bool flag(packed::Ref o, std::string_view key) {
  const auto v = o.find(key);
  return v.is_bool() && v.get_bool();
}

void add_id_errors(const Result<void>& checked, std::vector<FieldError>& errors) {
  if (checked) return;
  errors.insert(errors.end(), checked.error().fields.begin(), checked.error().fields.end());
}

std::optional<Subject> read_subject(const json::value& v, const std::string& at,
                                    std::vector<FieldError>& errors) {
  const auto* o = v.if_object();
  if (o == nullptr) {
    errors.push_back({at, wrong_type(R"(an object such as {"role": "twin-reader"})", v)});
    return std::nullopt;
  }
  if (o->size() != 1) {
    errors.push_back({at, fmt::format("must have exactly one member (principal, role, system or any), not {}",
                                      o->size())});
    return std::nullopt;
  }
  const auto& [key, value] = *o->begin();
  const auto member_at = pointer_append(at, key);
  Subject subject;
  if (key == "any") {
    if (!value.is_bool() || !value.get_bool()) {
      errors.push_back({member_at, "must be true (every authenticated principal)"});
      return std::nullopt;
    }
    subject.kind = Subject::Kind::any;
    return subject;
  }
  if (key == "principal") {
    subject.kind = Subject::Kind::principal;
  } else if (key == "role") {
    subject.kind = Subject::Kind::role;
  } else if (key == "system") {
    subject.kind = Subject::Kind::system;
  } else {
    errors.push_back(
        {member_at, fmt::format("\"{}\" is not a kind of subject; expected principal, role, system or any",
                                std::string_view(key))});
    return std::nullopt;
  }
  if (!value.is_string()) {
    errors.push_back({member_at, wrong_type("a string", value)});
    return std::nullopt;
  }
  subject.name = value.get_string();
  if (subject.kind == Subject::Kind::role) {
    if (!is_known_role(subject.name)) {
      errors.push_back(
          {member_at, fmt::format("\"{}\" is not a role; expected one of {}", subject.name, role_names())});
      return std::nullopt;
    }
    return subject;
  }
  const auto checked = validate_id(subject.name, member_at);
  if (!checked) {
    add_id_errors(checked, errors);
    return std::nullopt;
  }
  return subject;
}

void read_operations(const json::value& v, const std::string& at, PolicyRule& rule,
                     std::vector<FieldError>& errors) {
  const auto* items = v.if_array();
  if (items == nullptr) {
    errors.push_back({at, wrong_type("an array of operation names", v)});
    return;
  }
  if (items->empty()) {
    errors.push_back({at, "must name at least one operation"});
    return;
  }
  for (std::size_t i = 0; i < items->size(); ++i) {
    const auto& item = (*items)[i];
    const auto item_at = pointer_append(at, std::to_string(i));
    if (!item.is_string()) {
      errors.push_back({item_at, wrong_type("a string (an operation name)", item)});
      continue;
    }
    const std::string_view name = item.get_string();
    const auto op = parse_operation(name);
    if (!op) {
      const auto* thing = std::find_if(kThingOperations.begin(), kThingOperations.end(),
                                       [&](const auto& entry) { return entry.first == name; });
      errors.push_back(
          {item_at,
           thing != kThingOperations.end()
               ? fmt::format("\"{}\" is decided property by property: grant \"{}\" instead", name,
                             thing->second)
               : fmt::format("\"{}\" is not an operation; expected one of {}", name, operation_names())});
      continue;
    }
    if (std::find(rule.operations.begin(), rule.operations.end(), *op) != rule.operations.end()) {
      errors.push_back({item_at, fmt::format("repeats \"{}\"", name)});
      continue;
    }
    rule.operations.push_back(*op);
  }
}

void read_affordances(const json::value& v, const std::string& at, PolicyRule& rule,
                      std::vector<FieldError>& errors) {
  if (v.is_string() && v.get_string() == kEvery) {
    rule.every_affordance = true;
    return;
  }
  const auto* items = v.if_array();
  if (items == nullptr) {
    errors.push_back({at, wrong_type(R"(an array of affordance names or "*")", v)});
    return;
  }
  if (items->empty()) {
    errors.push_back({at, R"(must name at least one affordance (or be "*" for every one))"});
    return;
  }
  if (items->size() > kMaxRuleAffordances) {
    errors.push_back({at, fmt::format("names {} affordances; at most {} are allowed", items->size(),
                                      kMaxRuleAffordances)});
    return;
  }
  for (std::size_t i = 0; i < items->size(); ++i) {
    const auto& item = (*items)[i];
    const auto item_at = pointer_append(at, std::to_string(i));
    if (!item.is_string()) {
      errors.push_back({item_at, wrong_type("a string (an affordance name)", item)});
      continue;
    }
    const std::string_view name = item.get_string();
    if (name == kEvery) {
      errors.push_back({item_at, R"("*" stands alone: write "affordances": "*")"});
    } else if (name.empty() || name.size() > kMaxIdBytes) {
      errors.push_back({item_at, fmt::format("must be 1 to {} bytes long", kMaxIdBytes)});
    } else if (std::find(rule.affordances.begin(), rule.affordances.end(), name) != rule.affordances.end()) {
      errors.push_back({item_at, fmt::format("repeats \"{}\"", name)});
    } else {
      rule.affordances.emplace_back(name);
    }
  }
}

// One rule of a policy, or one permission of a permission answer (always allow, no "effect").
PolicyRule read_rule(const json::value& v, const std::string& at, bool permission,
                     std::vector<FieldError>& errors) {
  PolicyRule rule;
  ObjectReader r(v, at, errors);
  if (!r.is_object()) return rule;
  if (auto id = r.string("id", false, kMaxIdBytes)) {
    add_id_errors(validate_id(*id, r.member_pointer("id")), errors);
    rule.id = std::move(*id);
  }
  if (auto description = r.string("description", false, kMaxRuleDescriptionBytes))
    rule.description = std::move(*description);
  if (const auto* subject = r.value("subject", true)) {
    if (auto s = read_subject(*subject, r.member_pointer("subject"), errors)) rule.subject = std::move(*s);
  }
  if (permission) {
    if (r.value("effect", false) != nullptr) {
      r.add_error(r.member_pointer("effect"), "is not a member of a permission: a permission always allows");
    }
  } else if (const auto* effect = r.value("effect", true)) {
    if (effect->is_string() && effect->get_string() == "allow") {
      rule.effect = Effect::allow;
    } else if (effect->is_string() && effect->get_string() == "deny") {
      rule.effect = Effect::deny;
    } else {
      r.add_error(r.member_pointer("effect"), effect->is_string()
                                                  ? fmt::format(R"(must be "allow" or "deny", not "{}")",
                                                                std::string_view(effect->get_string()))
                                                  : wrong_type(R"("allow" or "deny")", *effect));
    }
  }
  if (const auto* operations = r.value("operations", true))
    read_operations(*operations, r.member_pointer("operations"), rule, errors);
  if (const auto* affordances = r.value("affordances", true))
    read_affordances(*affordances, r.member_pointer("affordances"), rule, errors);
  r.reject_unknown();
  return rule;
}

// Reads the array member `key` of `doc` as rules (or permissions).
Result<Policy> read_rules(const json::value& doc, std::string_view pointer_base, std::string_view key,
                          bool permission) {
  std::vector<FieldError> errors;
  Policy policy;
  ObjectReader r(doc, std::string(pointer_base), errors);
  if (const auto* rules = r.value(key, true)) {
    const auto at = r.member_pointer(key);
    if (const auto* items = rules->if_array(); items == nullptr) {
      errors.push_back({at, wrong_type("an array", *rules)});
    } else if (items->size() > kMaxPolicyRules) {
      errors.push_back(
          {at, fmt::format("has {} items; at most {} are allowed", items->size(), kMaxPolicyRules)});
    } else {
      std::map<std::string, std::size_t, std::less<>> ids;
      for (std::size_t i = 0; i < items->size(); ++i) {
        const auto item_at = pointer_append(at, std::to_string(i));
        auto rule = read_rule((*items)[i], item_at, permission, errors);
        if (!rule.id.empty()) {
          const auto [it, inserted] = ids.emplace(rule.id, i);
          if (!inserted) {
            errors.push_back(
                {pointer_append(item_at, "id"),
                 fmt::format("repeats the id of {} {}", permission ? "permission" : "rule", it->second)});
          }
        }
        policy.rules.push_back(std::move(rule));
      }
    }
  }
  r.reject_unknown();
  if (errors.empty()) return policy;
  const auto total = errors.size();
  std::string detail =
      total == 1
          ? fmt::format("{}: {}", errors.front().pointer.empty() ? "the document" : errors.front().pointer,
                        errors.front().detail)
          : fmt::format("the {} has {} violations", permission ? "permission answer" : "policy", total);
  if (total > kMaxViolations) {
    errors.resize(kMaxViolations);
    detail += fmt::format("; the first {} are listed", kMaxViolations);
  }
  Error e(Errc::validation_failed, std::move(detail));
  e.fields = std::move(errors);
  return std::unexpected(std::move(e));
}

bool matches(const Subject& subject, const SubjectFacts& who) {
  const auto has = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), subject.name) != names.end();
  };
  switch (subject.kind) {
    case Subject::Kind::principal:
      return !who.principal.empty() && who.principal.str() == subject.name;
    case Subject::Kind::role:
      return has(who.roles);
    case Subject::Kind::system:
      return has(who.systems);
    case Subject::Kind::any:
      return !who.principal.empty();
  }
  return false;
}

bool covers(const PolicyRule& rule, Operation op, std::string_view affordance) {
  if (std::find(rule.operations.begin(), rule.operations.end(), op) == rule.operations.end()) return false;
  return rule.every_affordance ||
         std::find(rule.affordances.begin(), rule.affordances.end(), affordance) != rule.affordances.end();
}

std::string rule_name(const Policy& policy, std::size_t index) {
  const auto& id = policy.rules[index].id;
  return id.empty() ? fmt::format("rule {}", index) : fmt::format("rule {} (\"{}\")", index, id);
}

}  // namespace

std::string_view to_string(Operation op) {
  for (const auto& [name, value] : kOperations) {
    if (value == op) return name;
  }
  return "readproperty";
}

std::optional<Operation> parse_operation(std::string_view name) {
  for (const auto& [text, op] : kOperations) {
    if (text == name) return op;
  }
  return std::nullopt;
}

Result<Policy> parse_policy(const json::value& doc, std::string_view pointer_base) {
  return read_rules(doc, pointer_base, "rules", false);
}

Result<Policy> policy_from_permission_answer(const json::value& answer, std::string_view pointer_base) {
  return read_rules(answer, pointer_base, "permissions", true);
}

json::object to_json(const Policy& policy) {
  json::array rules;
  for (const auto& rule : policy.rules) {
    json::object o;
    if (!rule.id.empty()) o["id"] = rule.id;
    if (!rule.description.empty()) o["description"] = rule.description;
    switch (rule.subject.kind) {
      case Subject::Kind::principal:
        o["subject"] = json::object{{"principal", rule.subject.name}};
        break;
      case Subject::Kind::role:
        o["subject"] = json::object{{"role", rule.subject.name}};
        break;
      case Subject::Kind::system:
        o["subject"] = json::object{{"system", rule.subject.name}};
        break;
      case Subject::Kind::any:
        o["subject"] = json::object{{"any", true}};
        break;
    }
    o["effect"] = rule.effect == Effect::allow ? "allow" : "deny";
    json::array operations;
    for (const auto op : rule.operations) operations.emplace_back(to_string(op));
    o["operations"] = std::move(operations);
    if (rule.every_affordance) {
      o["affordances"] = kEvery;
    } else {
      json::array affordances;
      for (const auto& name : rule.affordances) affordances.emplace_back(name);
      o["affordances"] = std::move(affordances);
    }
    rules.push_back(std::move(o));
  }
  return json::object{{"rules", std::move(rules)}};
}

Decision decide(const Policy& policy, const SubjectFacts& who, Operation op, std::string_view affordance) {
  std::optional<std::size_t> allow;
  const auto decided = [&](std::size_t index, bool allowed) {
    return Decision{
        .allowed = allowed,
        .rule = index,
        .rule_id = policy.rules[index].id,
        .reason = fmt::format("{} {} {} on \"{}\"", rule_name(policy, index), allowed ? "allows" : "denies",
                              to_string(op), affordance),
    };
  };
  for (std::size_t i = 0; i < policy.rules.size(); ++i) {
    const auto& rule = policy.rules[i];
    if (!covers(rule, op, affordance) || !matches(rule.subject, who)) continue;
    if (rule.effect == Effect::deny) return decided(i, false);
    if (!allow) allow = i;
  }
  if (allow) return decided(*allow, true);
  Decision denied;
  denied.reason = "no rule matched (default deny)";
  return denied;
}

namespace {

template <class Td>
Result<void> characteristics(const Td& td, Operation op, std::string_view affordance) {
  const auto [kind, noun] = affordance_kind(op);
  const auto o = find_affordance(td, kind, affordance);
  if (!o) {
    for (const auto op_kind : {Operation::readproperty, Operation::invokeaction, Operation::subscribeevent}) {
      const auto [other_kind, other_noun] = affordance_kind(op_kind);
      if (other_kind != kind && find_affordance(td, other_kind, affordance)) {
        return fail(Errc::validation_failed,
                    fmt::format("\"{}\" is {} of the twin, not {}: {} does not apply to it", affordance,
                                with_article(other_noun), with_article(noun), to_string(op)));
      }
    }
    return fail(Errc::validation_failed, fmt::format("the twin has no {} \"{}\"", noun, affordance));
  }
  if (kind != "properties") return {};
  const bool read_only = flag(o, "readOnly");
  const bool write_only = flag(o, "writeOnly");
  switch (op) {
    case Operation::writeproperty:
      if (read_only) {
        return fail(Errc::forbidden,
                    fmt::format("property \"{}\" is readOnly: it cannot be written", affordance));
      }
      break;
    case Operation::readproperty:
      if (write_only) {
        return fail(Errc::forbidden,
                    fmt::format("property \"{}\" is writeOnly: it cannot be read", affordance));
      }
      break;
    case Operation::observeproperty:
      if (write_only) {
        return fail(Errc::forbidden,
                    fmt::format("property \"{}\" is writeOnly: it cannot be observed", affordance));
      }
      if (!flag(o, "observable")) {
        return fail(Errc::forbidden,
                    fmt::format("property \"{}\" is not observable (its Thing Description does not mark it "
                                "\"observable\": true)",
                                affordance));
      }
      break;
    default:
      break;
  }
  return {};
}

}  // namespace

Result<void> check_characteristics(const json::object& td, Operation op, std::string_view affordance) {
  return characteristics(td, op, affordance);
}

Result<void> check_characteristics(packed::Ref td, Operation op, std::string_view affordance) {
  return characteristics(td, op, affordance);
}

Result<void> check_policy_affordances(const Policy& policy, const json::object& td,
                                      std::string_view pointer_base) {
  std::vector<FieldError> errors;
  const auto rules_at = pointer_append(pointer_base, "rules");
  for (std::size_t i = 0; i < policy.rules.size(); ++i) {
    const auto& rule = policy.rules[i];
    if (rule.every_affordance) continue;
    const auto at = pointer_append(pointer_append(rules_at, std::to_string(i)), "affordances");
    for (std::size_t j = 0; j < rule.affordances.size(); ++j) {
      const auto& name = rule.affordances[j];
      std::vector<std::string_view> nouns;
      bool found = false;
      for (const auto op : rule.operations) {
        const auto [kind, noun] = affordance_kind(op);
        if (find_affordance(td, kind, name) != nullptr) found = true;
        if (std::find(nouns.begin(), nouns.end(), noun) == nouns.end()) nouns.push_back(noun);
      }
      if (found) continue;
      std::string what;
      for (std::size_t k = 0; k < nouns.size(); ++k) {
        if (k > 0) what += k + 1 == nouns.size() ? " or " : ", ";
        what += nouns[k];
      }
      errors.push_back({pointer_append(at, std::to_string(j)),
                        fmt::format("the twin has no {} \"{}\" (for the rule's operations)", what, name)});
    }
  }
  if (errors.empty()) return {};
  return validation_result(std::move(errors));
}

}  // namespace twinbridge::core
