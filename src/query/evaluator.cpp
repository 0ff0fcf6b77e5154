#include "query/evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <compare>
#include <cstdio>
#include <type_traits>

#include "query/utf8.hpp"

namespace twinbridge::query {

namespace json = boost::json;

namespace {

constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

// How many distinct patterns from document strings one evaluation keeps compiled.
constexpr std::size_t kRegexCacheSize = 16;

std::string_view view(const json::string& s) {
  return {s.data(), s.size()};
}
std::string_view view(json::string_view s) {
  return {s.data(), s.size()};
}

bool is_number(const json::value& v) {
  return v.is_int64() || v.is_uint64() || v.is_double();
}

// An integer against a double, exactly (converting the integer to double could round).
template <class Integer>
std::partial_ordering compare_integer_double(Integer i, double d) {
  if (std::isnan(d)) return std::partial_ordering::unordered;
  constexpr double kTwo63 = 9223372036854775808.0;
  constexpr double kTwo64 = 18446744073709551616.0;
  if (d >= kTwo64) return std::partial_ordering::less;
  if (d < -kTwo63) return std::partial_ordering::greater;
  const double whole = std::trunc(d);
  const double fraction = d - whole;
  std::partial_ordering by_whole = std::partial_ordering::equivalent;
  if (whole >= kTwo63) {
    const auto w = static_cast<std::uint64_t>(whole);
    if constexpr (std::is_signed_v<Integer>) {
      by_whole = std::partial_ordering::less;
    } else {
      by_whole = i <=> w;
    }
  } else {
    const auto w = static_cast<std::int64_t>(whole);
    if constexpr (std::is_signed_v<Integer>) {
      by_whole = i <=> w;
    } else {
      by_whole = w < 0 ? std::partial_ordering::greater : i <=> static_cast<std::uint64_t>(w);
    }
  }
  if (by_whole != 0) return by_whole;
  if (fraction > 0) return std::partial_ordering::less;
  if (fraction < 0) return std::partial_ordering::greater;
  return std::partial_ordering::equivalent;
}

std::partial_ordering reverse(std::partial_ordering order) {
  return 0 <=> order;
}

// Two JSON numbers of any kinds, compared as the mathematical values they denote.
std::partial_ordering compare_numbers(const json::value& a, const json::value& b) {
  if (a.is_double() && b.is_double()) return a.get_double() <=> b.get_double();
  if (a.is_double()) return reverse(compare_numbers(b, a));
  if (b.is_double()) {
    return a.is_int64() ? compare_integer_double(a.get_int64(), b.get_double())
                        : compare_integer_double(a.get_uint64(), b.get_double());
  }
  if (a.is_int64() && b.is_int64()) return a.get_int64() <=> b.get_int64();
  if (a.is_uint64() && b.is_uint64()) return a.get_uint64() <=> b.get_uint64();
  if (a.is_int64()) {  // int64 against uint64
    const std::int64_t i = a.get_int64();
    return i < 0 ? std::partial_ordering::less : static_cast<std::uint64_t>(i) <=> b.get_uint64();
  }
  return reverse(compare_numbers(b, a));
}

// RFC 9535 section 2.3.5.2.2 equality: numbers by value, arrays element-wise, objects by member set.
// Iterative, so two deep values cannot exhaust the stack; each pair compared is a node visited.
bool values_equal(const json::value& first, const json::value& second, QueryBudget& budget) {
  std::vector<std::pair<const json::value*, const json::value*>> pending{{&first, &second}};
  while (!pending.empty()) {
    if (!budget.visit()) return false;
    const auto [a, b] = pending.back();
    pending.pop_back();
    if (is_number(*a) && is_number(*b)) {
      if (compare_numbers(*a, *b) != 0) return false;
      continue;
    }
    if (a->kind() != b->kind()) return false;
    switch (a->kind()) {
      case json::kind::null:
        break;
      case json::kind::bool_:
        if (a->get_bool() != b->get_bool()) return false;
        break;
      case json::kind::string:
        if (a->get_string() != b->get_string()) return false;
        break;
      case json::kind::array: {
        const json::array& x = a->get_array();
        const json::array& y = b->get_array();
        if (x.size() != y.size()) return false;
        for (std::size_t i = 0; i < x.size(); ++i) pending.emplace_back(&x[i], &y[i]);
        break;
      }
      case json::kind::object: {
        const json::object& x = a->get_object();
        const json::object& y = b->get_object();
        if (x.size() != y.size()) return false;
        for (const auto& member : x) {
          const json::value* other = y.if_contains(member.key());
          if (other == nullptr) return false;
          pending.emplace_back(&member.value(), other);
        }
        break;
      }
      default:
        return false;  // numbers were handled above
    }
  }
  return true;
}

// RFC 9535 '<': numbers by value, strings by Unicode scalar values (which byte order of UTF-8 preserves), and
// nothing else is ordered. A null pointer is Nothing.
bool less_than(const json::value* a, const json::value* b) {
  if (a == nullptr || b == nullptr) return false;
  if (is_number(*a) && is_number(*b)) return compare_numbers(*a, *b) < 0;
  if (a->is_string() && b->is_string()) return view(a->get_string()) < view(b->get_string());
  return false;
}

bool equal(const json::value* a, const json::value* b, QueryBudget& budget) {
  if (a == nullptr || b == nullptr) return a == b;  // Nothing equals only Nothing
  return values_equal(*a, *b, budget);
}

bool compare(CompareOp op, const json::value* a, const json::value* b, QueryBudget& budget) {
  switch (op) {
    case CompareOp::eq:
      return equal(a, b, budget);
    case CompareOp::ne:
      return !equal(a, b, budget);
    case CompareOp::lt:
      return less_than(a, b);
    case CompareOp::le:
      return less_than(a, b) || equal(a, b, budget);
    case CompareOp::gt:
      return less_than(b, a);
    case CompareOp::ge:
      return less_than(b, a) || equal(a, b, budget);
  }
  return false;
}

// Calls visit(child) for each element or member value of node, in document order, until visit returns false.
template <class Visit>
void for_each_child(const json::value& node, Visit&& visit) {
  if (node.is_array()) {
    const json::array& array = node.get_array();
    for (std::size_t i = 0; i < array.size(); ++i) {
      if (!visit(array[i], std::string_view(), i)) return;
    }
  } else if (node.is_object()) {
    for (const auto& member : node.get_object()) {
      if (!visit(member.value(), view(member.key()), 0)) return;
    }
  }
}

void append_name(std::string& out, std::string_view name) {
  out += "['";
  for (const char c : name) {
    switch (c) {
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\'':
        out += "\\'";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out.push_back(c);
        }
    }
  }
  out += "']";
}

}  // namespace

