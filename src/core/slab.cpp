#include "core/slab.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <new>
#include <utility>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TB_SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TB_SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TB_SLAB_POISON(p, n) ((void)(p), (void)(n))
#define TB_SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace twinbridge::core {

namespace {

constexpr std::size_t kAlign = alignof(std::max_align_t);

constexpr std::size_t round_up(std::size_t n, std::size_t to) {
  return (n + to - 1) / to * to;
}

}  // namespace

// At the front of each block (aligned to kBlockSize, so that an allocation finds it by masking its address:
// a block of its own starts with its one allocation).
struct Slab::Block {
  Slab* owner;
  std::size_t size;               // mapped bytes
  std::size_t used;               // bytes handed out, header included; final once the block is not current
  std::atomic<std::size_t> refs;  // live allocations, plus one while the block is being filled
  std::atomic<std::size_t> live;  // bytes of live allocations
};

namespace {
constexpr std::size_t kHeader = 64;  // sizeof(Slab::Block), rounded up to kAlign (checked in map_block)
}

Slab::~Slab() {
  if (auto* block = current_.load(std::memory_order_acquire); block != nullptr) release(block);
  if (spare_ != nullptr) release(spare_);
}

Slab::Block* Slab::block_of(const void* p) {
  return reinterpret_cast<Block*>(reinterpret_cast<std::uintptr_t>(p) & ~(kBlockSize - 1));
}

Slab::Block* Slab::map_block(Slab& owner, std::size_t size) {
  static_assert(sizeof(Block) <= kHeader && kHeader % kAlign == 0);
  // Mapped with a block's size to spare, then trimmed to an aligned start.
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  size = round_up(size, page);
  const std::size_t span = size + kBlockSize;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const auto aligned = round_up(start, kBlockSize);
  if (aligned > start) ::munmap(raw, aligned - start);
  if (const auto tail = start + span - (aligned + size); tail > 0) {
    ::munmap(reinterpret_cast<void*>(aligned + size), tail);
  }
  auto* memory = reinterpret_cast<void*>(aligned);
  (void)::madvise(memory, size, MADV_HUGEPAGE);  // a hint: refused where huge pages are off
  auto* block = new (memory) Block{&owner, size, kHeader, 1, 0};
  TB_SLAB_POISON(reinterpret_cast<unsigned char*>(memory) + kHeader, size - kHeader);
  owner.mapped_.fetch_add(size, std::memory_order_relaxed);
  return block;
}

void Slab::release(Block* block) {
  if (block->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  Slab& owner = *block->owner;
  owner.mapped_.fetch_sub(block->size, std::memory_order_relaxed);
  owner.filled_.fetch_sub(block->used - kHeader, std::memory_order_relaxed);
  const std::size_t size = block->size;
  block->~Block();
  TB_SLAB_UNPOISON(block, size);
  ::munmap(block, size);
}

void* Slab::allocate(std::size_t bytes) {
  bytes = round_up(bytes == 0 ? 1 : bytes, kAlign);
  Block* block = nullptr;
  unsigned char* p = nullptr;
  if (bytes > kLargest) {
    block = map_block(*this, kHeader + bytes);
    block->used = kHeader + bytes;
    p = reinterpret_cast<unsigned char*>(block) + kHeader;
    // The block's own reference becomes its one allocation's.
  } else {
    // A new block is mapped (and its first page faulted in: zeroing a huge page takes a while) outside the
    // lock, so that other threads go on allocating from the current block meanwhile.
    Block* fresh = nullptr;
    for (;;) {
      std::unique_lock lock(mutex_);
      block = current_.load(std::memory_order_relaxed);
      if (block == nullptr || block->used + bytes > block->size) {
        if (fresh == nullptr) fresh = std::exchange(spare_, nullptr);
        if (fresh == nullptr) {
          lock.unlock();
          fresh = map_block(*this, kBlockSize);
          continue;
        }
        current_.store(fresh, std::memory_order_release);
        if (block != nullptr) release(block);  // no longer filled: freed with its last allocation
        block = std::exchange(fresh, nullptr);
      }
      p = reinterpret_cast<unsigned char*>(block) + block->used;
      block->used += bytes;
      block->refs.fetch_add(1, std::memory_order_relaxed);
      // Another thread switched blocks while this one mapped: the block mapped is the next one.
      if (fresh != nullptr) {
        if (spare_ == nullptr) {
          spare_ = fresh;
        } else {
          lock.unlock();
          release(fresh);
        }
      }
      break;
    }
  }
  block->live.fetch_add(bytes, std::memory_order_relaxed);
  live_.fetch_add(bytes, std::memory_order_relaxed);
  filled_.fetch_add(bytes, std::memory_order_relaxed);
  TB_SLAB_UNPOISON(p, bytes);
  return p;
}

void Slab::free(void* p, std::size_t bytes) {
  bytes = round_up(bytes == 0 ? 1 : bytes, kAlign);
  Block* block = block_of(p);
  TB_SLAB_POISON(p, bytes);
  block->live.fetch_sub(bytes, std::memory_order_relaxed);
  block->owner->live_.fetch_sub(bytes, std::memory_order_relaxed);
  release(block);
}

bool Slab::sparse(const void* p) const {
  const Block* block = block_of(p);
  // A block's `used` is final once another block is current (stored after it, under the mutex).
  if (block == current_.load(std::memory_order_acquire)) return false;
  return 2 * block->live.load(std::memory_order_relaxed) < block->used - kHeader;
}

std::size_t Slab::dead_bytes() const {
  const auto filled = filled_.load(std::memory_order_relaxed);
  const auto live = live_.load(std::memory_order_relaxed);
  return filled > live ? filled - live : 0;
}

}  // namespace twinbridge::core
