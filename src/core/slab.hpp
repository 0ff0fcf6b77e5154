#pragma once
// Slab: memory for many long-lived objects of varied sizes that are made and freed one by one (the served TDs
// of the twin index, core::TwinView), taken front to back from blocks of 2 MiB that the system backs with
// huge pages where it can (madvise(MADV_HUGEPAGE)).
//
// Why not malloc: a million views allocated by malloc, interleaved with the short-lived memory of the
// requests and records that made them, left as much memory in holes as the views took, and starting up with a
// million twins spent more than half its time in page faults (one per 4 KiB touched on this kind of machine);
// from a slab the views lie side by side, a huge page costs one fault, and no allocation carries a header.
//
// A block is freed when the last object in it is freed and it is no longer the block being filled. Objects
// freed in the middle of a block leave dead bytes there until the rest of the block is freed; an owner that
// keeps its objects (the twin index) moves the objects of sparse blocks out (sparse(), then a copy into a
// fresh allocation) once dead_bytes() grows, so the slab holds at most a bounded multiple of its live bytes.
//
// Thread-safety: allocate() takes a mutex; free() and the figures are lock-free; any thread.

#include <atomic>
#include <cstddef>
#include <mutex>

namespace twinbridge::core {

class Slab {
 public:
  static constexpr std::size_t kBlockSize = std::size_t{2} << 20;  // a huge page
  // An allocation above this gets a block of its own (of its size, rounded up to whole pages).
  static constexpr std::size_t kLargest = kBlockSize / 8;

  Slab() = default;
  ~Slab();  // every allocation must have been freed
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  // `bytes` aligned to alignof(std::max_align_t). Throws std::bad_alloc when the system has no memory.
  void* allocate(std::size_t bytes);
  // `p` and `bytes` as allocate() gave and took them.
  static void free(void* p, std::size_t bytes);

  // Whether the block of `p` (an allocation of this slab) is mostly dead bytes: an owner that moves the
  // objects of such blocks elsewhere lets them be freed. The block being filled is never sparse.
  bool sparse(const void* p) const;

  std::size_t mapped_bytes() const { return mapped_.load(std::memory_order_relaxed); }
  std::size_t live_bytes() const { return live_.load(std::memory_order_relaxed); }
  // Bytes of blocks that hold no live object but cannot be reused until their whole block is freed.
  std::size_t dead_bytes() const;

 private:
  struct Block;
  static Block* block_of(const void* p);
  static Block* map_block(Slab& owner, std::size_t size);
  static void release(Block* block);

  std::mutex mutex_;
  std::atomic<Block*> current_{nullptr};  // the block being filled (holds a reference of its own)
  Block* spare_ = nullptr;                // mapped by a thread that lost the race to switch blocks
  std::atomic<std::size_t> mapped_{0};
  std::atomic<std::size_t> live_{0};
  std::atomic<std::size_t> filled_{0};  // bytes handed out of blocks still mapped, dead or alive
};

}  // namespace twinbridge::core
