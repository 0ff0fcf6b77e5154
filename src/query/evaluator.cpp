#include "query/evaluator.hpp"

#include <algorithm>
#include <cmath>
#include <compare>
#include <optional>
#include <type_traits>

#include "core/text.hpp"
#include "query/utf8.hpp"

namespace twinbridge::query {

namespace json = boost::json;
namespace packed = core::packed;

namespace {

constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();

// How many distinct patterns from document strings one evaluation keeps compiled.
constexpr std::size_t kRegexCacheSize = 16;

using packed::Ref;

// How the evaluator reads a node of either representation: a boost::json value (a null pointer is no node)
// or packed bytes (a null Ref is no node).
bool present(const json::value* n) {
  return n != nullptr;
}
bool present(Ref n) {
  return static_cast<bool>(n);
}
std::string_view string_of(const json::value* n) {
  return {n->get_string().data(), n->get_string().size()};
}
std::string_view string_of(Ref n) {
  return n.get_string();
}
std::size_t size_of(const json::value* n) {
  if (n->is_array()) return n->get_array().size();
  if (n->is_object()) return n->get_object().size();
  return 0;
}
std::size_t size_of(Ref n) {
  return n.size();
}
const json::value* member_of(const json::value* n, std::string_view name) {
  return n->is_object() ? n->get_object().if_contains(name) : nullptr;
}
Ref member_of(Ref n, std::string_view name) {
  return n.find(name);
}

// Calls visit(child, name, index) for each element or member value of node, in document order, until visit
// returns false.
template <class Visit>
void for_each_child(const json::value* node, Visit&& visit) {
  if (node->is_array()) {
    const json::array& array = node->get_array();
    for (std::size_t i = 0; i < array.size(); ++i) {
      if (!visit(&array[i], std::string_view(), i)) return;
    }
  } else if (node->is_object()) {
    for (const auto& member : node->get_object()) {
      if (!visit(&member.value(), std::string_view(member.key().data(), member.key().size()), 0)) return;
    }
  }
}
template <class Visit>
void for_each_child(Ref node, Visit&& visit) {
  if (node.is_array()) {
    std::size_t i = 0;
    for (const Ref e : node.elements()) {
      if (!visit(e, std::string_view(), i++)) return;
    }
  } else if (node.is_object()) {
    for (const auto& [key, value] : node.members()) {
      if (!visit(value, key, 0)) return;
    }
  }
}

// The elements of an array node, for random access (a packed array is read front to back).
void elements_of(const json::value* n, std::vector<const json::value*>& out) {
  out.clear();
  for (const auto& e : n->get_array()) out.push_back(&e);
}
void elements_of(Ref n, std::vector<Ref>& out) {
  out.clear();
  for (const Ref e : n.elements()) out.push_back(e);
}

// The member `name` of an object node and its name as the document holds it (paths keep a view of it).
std::pair<std::string_view, const json::value*> named_member(const json::value* n, std::string_view name) {
  const json::object& object = n->get_object();
  const auto it = object.find(name);
  if (it == object.end()) return {};
  return {std::string_view(it->key().data(), it->key().size()), &it->value()};
}
std::pair<std::string_view, Ref> named_member(Ref n, std::string_view name) {
  for (const auto& [key, value] : n.members()) {
    if (key == name) return {key, value};
  }
  return {};
}

// Element i of an array node, or no node.
const json::value* element_of(const json::value* n, std::size_t i) {
  return i < n->get_array().size() ? &n->get_array()[i] : nullptr;
}
Ref element_of(Ref n, std::size_t i) {
  return n.at(i);
}

bool is_number(json::kind k) {
  return k == json::kind::int64 || k == json::kind::uint64 || k == json::kind::double_;
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

// A JSON number of any kind.
struct Number {
  json::kind kind;
  std::int64_t i = 0;
  std::uint64_t u = 0;
  double d = 0;
};

template <class N>
Number number_of(N n) {
  Number out{n->kind()};
  if (n->is_int64()) out.i = n->get_int64();
  if (n->is_uint64()) out.u = n->get_uint64();
  if (n->is_double()) out.d = n->get_double();
  return out;
}

// Two JSON numbers of any kinds, compared as the mathematical values they denote.
std::partial_ordering compare_numbers(const Number& a, const Number& b) {
  const auto dbl = json::kind::double_;
  const auto i64 = json::kind::int64;
  const auto u64 = json::kind::uint64;
  if (a.kind == dbl && b.kind == dbl) return a.d <=> b.d;
  if (a.kind == dbl) return reverse(compare_numbers(b, a));
  if (b.kind == dbl)
    return a.kind == i64 ? compare_integer_double(a.i, b.d) : compare_integer_double(a.u, b.d);
  if (a.kind == i64 && b.kind == i64) return a.i <=> b.i;
  if (a.kind == u64 && b.kind == u64) return a.u <=> b.u;
  if (a.kind == i64) return a.i < 0 ? std::partial_ordering::less : static_cast<std::uint64_t>(a.i) <=> b.u;
  return reverse(compare_numbers(b, a));
}

// A node of the document or a value of the query, read alike: packed::Ref has the same accessors as a
// boost::json value, reached through ->.
struct Arrow {
  Ref ref;
  const Ref* operator->() const { return &ref; }
};
const json::value* arrow(const json::value* n) {
  return n;
}
Arrow arrow(Ref n) {
  return {n};
}

// RFC 9535 section 2.3.5.2.2 equality: numbers by value, arrays element-wise, objects by member set.
// Iterative, so two deep values cannot exhaust the stack; each pair compared is a node visited.
template <class A, class B>
bool values_equal(A first, B second, QueryBudget& budget) {
  std::vector<std::pair<A, B>> pending{{first, second}};
  std::vector<A> xs;
  std::vector<B> ys;
  while (!pending.empty()) {
    if (!budget.visit()) return false;
    const A a = pending.back().first;  // not a structured binding: a lambda below captures these
    const B b = pending.back().second;
    pending.pop_back();
    const auto x = arrow(a);
    const auto y = arrow(b);
    if (is_number(x->kind()) && is_number(y->kind())) {
      if (compare_numbers(number_of(x), number_of(y)) != 0) return false;
      continue;
    }
    if (x->kind() != y->kind()) return false;
    switch (x->kind()) {
      case json::kind::null:
        break;
      case json::kind::bool_:
        if (x->get_bool() != y->get_bool()) return false;
        break;
      case json::kind::string:
        if (string_of(a) != string_of(b)) return false;
        break;
      case json::kind::array: {
        if (size_of(a) != size_of(b)) return false;
        elements_of(a, xs);
        elements_of(b, ys);
        for (std::size_t i = 0; i < xs.size(); ++i) pending.emplace_back(xs[i], ys[i]);
        break;
      }
      case json::kind::object: {
        if (size_of(a) != size_of(b)) return false;
        bool all = true;
        for_each_child(a, [&](A value, std::string_view name, std::size_t) {
          const B other = member_of(b, name);
          if (!present(other)) {
            all = false;
            return false;
          }
          pending.emplace_back(value, other);
          return true;
        });
        if (!all) return false;
        break;
      }
      default:
        return false;  // numbers were handled above
    }
  }
  return true;
}

// Applies f to what a ValueType result holds (a node, or a value of the query); Nothing is handled before.
template <class V, class F>
decltype(auto) with_value(const V& v, F&& f) {
  if (const auto* literal = v.literal()) return f(literal);
  return f(v.node());
}

// RFC 9535 '<': numbers by value, strings by Unicode scalar values (which byte order of UTF-8 preserves), and
// nothing else is ordered.
template <class V>
bool less_than(const V& left, const V& right) {
  if (left.nothing() || right.nothing()) return false;
  return with_value(left, [&](auto a) {
    return with_value(right, [&](auto b) {
      const auto x = arrow(a);
      const auto y = arrow(b);
      if (is_number(x->kind()) && is_number(y->kind()))
        return compare_numbers(number_of(x), number_of(y)) < 0;
      if (x->is_string() && y->is_string()) return string_of(a) < string_of(b);
      return false;
    });
  });
}

template <class V>
bool equal(const V& left, const V& right, QueryBudget& budget) {
  if (left.nothing() || right.nothing()) return left.nothing() && right.nothing();  // Nothing equals Nothing
  return with_value(
      left, [&](auto a) { return with_value(right, [&](auto b) { return values_equal(a, b, budget); }); });
}

template <class V>
bool compare(CompareOp op, const V& a, const V& b, QueryBudget& budget) {
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

// A name step of a normalized path: ['name'], escaped as RFC 9535 section 2.7 says.
void append_name(std::string& out, std::string_view name) {
  out += '[';
  core::append_quoted(out, name, '\'');
  out += ']';
}

}  // namespace

template <class Node>
typename BasicEvaluator<Node>::NodeRef BasicEvaluator<Node>::member(NodeRef parent, std::string_view name,
                                                                    Node value) {
  if (parent.path == kNoPath) return {value, kNoPath};
  steps_.push_back({.parent = parent.path, .is_name = true, .name = name});
  return {value, static_cast<std::uint32_t>(steps_.size())};
}

template <class Node>
typename BasicEvaluator<Node>::NodeRef BasicEvaluator<Node>::element(NodeRef parent, std::size_t index,
                                                                     Node value) {
  if (parent.path == kNoPath) return {value, kNoPath};
  steps_.push_back({.parent = parent.path, .is_name = false, .index = index});
  return {value, static_cast<std::uint32_t>(steps_.size())};
}

template <class Node>
std::string BasicEvaluator<Node>::normalized_path(std::uint32_t path) const {
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

template <class Node>
typename BasicEvaluator<Node>::NodeRef BasicEvaluator<Node>::start_of(const PathQuery& query,
                                                                      NodeRef current) const {
  return query.absolute ? NodeRef{root_, kNoPath} : current;
}

template <class Node>
void BasicEvaluator<Node>::select(const PathQuery& query, NodeRef start, std::size_t limit,
                                  std::vector<NodeRef>& out) {
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

template <class Node>
void BasicEvaluator<Node>::apply_segment(const Segment& segment, NodeRef node, std::size_t limit,
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
    const bool array = arrow(current.value)->is_array();
    for_each_child(current.value, [&](Node child, std::string_view name, std::size_t index) {
      children.push_back(array ? element(current, index, child) : member(current, name, child));
      return visit();
    });
    if (!alive()) return;
    to_visit.insert(to_visit.end(), children.rbegin(), children.rend());
  }
}

template <class Node>
void BasicEvaluator<Node>::apply_selector(const Selector& selector, NodeRef node, std::size_t limit,
                                          std::vector<NodeRef>& out) {
  const Node value = node.value;
  const bool array = arrow(value)->is_array();
  switch (selector.kind) {
    case SelectorKind::name:
      if (arrow(value)->is_object() && visit()) {
        if (const auto [name, child] = named_member(value, selector.name); present(child))
          out.push_back(member(node, name, child));
      }
      return;
    case SelectorKind::wildcard:
      for_each_child(value, [&](Node child, std::string_view name, std::size_t index) {
        out.push_back(array ? element(node, index, child) : member(node, name, child));
        return visit() && out.size() < limit;
      });
      return;
    case SelectorKind::index:
      if (array) {
        const auto size = static_cast<std::int64_t>(size_of(value));
        const std::int64_t index = selector.index < 0 ? size + selector.index : selector.index;
        if (index >= 0 && index < size && visit()) {
          const auto i = static_cast<std::size_t>(index);
          out.push_back(element(node, i, element_of(value, i)));
        }
      }
      return;
    case SelectorKind::slice: {
      if (!array || selector.step == 0) return;
      auto& elements = elements_;
      elements_of(value, elements);
      const auto size = static_cast<std::int64_t>(elements.size());
      const std::int64_t step = selector.step;
      const auto normalize = [size](std::int64_t i) { return i >= 0 ? i : size + i; };
      const auto take = [&](std::int64_t i) {
        out.push_back(element(node, static_cast<std::size_t>(i), elements[static_cast<std::size_t>(i)]));
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
      for_each_child(value, [&](Node child, std::string_view name, std::size_t index) {
        if (!visit()) return false;
        if (!test(*selector.filter, {child, kNoPath})) return alive();
        out.push_back(array ? element(node, index, child) : member(node, name, child));
        return alive() && out.size() < limit;
      });
      return;
  }
}

template <class Node>
Node BasicEvaluator<Node>::select_singular(const PathQuery& query, NodeRef current) const {
  Node node = start_of(query, current).value;
  for (const Segment& segment : query.segments) {
    const Selector& selector = segment.selectors.front();
    if (selector.kind == SelectorKind::name) {
      node = member_of(node, selector.name);
    } else if (arrow(node)->is_array()) {
      const auto size = static_cast<std::int64_t>(size_of(node));
      const std::int64_t index = selector.index < 0 ? size + selector.index : selector.index;
      node = index >= 0 && index < size ? element_of(node, static_cast<std::size_t>(index)) : Node{};
    } else {
      node = Node{};
    }
    if (!present(node)) return Node{};
  }
  return node;
}

template <class Node>
bool BasicEvaluator<Node>::test(const Expr& expr, NodeRef current) {
  switch (expr.kind) {
    case ExprKind::exists: {
      const PathQuery& query = expr.operands.front().query;
      if (query.singular) return present(select_singular(query, current));
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
      return compare(expr.op, left, right, *budget_);
    }
    case ExprKind::function:
      return call_logical(expr, current);
    case ExprKind::literal:
    case ExprKind::query:
      break;  // the parser turns these into comparisons or existence tests
  }
  return false;
}

template <class Node>
typename BasicEvaluator<Node>::Value BasicEvaluator<Node>::evaluate_value(const Expr& expr, NodeRef current) {
  switch (expr.kind) {
    case ExprKind::literal:
      return Value::of_literal(&expr.literal);
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
      if (value.nothing()) return Value();
      return with_value(value, [](auto v) {
        const auto x = arrow(v);
        if (x->is_string()) return Value(utf8::count_code_points(string_of(v)));
        if (x->is_array() || x->is_object()) return Value(size_of(v));
        return Value();
      });
    }
    case FunctionKind::count: {
      if (argument.query.singular)
        return Value(static_cast<std::size_t>(present(select_singular(argument.query, current))));
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

namespace {

// The text of a ValueType result that is a string, or nothing.
template <class V>
std::optional<std::string_view> text_of(const V& v) {
  if (v.nothing()) return std::nullopt;
  return with_value(v, [](auto n) -> std::optional<std::string_view> {
    if (!arrow(n)->is_string()) return std::nullopt;
    return string_of(n);
  });
}

}  // namespace

template <class Node>
bool BasicEvaluator<Node>::call_logical(const Expr& call, NodeRef current) {
  const Value subject = evaluate_value(call.operands[0], current);
  const auto text = text_of(subject);
  if (!text) return false;
  const IRegexp* regex = nullptr;
  if (call.constant_pattern) {
    if (call.regex) regex = &*call.regex;
  } else {
    const Value pattern = evaluate_value(call.operands[1], current);
    if (const auto p = text_of(pattern)) regex = regex_for(*p);
  }
  if (regex == nullptr) return false;
  const std::string_view subject_text = *text;
  return call.function == FunctionKind::match ? regex->full_match(subject_text, budget_)
                                              : regex->search(subject_text, budget_);
}

template <class Node>
const IRegexp* BasicEvaluator<Node>::regex_for(std::string_view pattern) {
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

template class BasicEvaluator<const json::value*>;
template class BasicEvaluator<packed::Ref>;

}  // namespace twinbridge::query
