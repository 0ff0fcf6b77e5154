#include "dtif/twin_index.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>

namespace twinbridge::dtif {

core::Result<void> TwinIndex::load(store::Store& store, unsigned builders) {
  // The calling thread reads batches of stored twins; `builders` threads parse their TDs and make their
  // views (most of a start-up's work), then put each batch into the index. A queue of a few batches between
  // them bounds the memory of texts read ahead.
  constexpr std::size_t kBatch = 256;
  constexpr std::size_t kQueued = 8;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<std::vector<store::TwinText>> queue;
  bool done = false;
  auto build = [&] {
    // Each TD is parsed into this thread's buffer (the heap only beyond it), then copied into its view.
    auto buffer = std::make_unique_for_overwrite<unsigned char[]>(kParseBuffer);
    for (;;) {
      std::vector<store::TwinText> batch;
      {
        std::unique_lock lock(mutex);
        changed.wait(lock, [&] { return done || !queue.empty(); });
        if (queue.empty()) return;
        batch = std::move(queue.front());
        queue.pop_front();
      }
      changed.notify_all();
      std::vector<std::shared_ptr<const core::TwinView>> views;
      views.reserve(batch.size());
      for (const auto& t : batch) {
        boost::json::monotonic_resource memory(buffer.get(), kParseBuffer);
        const boost::json::storage_ptr storage(&memory);
        auto td = store::parse_stored_json(t.document, "the document", storage, t.twin.id);
        views.push_back(core::TwinView::make(
            t.twin, td.is_object() ? std::move(td.get_object()) : boost::json::object(storage)));
      }
      put_all(std::move(views));
    }
  };
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < std::max(1u, builders); ++i) threads.emplace_back(build);
  auto read = store.each_twin_text(kBatch, [&](std::vector<store::TwinText>&& batch) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return queue.size() < kQueued; });
    queue.push_back(std::move(batch));
    lock.unlock();
    changed.notify_all();
  });
  {
    std::lock_guard lock(mutex);
    done = true;
  }
  changed.notify_all();
  for (auto& t : threads) t.join();
  return read;
}

void TwinIndex::apply(std::span<const store::ChangePtr> changes) {
  for (const auto& c : changes) {
    switch (c->type) {
      case store::ChangeType::thing_created:
      case store::ChangeType::thing_updated:
      case store::ChangeType::thing_transferred:
        if (c->twin) twin_stored(*c->twin);
        break;
      case store::ChangeType::thing_deleted:
        twin_removed(c->subject);
        break;
      default:
        break;
    }
  }
}