NodeRef Evaluator::member(NodeRef parent, std::string_view name, const json::value& value) {
  if (parent.path == kNoPath) return {&value, kNoPath};
  steps_.push_back({.parent = parent.path, .is_name = true, .name = name});
  return {&value, static_cast<std::uint32_t>(steps_.size())};
}

NodeRef Evaluator::element(NodeRef parent, std::size_t index, const json::value& value) {
  if (parent.path == kNoPath) return {&value, kNoPath};
  steps_.push_back({.parent = parent.path, .is_name = false, .index = index});
  return {&value, static_cast<std::uint32_t>(steps_.size())};
}

std::string Evaluator::normalized_path(std::uint32_t path) const {
  std::vector<const PathStep*> steps;
  for (std::uint32_t id = path; id != kRootPath && id != kNoPath; id = steps_[id - 1].parent) {
    steps.push_back(&steps_[id - 1]);
  }
  std::string out = "$";
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    if ((*it)->is_name) {
      append_name(out, (*it)->name);
    } else {
      out += '[';
      out += std::to_string((*it)->index);
      out += ']';
    }
  }
  return out;
}

NodeRef Evaluator::start_of(const PathQuery& query, NodeRef current) const {
  return query.absolute ? NodeRef{root_, kNoPath} : current;
}

void Evaluator::select(const PathQuery& query, NodeRef start, std::size_t limit, std::vector<NodeRef>& out) {
  if (limit == 0) return;
  if (query.segments.empty()) {
    out.push_back(start);
    return;
  }
  // Depth-first over (node, next segment): the order of the nested loops of RFC 9535 section 2.1.2, and it
  // lets a limited selection stop as soon as it has enough nodes.
  if (depth_ == scratch_.size()) scratch_.emplace_back();
  Scratch& scratch = scratch_[depth_];
  struct Level {
    std::size_t& depth;
    explicit Level(std::size_t& d) : depth(d) { ++depth; }
    ~Level() { --depth; }
  } level(depth_);
  auto& pending = scratch.pending;
  auto& children = scratch.children;
  pending.clear();
  pending.push_back({start, 0});
  std::size_t produced = 0;
  const std::size_t last = query.segments.size() - 1;
  const bool outermost = depth_ == 1;  // the nodes of the query itself, not of a filter's subquery
  while (!pending.empty() && alive()) {
    const Pending item = pending.back();
    pending.pop_back();
    children.clear();
    if (item.segment == last) {
      // The outermost query never needs more nodes than its budget may still select (and one more, which
      // exhausts it): a huge union stops after that many instead of materializing all of its nodes first.
      std::size_t wanted = limit - produced;
      if (outermost && budget_->selectable() < wanted)
        wanted = static_cast<std::size_t>(budget_->selectable()) + 1;
      apply_segment(query.segments[item.segment], item.node, wanted, children);
      if (outermost && !budget_->select(children.size())) return;
      for (const NodeRef& child : children) {
        out.push_back(child);
        if (++produced == limit) return;
      }
      continue;
    }
    apply_segment(query.segments[item.segment], item.node, kUnlimited, children);
    for (auto it = children.rbegin(); it != children.rend(); ++it) pending.push_back({*it, item.segment + 1});
  }
}

