#include "dtif/twin_index.hpp"

#include <mutex>

namespace twinbridge::dtif {

core::Result<void> TwinIndex::load(store::Store& store) {
  store::TwinQuery q;
  q.limit = 1000;
  for (;;) {
    auto page = store.twins(q);
    if (!page) return std::unexpected(page.error());
    for (const auto& t : page->items) put(core::TwinView::make(t));
    if (!page->next_after) return {};
    q.after = *page->next_after;
  }
}

void TwinIndex::twin_stored(const core::TwinRecord& twin) {
  put(core::TwinView::make(twin));  // built before the lock is taken
}

void TwinIndex::put(std::shared_ptr<const core::TwinView> view) {
  std::unique_lock lock(mutex_);
  if (auto it = by_id_.find(view->id()); it != by_id_.end()) {
    by_system_.erase({it->second->system_id(), it->second->id()});
    bytes_ -= it->second->bytes();
    by_id_.erase(it);
  }
  bytes_ += view->bytes();
  by_system_.emplace(std::pair<std::string_view, std::string_view>(view->system_id(), view->id()), view);
  by_id_.emplace(view->id(), std::move(view));
}

void TwinIndex::twin_removed(const std::string& id) {
  std::shared_ptr<const core::TwinView> gone;  // released after the lock
  std::unique_lock lock(mutex_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  by_system_.erase({it->second->system_id(), it->second->id()});
  bytes_ -= it->second->bytes();
  gone = std::move(it->second);
  by_id_.erase(it);
}

store::Page<std::shared_ptr<const core::TwinView>> TwinIndex::find(const TwinIndexQuery& q) const {
  store::Page<std::shared_ptr<const core::TwinView>> out;
  std::size_t skip = q.offset;
  // Returns false when the page is full and one more match exists.
  auto take = [&](const std::shared_ptr<const core::TwinView>& v) {
    if (v->expires() && *v->expires() <= q.alive_at) return true;
    if (q.filter != nullptr && !q.filter->matches(v->wrapped())) return true;
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
  std::shared_lock lock(mutex_);
  if (q.system_id) {
    const std::string_view system = *q.system_id;
    for (auto it = by_system_.upper_bound({system, q.after});
         it != by_system_.end() && it->first.first == system; ++it) {
      if (!take(it->second)) break;
    }
  } else {
    for (auto it = by_id_.upper_bound(q.after); it != by_id_.end(); ++it) {
      if (!take(it->second)) break;
    }
  }
  return out;
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
