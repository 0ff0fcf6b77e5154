#pragma once
// ChangeFeed: the one ordered stream of committed changes of this process (store/change.hpp). The store hands
// it each commit's changes (it is the store's ChangeListener); it passes them, in sequence order, to every
// consumer registered at start-up (the twin index, the system monitor, the stream hub), and keeps the newest
// ones in memory so that a stream resuming after a recent change reads nothing from the store. Older changes
// are read back from the store while it keeps them; before that, a reader learns that it missed some (a
// gap), never silently.
//
// Between nodes (scale-out) the same changes will come from the event bus instead of the local store; the
// consumers do not change.
//
// Thread-safety: committed() and settled() run on the store's writer thread; everything else from any thread.
// Consumers run on the writer thread, in registration order, before the writes of the commit are
// acknowledged; they must not block or write to the store.

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "store/store.hpp"

namespace twinbridge::store {

class ChangeConsumer {
 public:
  virtual ~ChangeConsumer() = default;
  virtual void apply(std::span<const ChangePtr> changes) = 0;
};

// What read() found after a sequence number.
struct ChangeRead {
  std::vector<ChangePtr> changes;  // in sequence order
  // The first change still kept when it is after the one asked for: every change from the one asked for up
  // to this one (excluded) is lost to the reader (a gap); 0 when nothing was missed.
  std::int64_t gap_until = 0;
  std::int64_t last = 0;  // the newest change committed when read
};

class ChangeFeed final : public ChangeListener {
 public:
  // Keeps the newest `memory_window` changes in memory.
  explicit ChangeFeed(Store& store, std::size_t memory_window = 10'000);

  // Reads the feed's position and newest changes from the store. Call once, before the store starts.
  core::Result<void> load();
  // From the next commit on, `consumer` gets every commit's changes (after those added before it); until
  // remove_consumer() returns. Any thread.
  void add_consumer(ChangeConsumer& consumer);
  void remove_consumer(ChangeConsumer& consumer);

  void committed(std::span<const ChangePtr> changes) override;
  void settled() override;

  std::int64_t last_seq() const { return last_.load(std::memory_order_acquire); }

  // The changes after `after` in order, at most `limit`. From memory when it still holds the next one;
  // otherwise from the store (a blocking read: call it off the event loops).
  core::Result<ChangeRead> read(std::int64_t after, std::size_t limit) const;
  // The same from memory only (never blocks): nullopt when memory no longer holds the change after `after`.
  std::optional<ChangeRead> read_recent(std::int64_t after, std::size_t limit) const;

 private:
  Store& store_;
  std::size_t memory_window_;
  std::mutex consumers_mutex_;  // held while consumers run: remove_consumer() waits for a running commit
  std::vector<ChangeConsumer*> consumers_;
  std::atomic<std::int64_t> last_{0};
  mutable std::mutex mutex_;
  std::deque<ChangePtr> recent_;  // the newest changes, in order, without gaps
  // Changes memory no longer holds, released in settled(): often their last reference (a twin state, its
  // JSON), whose release is a quarter of the consumers' time, after the commit's acknowledgements.
  std::vector<ChangePtr> evicted_;  // writer thread
};

}  // namespace twinbridge::store