void Evaluator::apply_segment(const Segment& segment, NodeRef node, std::size_t limit,
                              std::vector<NodeRef>& out) {
  if (!segment.descendant) {
    for (const Selector& selector : segment.selectors) {
      apply_selector(selector, node, limit, out);
      if (out.size() >= limit || !alive()) return;
    }
    return;
  }
  // The node, then its descendants in document order, each before its own descendants.
  std::vector<NodeRef> to_visit{node};
  std::vector<NodeRef> children;
  while (!to_visit.empty()) {
    const NodeRef current = to_visit.back();
    to_visit.pop_back();
    for (const Selector& selector : segment.selectors) {
      apply_selector(selector, current, limit, out);
      if (out.size() >= limit || !alive()) return;
    }
    children.clear();
    for_each_child(*current.value, [&](const json::value& child, std::string_view name, std::size_t index) {
      children.push_back(current.value->is_array() ? element(current, index, child)
                                                   : member(current, name, child));
      return visit();
    });
    if (!alive()) return;
    to_visit.insert(to_visit.end(), children.rbegin(), children.rend());
  }
}

void Evaluator::apply_selector(const Selector& selector, NodeRef node, std::size_t limit,
                               std::vector<NodeRef>& out) {
  const json::value& value = *node.value;
  switch (selector.kind) {
    case SelectorKind::name:
      if (value.is_object() && visit()) {
        const json::object& object = value.get_object();
        const auto it = object.find(selector.name);
        if (it != object.end()) out.push_back(member(node, view(it->key()), it->value()));
      }
      return;
    case SelectorKind::wildcard:
      for_each_child(value, [&](const json::value& child, std::string_view name, std::size_t index) {
        out.push_back(value.is_array() ? element(node, index, child) : member(node, name, child));
        return visit() && out.size() < limit;
      });
      return;
    case SelectorKind::index:
      if (value.is_array()) {
        const json::array& array = value.get_array();
        const auto size = static_cast<std::int64_t>(array.size());
        const std::int64_t index = selector.index < 0 ? size + selector.index : selector.index;
        if (index >= 0 && index < size && visit()) {
          out.push_back(
              element(node, static_cast<std::size_t>(index), array[static_cast<std::size_t>(index)]));
        }
      }
      return;
    case SelectorKind::slice: {
      if (!value.is_array() || selector.step == 0) return;
      const json::array& array = value.get_array();
      const auto size = static_cast<std::int64_t>(array.size());
      const std::int64_t step = selector.step;
      const auto normalize = [size](std::int64_t i) { return i >= 0 ? i : size + i; };
      const auto take = [&](std::int64_t i) {
        out.push_back(element(node, static_cast<std::size_t>(i), array[static_cast<std::size_t>(i)]));
        return visit() && out.size() < limit;
      };
      if (step > 0) {
        const std::int64_t lower =
            std::clamp<std::int64_t>(selector.start ? normalize(*selector.start) : 0, 0, size);
        const std::int64_t upper =
            std::clamp<std::int64_t>(selector.end ? normalize(*selector.end) : size, 0, size);
        for (std::int64_t i = lower; i < upper; i += step) {
          if (!take(i)) return;
        }
      } else {
        const std::int64_t upper =
            std::clamp<std::int64_t>(selector.start ? normalize(*selector.start) : size - 1, -1, size - 1);
        const std::int64_t lower =
            std::clamp<std::int64_t>(selector.end ? normalize(*selector.end) : -size - 1, -1, size - 1);
        for (std::int64_t i = upper; lower < i; i += step) {
          if (!take(i)) return;
        }
      }
      return;
    }
    case SelectorKind::filter:
      for_each_child(value, [&](const json::value& child, std::string_view name, std::size_t index) {
        if (!visit()) return false;
        if (!test(*selector.filter, {&child, kNoPath})) return alive();
        out.push_back(value.is_array() ? element(node, index, child) : member(node, name, child));
        return alive() && out.size() < limit;
      });
      return;
  }
}

const json::value* Evaluator::select_singular(const PathQuery& query, NodeRef current) const {
  const json::value* node = start_of(query, current).value;
  for (const Segment& segment : query.segments) {
    const Selector& selector = segment.selectors.front();
    if (selector.kind == SelectorKind::name) {
      node = node->is_object() ? node->get_object().if_contains(selector.name) : nullptr;
    } else if (node->is_array()) {
      const json::array& array = node->get_array();
      const auto size = static_cast<std::int64_t>(array.size());
      const std::int64_t index = selector.index < 0 ? size + selector.index : selector.index;
      node = index >= 0 && index < size ? &array[static_cast<std::size_t>(index)] : nullptr;
    } else {
      node = nullptr;
    }
    if (node == nullptr) return nullptr;
  }
  return node;
}