std::shared_ptr<const core::TwinView> TwinIndex::get(std::string_view id) const {
  std::shared_lock lock(mutex_);
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

void TwinIndex::twin_stored(const core::TwinRecord& twin) {
  std::vector<std::shared_ptr<const core::TwinView>> one;
  one.push_back(core::TwinView::make(twin));  // built before the lock is taken
  put_all(std::move(one));
  compact_some();
}

void TwinIndex::put_all(std::vector<std::shared_ptr<const core::TwinView>> views) {
  std::vector<std::shared_ptr<const core::TwinView>> old;  // released after the lock
  std::shared_ptr<const Snapshot> stale;                   // likewise
  std::unique_lock lock(mutex_);
  for (auto& view : views) {
    auto it = by_id_.lower_bound(view->id());
    if (it != by_id_.end() && it->first == view->id()) {
      old.push_back(std::move(it->second));
      by_system_.erase({old.back()->system_id(), old.back()->id()});
      bytes_ -= old.back()->bytes();
      it = by_id_.erase(it);
    }
    bytes_ += view->bytes();
    by_system_.emplace(std::pair<std::string_view, std::string_view>(view->system_id(), view->id()), view);
    by_id_.emplace_hint(it, view->id(), std::move(view));
  }
  stale = changed_locked();
}

std::shared_ptr<const TwinIndex::Snapshot> TwinIndex::changed_locked() {
  generation_.fetch_add(1);
  std::lock_guard lock(snapshot_mutex_);
  if (!snapshot_ || ++changes_since_snapshot_ < std::max<std::size_t>(64, snapshot_->views.size() / 8))
    return nullptr;
  return std::move(snapshot_);
}

void TwinIndex::compact_some() {
  std::unique_lock compacting(compact_mutex_, std::try_to_lock);
  if (!compacting) return;
  const auto& slab = core::TwinView::memory();
  const auto dead = slab.dead_bytes();
  if (dead < std::max(kCompactMinDead, slab.live_bytes() / 4)) {
    compact_wait_for_dead_ = 0;
    return;
  }
  if (dead < compact_wait_for_dead_) return;
  std::vector<std::shared_ptr<const core::TwinView>> sparse;
  bool pass_ended = false;
  {
    std::shared_lock lock(mutex_);
    auto it = by_id_.upper_bound(compact_after_);
    for (std::size_t examined = 0; it != by_id_.end() && examined < kCompactStep; ++it, ++examined) {
      if (it->second->in_sparse_block()) sparse.push_back(it->second);
      compact_after_ = it->first;
    }
    pass_ended = it == by_id_.end();
  }
  for (const auto& view : sparse) {
    auto moved = view->relocated();         // built before the lock is taken
    std::shared_ptr<const Snapshot> stale;  // released after the lock
    std::unique_lock lock(mutex_);
    auto it = by_id_.find(view->id());
    if (it == by_id_.end() || it->second != view) continue;  // changed meanwhile
    by_system_.erase({view->system_id(), view->id()});
    by_system_.emplace(std::pair<std::string_view, std::string_view>(moved->system_id(), moved->id()), moved);
    it->second = std::move(moved);
    stale = changed_locked();
    ++compact_moved_;
  }
  if (pass_ended) {
    // A whole pass: the next one when as many bytes again have died (views still held by readers free their
    // blocks later by themselves).
    compact_after_.clear();
    compact_wait_for_dead_ =
        compact_moved_ == 0 ? dead + std::max(kCompactMinDead, slab.live_bytes() / 4) : 0;
    compact_moved_ = 0;
  }
}

void TwinIndex::twin_removed(const std::string& id) {
  std::shared_ptr<const core::TwinView> gone;  // released after the lock
  std::shared_ptr<const Snapshot> stale;       // likewise
  std::unique_lock lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  by_system_.erase({it->second->system_id(), it->second->id()});
  bytes_ -= it->second->bytes();
  gone = std::move(it->second);
  by_id_.erase(it);
  stale = changed_locked();
  lock.unlock();
  compact_some();
}

namespace {

// Calls take(view) for each view of `views` in order until take returns false (then returns false), fetching
// the memory of the views ahead (see TwinView::prefetch_outer).
template <class Take>
bool scan(std::span<const std::shared_ptr<const core::TwinView>> views, Take&& take) {
  constexpr std::size_t kOuter = 8;
  constexpr std::size_t kInner = 4;
  const std::size_t n = views.size();
  for (std::size_t i = 0; i < std::min(kOuter, n); ++i) views[i]->prefetch_outer();
  for (std::size_t i = 0; i < n; ++i) {
    if (i + kOuter < n) views[i + kOuter]->prefetch_outer();
    if (i + kInner < n) views[i + kInner]->prefetch_inner();
    if (!take(views[i])) return false;
  }
  return true;
}

}  // namespace

std::optional<TwinSort> parse_twin_sort(std::string_view member) {
  if (member == "id") return TwinSort::id;
  if (member == "title") return TwinSort::title;
  if (member == "created") return TwinSort::created;
  if (member == "modified") return TwinSort::modified;
  return std::nullopt;
}

namespace {

std::string_view sort_key(const core::TwinView& v, TwinSort sort) {
  const auto td = v.td();
  switch (sort) {
    case TwinSort::id:
      return v.id();
    case TwinSort::title:
      return td.find("title").string_or();
    case TwinSort::created:
    case TwinSort::modified: {
      // RFC 3339 with a fixed width and Z: text order is time order.
      return td.find("registration").find(sort == TwinSort::created ? "created" : "modified").string_or();
    }
  }
  return {};
}

}  // namespace

store::Page<std::shared_ptr<const core::TwinView>> TwinIndex::find_sorted(const TwinIndexQuery& q) const {
  TwinIndexQuery all = q;
  all.sort = TwinSort::id;
  all.descending = false;
  all.after.clear();
  all.offset = 0;
  all.limit = std::numeric_limits<std::size_t>::max() - 1;
  auto matches = find(all).items;
  using Entry = std::pair<std::string_view, const std::shared_ptr<const core::TwinView>*>;
  std::vector<Entry> order;
  order.reserve(matches.size());
  for (const auto& v : matches) order.emplace_back(sort_key(*v, q.sort), &v);
  auto before = [&](const Entry& a, const Entry& b) {
    const auto ka = std::pair(a.first, std::string_view((*a.second)->id()));
    const auto kb = std::pair(b.first, std::string_view((*b.second)->id()));
    return q.descending ? kb < ka : ka < kb;
  };
  std::sort(order.begin(), order.end(), before);
  std::size_t start = 0;
  if (!q.after.empty()) {
    boost::system::error_code ec;
    const auto cursor = boost::json::parse(q.after, ec);
    const auto* a = cursor.if_array();
    if (!ec && a != nullptr && a->size() == 2 && a->at(0).is_string() && a->at(1).is_string()) {
      const auto key =
          std::pair(std::string_view(a->at(0).get_string()), std::string_view(a->at(1).get_string()));
      start = static_cast<std::size_t>(std::upper_bound(order.begin(), order.end(), key,
                                                        [&](const auto& k, const Entry& e) {
                                                          const auto ke = std::pair(
                                                              e.first, std::string_view((*e.second)->id()));
                                                          return q.descending ? ke < k : k < ke;
                                                        }) -
                                       order.begin());
    } else {
      start = order.size();  // not a cursor of this order: nothing follows it
    }
  }
  start = std::min(order.size(), start + q.offset);
  store::Page<std::shared_ptr<const core::TwinView>> out;
  for (std::size_t i = start; i < order.size(); ++i) {
    if (out.items.size() == q.limit) {
      const auto& last = out.items.back();
      out.next_after = boost::json::serialize(
          boost::json::array{boost::json::string(sort_key(*last, q.sort)), boost::json::string(last->id())});
      break;
    }
    out.items.push_back(*order[i].second);
  }
  return out;
}

store::Page<std::shared_ptr<const core::TwinView>> TwinIndex::find(const TwinIndexQuery& q) const {
  if (q.sort != TwinSort::id || q.descending) return find_sorted(q);
  store::Page<std::shared_ptr<const core::TwinView>> out;
  std::size_t skip = q.offset;
  std::optional<query::JsonPath::Matcher> matcher;
  if (q.filter != nullptr) matcher.emplace(*q.filter, q.budget);
  // Returns false when the page is full and one more match exists, or the budget ran out.
  auto take = [&](const std::shared_ptr<const core::TwinView>& v) {
    if (q.budget != nullptr && !q.budget->visit()) return false;
    if (v->expires() && *v->expires() <= q.alive_at) return true;
    if (matcher && !(*matcher)(v->wrapped())) return q.budget == nullptr || q.budget->ok();
    if (skip > 0) {
      --skip;
      return true;
    }
    if (out.items.size() == q.limit) {
      out.next_after = out.items.back()->id();
      return false;
    }
    out.items.push_back(v);
    return true;
  };
  if (!q.system_id) {
    const auto all = snapshot();
    const auto& views = all->views;
    const auto first = std::upper_bound(views.begin(), views.end(), std::string_view(q.after),
                                        [](std::string_view id, const auto& v) { return id < v->id(); });
    scan(std::span(first, views.end()), take);
    return out;
  }
  // A system's twins are read in chunks under the shared lock; the views (immutable) are examined without
  // it, so that a long filter never holds up the store's writer, which takes the lock to apply each write.
  constexpr std::size_t kChunk = 256;
  Views chunk;
  chunk.reserve(kChunk);
  std::string after = q.after;
  const std::string_view system = *q.system_id;
  for (;;) {
    chunk.clear();
    {
      std::shared_lock lock(mutex_);
      for (auto it = by_system_.upper_bound({system, after});
           it != by_system_.end() && it->first.first == system && chunk.size() < kChunk; ++it) {
        chunk.push_back(it->second);
      }
    }
    if (chunk.empty() || !scan(chunk, take) || chunk.size() < kChunk) break;
    after = chunk.back()->id();
  }
  return out;
}

std::shared_ptr<const TwinIndex::Snapshot> TwinIndex::snapshot() const {
  const auto current = [this] {
    std::lock_guard lock(snapshot_mutex_);
    return snapshot_ && snapshot_->generation == generation_.load() ? snapshot_ : nullptr;
  };
  if (auto made = current()) return made;
  std::lock_guard collecting(collect_mutex_);
  if (auto made = current()) return made;  // made by the scan this one waited for
  // Collected in chunks under the shared lock, as a scan reads: the writer waits at most one chunk.
  constexpr std::size_t kChunk = 4096;
  auto made = std::make_shared<Snapshot>();
  made->generation = generation_.load();
  {
    std::shared_lock lock(mutex_);
    made->views.reserve(by_id_.size() + kChunk);
  }
  std::string after;
  for (bool more = true; more;) {
    std::shared_lock lock(mutex_);
    auto it = after.empty() ? by_id_.begin() : by_id_.upper_bound(after);
    for (std::size_t n = 0; it != by_id_.end() && n < kChunk; ++it, ++n) made->views.push_back(it->second);
    more = it != by_id_.end();
    if (more) after = made->views.back()->id();
  }
  std::shared_ptr<const Snapshot> old;  // released after the locks, here rather than on the writer's thread
  {
    std::shared_lock lock(mutex_);  // no change can come in between the check and the keeping
    if (made->generation != generation_.load()) return made;  // changed meanwhile: for this scan only
    std::lock_guard keep(snapshot_mutex_);
    old = std::exchange(snapshot_, made);
    changes_since_snapshot_ = 0;
  }
  return made;
}

bool TwinIndex::has_system(std::string_view system_id) const {
  std::shared_lock lock(mutex_);
  const auto it = by_system_.lower_bound({system_id, std::string_view()});
  return it != by_system_.end() && it->first.first == system_id;
}

std::size_t TwinIndex::size() const {
  std::shared_lock lock(mutex_);
  return by_id_.size();
}

std::size_t TwinIndex::bytes() const {
  std::shared_lock lock(mutex_);
  return bytes_;
}

}  // namespace twinbridge::dtif
