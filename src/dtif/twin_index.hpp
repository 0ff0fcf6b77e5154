#pragma once
// TwinIndex: every registered twin in memory, as served (core::TwinView), for discovery (FGMV-29 8.3.2 DTSD
// and the W3C WoT directory): by id in id order, and by owning system. Discovery reads it instead of the
// store, so neither an equality query nor a JSONPath filter over every TD reads or parses anything.
//
// The store is the truth; the index follows it as a consumer of the change feed: it hears of each committed
// twin change on the store's writer thread, in sequence order and before the write is acknowledged, so a
// client always finds its own write. load() fills it from the store at start-up, before the server serves.
// Several nodes on one store will feed it from the event bus as well (scale-out).
//
// Memory: one TwinView per twin (its TD packed, about the size of its JSON text) plus two map nodes, and
// while no twin changes, a snapshot of 16 bytes per twin (below).
// Thread-safety: queries share a lock; changes take it exclusively; answers hold shared_ptrs to immutable
// views, so they stay valid after the lock is released. A query holds the lock only to collect the next few
// hundred views; filters run on them without it, so however long a query runs (bounded by its budget), the
// store's writer waits for the lock at most one short collection.
// Snapshot: a scan of every twin (no system given) walks a vector of the views in id order instead of the
// map (whose nodes are a cache miss each). The first such scan after a change collects one (in short turns
// of the lock, as above) and keeps it when no change came meanwhile. A change makes it stale (the next scan
// collects another and releases it, on its own thread); after changes of an eighth of the twins the writer
// releases it itself, so a stale snapshot keeps the replaced views of at most an eighth of the twins alive
// and releasing it costs each change a constant amortized share. Twins change rarely beside queries (state
// is not here), so most scans find a snapshot made.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/twin.hpp"
#include "query/jsonpath.hpp"
#include "store/change_feed.hpp"

namespace twinbridge::dtif {

// Orders of twin discovery: by the TD's title, or its registration's created/modified time, then by id.
enum class TwinSort { id, title, created, modified };
std::optional<TwinSort> parse_twin_sort(std::string_view member);

struct TwinIndexQuery {
  std::optional<std::string> system_id;
  core::Timestamp alive_at{};  // twins whose registration expired at or before this are left out
  std::string after;           // cursor: id of the last twin of the previous page
  std::size_t offset = 0;      // skip this many matches first (W3C WoT Discovery listing)
  std::size_t limit = 100;
  // A twin matches when the query, applied to a one-element array holding its TD, selects a node.
  const query::JsonPath* filter = nullptr;
  // What the filter may cost (null: unlimited). Each twin examined is a node visited; once the budget is
  // exhausted the scan stops and the page is incomplete: the caller checks budget->ok().
  query::QueryBudget* budget = nullptr;
  // Another order than ascending id gathers every match, sorts it and pages with the cursor
  // [sort value, id] (JSON text).
  TwinSort sort = TwinSort::id;
  bool descending = false;
};

class TwinIndex final : public store::ChangeConsumer {
 public:
  // Views live in a slab (core/slab.hpp); a changed or removed twin's view leaves dead bytes in its block.
  // Once the dead bytes exceed a quarter of the live ones (and kCompactMinDead), each change also moves the
  // views of sparse blocks among the next kCompactStep twins (in id order, round the index) to fresh memory,
  // so that those blocks are freed: the views take at most about 1.25 times their own size plus one block.
  static constexpr std::size_t kCompactMinDead = std::size_t{8} << 20;
  static constexpr std::size_t kCompactStep = 1000;
  static constexpr std::size_t kParseBuffer = 64 * 1024;  // per builder of load()

  // Reads every twin of the store (expired ones too: they disappear at query time), its views made on
  // `builders` threads while this one reads.
  core::Result<void> load(store::Store& store,
                          unsigned builders = std::max(1u, std::thread::hardware_concurrency()));

  // Follows the change feed: twins created, updated, transferred and deleted.
  void apply(std::span<const store::ChangePtr> changes) override;
  void twin_stored(const core::TwinRecord& twin);
  void twin_removed(const std::string& id);

  store::Page<std::shared_ptr<const core::TwinView>> find(const TwinIndexQuery& query) const;
  // The twin with this id (expired or not); null when there is none.
  std::shared_ptr<const core::TwinView> get(std::string_view id) const;

  // Whether some twin belongs to the twin system `system_id` (then it is registered).
  bool has_system(std::string_view system_id) const;

  std::size_t size() const;
  std::size_t bytes() const;  // of the views' JSON

 private:
  using Views = std::vector<std::shared_ptr<const core::TwinView>>;
  struct Snapshot {
    std::uint64_t generation = 0;  // of the index it shows
    Views views;                   // in id order
  };

  store::Page<std::shared_ptr<const core::TwinView>> find_sorted(const TwinIndexQuery& query) const;
  // Every view in id order (see Snapshot above).
  std::shared_ptr<const Snapshot> snapshot() const;
  // With mutex_ held exclusively: the index changed. Returns a snapshot to release after the lock, if any.
  [[nodiscard]] std::shared_ptr<const Snapshot> changed_locked();
  void put_all(std::vector<std::shared_ptr<const core::TwinView>> views);
  void compact_some();  // see kCompactMinDead

  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<const core::TwinView>, std::less<>> by_id_;
  // (system id, twin id) → view; the string_views point into the view itself.
  std::map<std::pair<std::string_view, std::string_view>, std::shared_ptr<const core::TwinView>> by_system_;
  std::size_t bytes_ = 0;
  std::atomic<std::uint64_t> generation_{0};  // changes so far (changed under mutex_)

  mutable std::mutex snapshot_mutex_;                 // the two below
  mutable std::shared_ptr<const Snapshot> snapshot_;  // the last one made (stale after a change)
  mutable std::size_t changes_since_snapshot_ = 0;
  mutable std::mutex collect_mutex_;  // one scan collects a snapshot at a time; the others wait for it

  std::mutex compact_mutex_;               // the compaction's own state, below
  std::string compact_after_;              // the last twin of the pass examined
  std::size_t compact_moved_ = 0;          // views moved in this pass
  std::size_t compact_wait_for_dead_ = 0;  // after a pass that moved nothing: the dead bytes to wait for
};

}  // namespace twinbridge::dtif