bool Evaluator::test(const Expr& expr, NodeRef current) {
  switch (expr.kind) {
    case ExprKind::exists: {
      const PathQuery& query = expr.operands.front().query;
      if (query.singular) return select_singular(query, current) != nullptr;
      std::vector<NodeRef> found;
      select(query, start_of(query, current), 1, found);
      return !found.empty();
    }
    case ExprKind::negation:
      return !test(expr.operands.front(), current);
    case ExprKind::conjunction:
      return std::all_of(expr.operands.begin(), expr.operands.end(),
                         [&](const Expr& operand) { return test(operand, current); });
    case ExprKind::disjunction:
      return std::any_of(expr.operands.begin(), expr.operands.end(),
                         [&](const Expr& operand) { return test(operand, current); });
    case ExprKind::comparison: {
      const Value left = evaluate_value(expr.operands[0], current);
      const Value right = evaluate_value(expr.operands[1], current);
      return compare(expr.op, left.get(), right.get(), *budget_);
    }
    case ExprKind::function:
      return call_logical(expr, current);
    case ExprKind::literal:
    case ExprKind::query:
      break;  // the parser turns these into comparisons or existence tests
  }
  return false;
}

Evaluator::Value Evaluator::evaluate_value(const Expr& expr, NodeRef current) {
  switch (expr.kind) {
    case ExprKind::literal:
      return Value(&expr.literal);
    case ExprKind::query:
      return Value(select_singular(expr.query, current));
    case ExprKind::function:
      break;
    default:
      return Value();
  }
  const Expr& argument = expr.operands.front();
  switch (expr.function) {
    case FunctionKind::length: {
      const Value value = evaluate_value(argument, current);
      const json::value* v = value.get();
      if (v == nullptr) return Value();
      if (v->is_string()) return Value(utf8::count_code_points(view(v->get_string())));
      if (v->is_array()) return Value(v->get_array().size());
      if (v->is_object()) return Value(v->get_object().size());
      return Value();
    }
    case FunctionKind::count: {
      if (argument.query.singular)
        return Value(static_cast<std::size_t>(select_singular(argument.query, current) != nullptr));
      std::vector<NodeRef> found;
      select(argument.query, start_of(argument.query, current), kUnlimited, found);
      return Value(found.size());
    }
    case FunctionKind::value: {
      if (argument.query.singular) return Value(select_singular(argument.query, current));
      std::vector<NodeRef> found;
      select(argument.query, start_of(argument.query, current), 2, found);
      return found.size() == 1 ? Value(found.front().value) : Value();
    }
    case FunctionKind::match:
    case FunctionKind::search:
      break;  // LogicalType: the parser keeps them out of value positions
  }
  return Value();
}

bool Evaluator::call_logical(const Expr& call, NodeRef current) {
  const Value subject = evaluate_value(call.operands[0], current);
  const json::value* text = subject.get();
  if (text == nullptr || !text->is_string()) return false;
  const IRegexp* regex = nullptr;
  if (call.constant_pattern) {
    if (call.regex) regex = &*call.regex;
  } else {
    const Value pattern = evaluate_value(call.operands[1], current);
    if (pattern.get() != nullptr && pattern.get()->is_string())
      regex = regex_for(view(pattern.get()->get_string()));
  }
  if (regex == nullptr) return false;
  const std::string_view subject_text = view(text->get_string());
  return call.function == FunctionKind::match ? regex->full_match(subject_text, budget_)
                                              : regex->search(subject_text, budget_);
}

const IRegexp* Evaluator::regex_for(std::string_view pattern) {
  auto it = std::find_if(regex_cache_.begin(), regex_cache_.end(),
                         [&](const auto& entry) { return entry.first == pattern; });
  if (it == regex_cache_.end()) {
    if (regex_cache_.size() >= kRegexCacheSize) regex_cache_.erase(regex_cache_.begin());
    auto compiled = IRegexp::compile(pattern);
    // Compiling costs about one step per instruction of the program (at most IRegexp::kMaxProgramSize).
    if (!budget_->regex(compiled ? compiled->program_size() : pattern.size())) return nullptr;
    regex_cache_.emplace_back(std::string(pattern),
                              compiled ? std::optional<IRegexp>(std::move(*compiled)) : std::nullopt);
    it = regex_cache_.end() - 1;
  }
  return it->second ? &*it->second : nullptr;
}

}  // namespace twinbridge::query
