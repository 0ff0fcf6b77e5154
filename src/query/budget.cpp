#include "query/budget.hpp"

#include <fmt/format.h>

#include <limits>
#include <utility>

namespace twinbridge::query {

namespace {

constexpr auto kNoLimit = std::numeric_limits<std::uint64_t>::max();

}  // namespace

std::string_view to_string(BudgetLimit limit) {
  switch (limit) {
    case BudgetLimit::none:
      return "none";
    case BudgetLimit::nodes_visited:
      return "nodes_visited";
    case BudgetLimit::nodes_selected:
      return "nodes_selected";
    case BudgetLimit::output_bytes:
      return "output_bytes";
    case BudgetLimit::regex_steps:
      return "regex_steps";
    case BudgetLimit::time:
      return "time";
    case BudgetLimit::cancelled:
      return "cancelled";
  }
  return "none";
}

QueryBudget::QueryBudget(QueryLimits limits, std::shared_ptr<const std::atomic<bool>> cancelled, Now now)
    : limits_(limits), cancelled_(std::move(cancelled)), now_(std::move(now)) {
  const auto start = now_ ? now_() : std::chrono::steady_clock::now();
  const auto room = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::time_point::max() - start);
  deadline_ =
      limits_.max_time >= room ? std::chrono::steady_clock::time_point::max() : start + limits_.max_time;
}

QueryBudget QueryBudget::unlimited() {
  return QueryBudget(QueryLimits{kNoLimit, kNoLimit, kNoLimit, kNoLimit, std::chrono::milliseconds::max()});
}

bool QueryBudget::check() {
  since_check_ = 0;
  if (exhausted_ != BudgetLimit::none) return false;
  if (cancelled_ && cancelled_->load(std::memory_order_relaxed)) return exhaust(BudgetLimit::cancelled);
  if (deadline_ != std::chrono::steady_clock::time_point::max() &&
      (now_ ? now_() : std::chrono::steady_clock::now()) > deadline_) {
    return exhaust(BudgetLimit::time);
  }
  return true;
}

bool QueryBudget::exhaust(BudgetLimit which) {
  if (exhausted_ == BudgetLimit::none) {
    exhausted_ = which;
    if (observer_) observer_(which);
  }
  return false;
}

core::Error QueryBudget::error(std::string_view parameter) const {
  std::string detail;
  switch (exhausted_) {
    case BudgetLimit::none:
      return core::Error(core::Errc::internal, "a query budget was reported exhausted while it was not");
    case BudgetLimit::cancelled:
      return core::Error(core::Errc::unavailable, "the client went away; the query was stopped");
    case BudgetLimit::nodes_visited:
      detail = fmt::format(
          "the query was stopped after visiting {} nodes (query.max_nodes_visited); narrow it: select by "
          "member names instead of wildcards and descendant segments (..), or restrict the collection first "
          "(e.g. by system)",
          limits_.max_nodes_visited);
      break;
    case BudgetLimit::nodes_selected:
      detail = fmt::format(
          "the query selects more than {} nodes (query.max_nodes_selected); select fewer: name the members "
          "you need, filter with [?...], or use a slice such as [0:100]",
          limits_.max_nodes_selected);
      break;
    case BudgetLimit::output_bytes:
      detail = fmt::format(
          "the answer would be larger than {} bytes (query.max_output_bytes); select smaller parts of each "
          "document (e.g. $[*].id instead of $[*]) or fewer documents",
          limits_.max_output_bytes);
      break;
    case BudgetLimit::regex_steps:
      detail = fmt::format(
          "the regular expressions of match() and search() took more than {} steps (query.max_regex_steps); "
          "use shorter patterns (fewer and smaller {{n,m}} repetitions) or apply them to shorter members",
          limits_.max_regex_steps);
      break;
    case BudgetLimit::time:
      detail = fmt::format(
          "the query ran longer than {} ms (query.max_time_ms) and was stopped; narrow it, or restrict the "
          "collection first (e.g. by system)",
          limits_.max_time.count());
      break;
  }
  core::Error e(core::Errc::too_costly, detail);
  e.fields.push_back({std::string(parameter), std::move(detail), core::FieldIn::query});
  return e;
}

}  // namespace twinbridge::query
