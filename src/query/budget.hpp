#pragma once
// QueryBudget: what one query may cost. Every query a client sends (/search/jsonpath, `filter=` on every
// collection, later subscriptions) runs under one: nodes visited, nodes selected, bytes of output, regular
// expression steps, wall time, and whether its client is still there. The evaluator charges each unit of
// work as it does it; the first charge over a limit exhausts the budget, the evaluation stops at once (every
// loop of the evaluator checks it), and the caller answers error(), which names the limit and how to narrow
// the query, instead of a result.
//
// A budget belongs to one query and is charged by one thread at a time (the worker running the query); the
// cancellation flag it watches may be set from any thread. The clock and the cancellation flag are read at
// most every kCheckEvery units of work, so charging costs an addition and a comparison.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace twinbridge::query {

// The limits of one query; the defaults are those of the server's configuration (query.* settings).
struct QueryLimits {
  // Every node reached may be held in memory until its segment is done (16 bytes each): this also bounds the
  // memory of one query's intermediate nodelists.
  std::uint64_t max_nodes_visited = 10'000'000;
  std::uint64_t max_nodes_selected = 100'000;
  std::uint64_t max_output_bytes = 32ULL * 1024 * 1024;
  std::uint64_t max_regex_steps = 100'000'000;
  std::chrono::milliseconds max_time{10'000};
};

enum class BudgetLimit {
  none,
  nodes_visited,
  nodes_selected,
  output_bytes,
  regex_steps,
  time,
  cancelled,  // the client went away
};

std::string_view to_string(BudgetLimit limit);

class QueryBudget {
 public:
  using Now = std::function<std::chrono::steady_clock::time_point()>;

  // The clock starts now. `cancelled` (may be null) is set by whoever learns that the query's answer is no
  // longer wanted; `now` replaces the steady clock in tests.
  explicit QueryBudget(QueryLimits limits = {}, std::shared_ptr<const std::atomic<bool>> cancelled = nullptr,
                       Now now = nullptr);

  // A budget with no limits (the CLI, tests of the query language): charges never exhaust it.
  static QueryBudget unlimited();

  // Called once, on the charging thread, when the budget is exhausted (metrics count stopped queries).
  void on_exhausted(std::function<void(BudgetLimit)> observer) { observer_ = std::move(observer); }

  // Each returns whether the budget still holds after the charge.
  bool visit(std::uint64_t nodes = 1) {
    return charge(visited_, nodes, limits_.max_nodes_visited, BudgetLimit::nodes_visited);
  }
  bool select(std::uint64_t nodes = 1) {
    return charge(selected_, nodes, limits_.max_nodes_selected, BudgetLimit::nodes_selected);
  }
  bool output(std::uint64_t bytes) {
    return charge(output_, bytes, limits_.max_output_bytes, BudgetLimit::output_bytes);
  }
  bool regex(std::uint64_t steps) {
    return charge(regex_, steps, limits_.max_regex_steps, BudgetLimit::regex_steps);
  }

  // Reads the clock and the cancellation flag now (charges do it every kCheckEvery units).
  bool check();

  bool ok() const { return exhausted_ == BudgetLimit::none; }
  BudgetLimit exhausted() const { return exhausted_; }

  // The problem to answer once exhausted: Errc::too_costly (422) saying which limit, its value and the
  // configuration key, and how to narrow the query; attributed to the query parameter `parameter`. When the
  // client went away: Errc::unavailable (nobody reads it; it ends the request's work).
  core::Error error(std::string_view parameter) const;

  std::uint64_t nodes_visited() const { return visited_; }
  std::uint64_t nodes_selected() const { return selected_; }
  // Nodes that may still be selected before the budget is exhausted.
  std::uint64_t selectable() const {
    return selected_ >= limits_.max_nodes_selected ? 0 : limits_.max_nodes_selected - selected_;
  }
  std::uint64_t output_bytes() const { return output_; }
  std::uint64_t regex_steps() const { return regex_; }
  const QueryLimits& limits() const { return limits_; }

  static constexpr std::uint64_t kCheckEvery = 4096;

 private:
  bool charge(std::uint64_t& counter, std::uint64_t units, std::uint64_t limit, BudgetLimit which) {
    counter += units;
    if (counter > limit) return exhaust(which);
    since_check_ += units;
    if (since_check_ >= kCheckEvery) return check();
    return exhausted_ == BudgetLimit::none;
  }
  bool exhaust(BudgetLimit which);

  QueryLimits limits_;
  std::shared_ptr<const std::atomic<bool>> cancelled_;
  Now now_;
  std::function<void(BudgetLimit)> observer_;
  std::chrono::steady_clock::time_point deadline_;
  std::uint64_t visited_ = 0;
  std::uint64_t selected_ = 0;
  std::uint64_t output_ = 0;
  std::uint64_t regex_ = 0;
  std::uint64_t since_check_ = 0;
  BudgetLimit exhausted_ = BudgetLimit::none;
};

}  // namespace twinbridge::query
