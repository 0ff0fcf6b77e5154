// Slab: allocations side by side in blocks of 2 MiB, a block unmapped with its last allocation once another
// block is being filled, large allocations in blocks of their own, and the figures an owner compacts by.

#include "core/slab.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace twinbridge::core {
namespace {

struct Allocation {
  void* p;
  std::size_t bytes;
};

TEST(Slab, AllocationsAreAlignedDistinctAndWritable) {
  Slab slab;
  std::vector<Allocation> all;
  for (std::size_t i = 1; i <= 2000; ++i) {
    const std::size_t bytes = 1 + (i * 37) % 3000;
    void* p = slab.allocate(bytes);
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(std::max_align_t), 0u);
    std::memset(p, static_cast<int>(i & 0xFF), bytes);
    all.push_back({p, bytes});
  }
  for (std::size_t i = 0; i < all.size(); ++i) {
    const auto* bytes = static_cast<const unsigned char*>(all[i].p);
    ASSERT_EQ(bytes[0], static_cast<unsigned char>((i + 1) & 0xFF)) << i;
    ASSERT_EQ(bytes[all[i].bytes - 1], static_cast<unsigned char>((i + 1) & 0xFF)) << i;
  }
  EXPECT_GE(slab.live_bytes(), 2000u);
  EXPECT_GE(slab.mapped_bytes(), slab.live_bytes());
  EXPECT_EQ(slab.dead_bytes(), 0u);
  for (const auto& a : all) Slab::free(a.p, a.bytes);
  EXPECT_EQ(slab.live_bytes(), 0u);
  // Only the block being filled is left.
  EXPECT_EQ(slab.mapped_bytes(), Slab::kBlockSize);
}

TEST(Slab, AFullBlockIsUnmappedWithItsLastAllocationAndSparseBlocksAreTold) {
  Slab slab;
  constexpr std::size_t kBytes = 4000;
  std::vector<void*> first_block;
  void* p = slab.allocate(kBytes);
  first_block.push_back(p);
  const auto block = reinterpret_cast<std::uintptr_t>(p) & ~(Slab::kBlockSize - 1);
  // Fill the first block; the allocation that does not fit opens a second one.
  void* next = nullptr;
  for (;;) {
    void* q = slab.allocate(kBytes);
    if ((reinterpret_cast<std::uintptr_t>(q) & ~(Slab::kBlockSize - 1)) != block) {
      next = q;
      break;
    }
    first_block.push_back(q);
  }
  EXPECT_EQ(slab.mapped_bytes(), 2 * Slab::kBlockSize);
  EXPECT_FALSE(slab.sparse(next)) << "the block being filled is never sparse";
  EXPECT_FALSE(slab.sparse(first_block[0]));
  // Free all but one of the first block: it is sparse, its bytes are dead, and it stays mapped.
  const std::size_t kept = first_block.size() / 2;
  for (std::size_t i = 0; i < first_block.size(); ++i) {
    if (i != kept) Slab::free(first_block[i], kBytes);
  }
  EXPECT_TRUE(slab.sparse(first_block[kept]));
  EXPECT_GE(slab.dead_bytes(), (first_block.size() - 1) * kBytes);
  EXPECT_EQ(slab.mapped_bytes(), 2 * Slab::kBlockSize);
  // Its last allocation goes: the block is unmapped, and its dead bytes with it.
  Slab::free(first_block[kept], kBytes);
  EXPECT_EQ(slab.mapped_bytes(), Slab::kBlockSize);
  EXPECT_EQ(slab.dead_bytes(), 0u);
  Slab::free(next, kBytes);
}

TEST(Slab, ALargeAllocationHasABlockOfItsOwn) {
  Slab slab;
  void* small = slab.allocate(100);
  const std::size_t mapped = slab.mapped_bytes();
  const std::size_t large = Slab::kLargest + 1;
  void* p = slab.allocate(large);
  std::memset(p, 7, large);
  EXPECT_GE(slab.mapped_bytes(), mapped + large);
  EXPECT_FALSE(slab.sparse(p));
  Slab::free(p, large);
  EXPECT_EQ(slab.mapped_bytes(), mapped);
  // Larger than a block too.
  const std::size_t huge = 3 * Slab::kBlockSize + 5;
  void* h = slab.allocate(huge);
  static_cast<unsigned char*>(h)[huge - 1] = 1;
  Slab::free(h, huge);
  EXPECT_EQ(slab.mapped_bytes(), mapped);
  Slab::free(small, 100);
}

}  // namespace
}  // namespace twinbridge::core
