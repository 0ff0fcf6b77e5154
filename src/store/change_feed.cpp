#include "store/change_feed.hpp"

#include <algorithm>

namespace twinbridge::store {

ChangeFeed::ChangeFeed(Store& store, std::size_t memory_window)
    : store_(store), memory_window_(std::max<std::size_t>(memory_window, 1)) {}

core::Result<void> ChangeFeed::load() {
  auto window = store_.change_window();
  if (!window) return std::unexpected(window.error());
  const auto from = std::max(window->first - 1, window->last - static_cast<std::int64_t>(memory_window_));
  std::deque<ChangePtr> recent;
  for (auto after = from; after < window->last;) {
    auto page = store_.changes(after, 10'000);
    if (!page) return std::unexpected(page.error());
    if (page->empty()) break;
    for (auto& c : *page) {
      after = c.seq;
      recent.push_back(std::make_shared<const Change>(std::move(c)));
    }
  }
  std::lock_guard lock(mutex_);
  recent_ = std::move(recent);
  last_.store(window->last, std::memory_order_release);
  return {};
}

void ChangeFeed::add_consumer(ChangeConsumer& consumer) {
  std::lock_guard lock(consumers_mutex_);
  consumers_.push_back(&consumer);
}

void ChangeFeed::remove_consumer(ChangeConsumer& consumer) {
  std::lock_guard lock(consumers_mutex_);
  std::erase(consumers_, &consumer);
}

void ChangeFeed::committed(std::span<const ChangePtr> changes) {
  {
    std::lock_guard lock(mutex_);
    for (const auto& c : changes) recent_.push_back(c);
    while (recent_.size() > memory_window_) {
      evicted_.push_back(std::move(recent_.front()));
      recent_.pop_front();
    }
    last_.store(changes.back()->seq, std::memory_order_release);
  }
  std::lock_guard lock(consumers_mutex_);
  for (auto* consumer : consumers_) consumer->apply(changes);
}

void ChangeFeed::settled() {
  evicted_.clear();
}

std::optional<ChangeRead> ChangeFeed::read_recent(std::int64_t after, std::size_t limit) const {
  ChangeRead out;
  std::lock_guard lock(mutex_);
  out.last = last_.load(std::memory_order_relaxed);
  if (after >= out.last) return out;
  if (recent_.empty() || recent_.front()->seq > after + 1) return std::nullopt;
  auto it = recent_.begin() + (after + 1 - recent_.front()->seq);
  for (; it != recent_.end() && out.changes.size() < limit; ++it) out.changes.push_back(*it);
  return out;
}

core::Result<ChangeRead> ChangeFeed::read(std::int64_t after, std::size_t limit) const {
  if (auto recent = read_recent(after, limit)) return std::move(*recent);
  ChangeRead out;
  out.last = last_seq();
  auto page = store_.changes(after, limit);
  if (!page) return std::unexpected(page.error());
  if (!page->empty() && page->front().seq > after + 1) out.gap_until = page->front().seq;
  if (page->empty()) {
    // Nothing kept after `after` in the store: what memory holds now is all there is.
    std::lock_guard lock(mutex_);
    if (!recent_.empty()) {
      out.gap_until = recent_.front()->seq > after + 1 ? recent_.front()->seq : 0;
      for (auto it = recent_.begin(); it != recent_.end() && out.changes.size() < limit; ++it) {
        if ((*it)->seq > after) out.changes.push_back(*it);
      }
    }
    return out;
  }
  out.changes.reserve(page->size());
  for (auto& c : *page) out.changes.push_back(std::make_shared<const Change>(std::move(c)));
  return out;
}

}  // namespace twinbridge::store
