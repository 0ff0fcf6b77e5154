#pragma once
// Access control of one twin (FGMV-29 8.3.5, DTAC): an ordered list of rules saying who may perform which
// W3C WoT operations on which of the twin's affordances, and the characteristics of the twin's TD, which
// bound whatever a policy allows (a readOnly property is never written).
//
// The policy document (parse_policy, to_json):
//   {"rules": [{"id"?: "night-shift", "description"?: "...",
//               "subject": {"principal": id} | {"role": name} | {"system": id} | {"any": true},
//               "effect": "allow" | "deny",
//               "operations": ["readproperty", "writeproperty", "observeproperty", "invokeaction",
//                              "subscribeevent"],
//               "affordances": ["temperature", ...] | "*"}]}
// A role is one of the role catalogue (core/access.hpp); {"system": id} stands for every principal that owns
// or belongs to that system; {"any": true} for every authenticated principal. "*" stands for every
// affordance of the twin, present and future. Operations are always listed: a new operation must be
// granted explicitly, never by a wildcard written before it existed. Thing-level operations
// (readallproperties, writeallproperties, ...) are not rules of their own: they are decided property by
// property, and the caller serves the properties the policy allows, so that one right has one rule.
//
// Decision (decide): an explicit deny that matches wins over any allow; otherwise the first matching allow
// allows; otherwise the operation is denied by default.
//
// The permission answer of a twin system (policy_from_permission_answer) seeds a policy with allow rules:
//   {"permissions": [{"id"?: ..., "description"?: ..., "subject": ..., "operations": [...],
//                     "affordances": [...] | "*"}]}
// Each permission becomes an allow rule, in order; an answer cannot deny (what it does not grant is denied
// by default).
//
// Thread-safety: Policy is a value; the functions are pure.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/packed_json.hpp"

namespace twinbridge::core {

inline constexpr std::size_t kMaxPolicyRules = 256;
inline constexpr std::size_t kMaxRuleAffordances = 256;
inline constexpr std::size_t kMaxRuleDescriptionBytes = 1024;

// The W3C WoT operations a policy decides (operation types of the TD 1.1 vocabulary).
enum class Operation { readproperty, writeproperty, observeproperty, invokeaction, subscribeevent };

std::string_view to_string(Operation op);  // the WoT name, e.g. "readproperty"
std::optional<Operation> parse_operation(std::string_view name);

struct Subject {
  enum class Kind { principal, role, system, any };
  Kind kind = Kind::any;
  std::string name;  // the principal id, role or system id; empty for any
};

enum class Effect { allow, deny };

struct PolicyRule {
  std::string id;  // unique in its policy; empty when the rule has none
  std::string description;
  Subject subject;
  Effect effect = Effect::allow;
  std::vector<Operation> operations;     // not empty, without repeats
  bool every_affordance = false;         // "*"
  std::vector<std::string> affordances;  // when not every_affordance: not empty, without repeats
};

struct Policy {
  std::vector<PolicyRule> rules;
};

// Reads a policy document. Strict: unknown members, unknown operations, unknown roles, invalid ids, empty
// or repeating lists, repeated rule ids and more than kMaxPolicyRules rules are errors. Errors:
// Errc::validation_failed with every violation's pointer (prefixed by `pointer_base`), e.g.
// "/rules/2/operations/0": "\"readproprety\" is not an operation; expected one of ...".
Result<Policy> parse_policy(const boost::json::value& doc, std::string_view pointer_base = "");

boost::json::object to_json(const Policy& policy);

// Reads a twin system's permission answer (see the top of this file) into a policy of allow rules. Errors
// as parse_policy's, with pointers such as "/permissions/0/subject".
Result<Policy> policy_from_permission_answer(const boost::json::value& answer,
                                             std::string_view pointer_base = "");

// Who asks.
struct SubjectFacts {
  PrincipalId principal;
  std::vector<std::string> roles;    // the principal's roles
  std::vector<std::string> systems;  // ids of the systems the principal owns or belongs to
};

struct Decision {
  bool allowed = false;
  std::optional<std::size_t> rule;  // index of the deciding rule; none for the default deny
  std::string rule_id;              // its id, when it has one
  // For logs and problem details: "rule 2 (\"no-writes\") denies writeproperty on \"power\"" or
  // "no rule matched (default deny)".
  std::string reason;
};

Decision decide(const Policy& policy, const SubjectFacts& who, Operation op, std::string_view affordance);

// Whether the twin's TD admits `op` on `affordance` at all: the affordance exists under the operation's kind
// (properties for the property operations, actions for invokeaction, events for subscribeevent), a readOnly
// property is not written, a writeOnly property is neither read nor observed, and only an observable
// property is observed. Errors: Errc::validation_failed when the TD has no such affordance of that kind;
// Errc::forbidden when its characteristics exclude the operation. The detail is a sentence for the user,
// e.g. "property \"joints\" is readOnly: it cannot be written".
Result<void> check_characteristics(const boost::json::object& td, Operation op, std::string_view affordance);
Result<void> check_characteristics(packed::Ref td, Operation op, std::string_view affordance);

// Whether every affordance a rule names exists in the TD under the kind of at least one of the rule's
// operations (a policy written for another TD, or with a misspelt name). Errors: Errc::validation_failed at
// "/rules/<i>/affordances/<j>" (prefixed by `pointer_base`) for each unknown name.
Result<void> check_policy_affordances(const Policy& policy, const boost::json::object& td,
                                      std::string_view pointer_base = "");

}  // namespace twinbridge::core
