#include "dtif/twin_index.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <limits>
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

namespace {

// Calls take(view) for each view of `views` in order until take returns false (then returns false), fetching
// the memory of the views ahead (see TwinView::prefetch_outer).
template <class Take>
bool scan(const std::vector<std::shared_ptr<const core::TwinView>>& views, Take&& take) {
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
  const auto& td = v.json().get_object();
  auto text = [](const boost::json::value* s) {
    return s != nullptr && s->is_string() ? std::string_view(s->get_string()) : std::string_view();
  };
  switch (sort) {
    case TwinSort::id:
      return v.id();
    case TwinSort::title:
      return text(td.if_contains("title"));
    case TwinSort::created:
    case TwinSort::modified: {
      // RFC 3339 with a fixed width and Z: text order is time order.
      const auto* r = td.if_contains("registration");
      if (r == nullptr || !r->is_object()) return {};
      return text(r->get_object().if_contains(sort == TwinSort::created ? "created" : "modified"));
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
  // The index is read in chunks under its shared lock; the views (immutable) are examined without it, so that
  // a long filter never holds up the store's writer, which takes the lock to apply each committed write.
  constexpr std::size_t kChunk = 256;
  std::vector<std::shared_ptr<const core::TwinView>> chunk;
  chunk.reserve(kChunk);
  std::string after = q.after;
  for (;;) {
    chunk.clear();
    {
      std::shared_lock lock(mutex_);
      if (q.system_id) {
        const std::string_view system = *q.system_id;
        for (auto it = by_system_.upper_bound({system, after});
             it != by_system_.end() && it->first.first == system && chunk.size() < kChunk; ++it) {
          chunk.push_back(it->second);
        }
      } else {
        for (auto it = by_id_.upper_bound(after); it != by_id_.end() && chunk.size() < kChunk; ++it) {
          chunk.push_back(it->second);
        }
      }
    }
    if (chunk.empty() || !scan(chunk, take) || chunk.size() < kChunk) break;
    after = chunk.back()->id();
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
