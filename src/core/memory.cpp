#include "core/memory.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace twinbridge::core {

bool MemoryReleaser::release() {
  const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now().time_since_epoch())
                               .count();
  auto last = last_ms_.load(std::memory_order_relaxed);
  if (now - last < interval_.count() || !last_ms_.compare_exchange_strong(last, now)) return false;
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
  return true;
}

}  // namespace twinbridge::core
