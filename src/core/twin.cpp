#include "core/twin.hpp"

#include <boost/container/pmr/memory_resource.hpp>

#include <cstddef>
#include <new>

namespace twinbridge::core {

boost::json::object to_json(const TwinRecord& t) {
  boost::json::object out = t.document;
  boost::json::object registration{{"created", format_rfc3339(t.created)},
                                   {"modified", format_rfc3339(t.modified)}};
  if (t.ttl_seconds) registration["ttl"] = *t.ttl_seconds;
  if (t.expires) registration["expires"] = format_rfc3339(*t.expires);
  out["registration"] = std::move(registration);
  if (!t.system_id.empty()) out["twinbridge:system"] = t.system_id;
  out["twinbridge:version"] = t.version;
  return out;
}

}  // namespace twinbridge::core

namespace twinbridge::core {

namespace {

// Hands out memory from one buffer, front to back; frees nothing of it (the owner frees the buffer). Counts
// what it handed out, so that a first copy into a scratch buffer measures the exact size for the real one.
// When the buffer is full it throws (measuring), or with `overflow_to_heap` serves from the heap what later
// operations on the value may allocate temporarily (boost::json may allocate with the value's storage, e.g.
// when comparing objects), and frees that again.
class BumpResource final : public boost::container::pmr::memory_resource {
 public:
  BumpResource(unsigned char* base, std::size_t capacity, bool overflow_to_heap)
      : base_(base), capacity_(capacity), overflow_to_heap_(overflow_to_heap) {}
  std::size_t used() const { return used_; }

 private:
  void* do_allocate(std::size_t n, std::size_t align) override {
    const std::size_t offset = (used_ + align - 1) / align * align;
    if (offset + n <= capacity_) {
      used_ = offset + n;
      return base_ + offset;
    }
    if (!overflow_to_heap_) throw std::bad_alloc();
    return ::operator new(n, std::align_val_t(align));
  }
  void do_deallocate(void* p, std::size_t n, std::size_t align) override {
    const auto* c = static_cast<const unsigned char*>(p);
    if (c < base_ || c >= base_ + capacity_) ::operator delete(p, n, std::align_val_t(align));
  }
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

  unsigned char* base_;
  std::size_t capacity_;
  bool overflow_to_heap_;
  std::size_t used_ = 0;
};

}  // namespace

TwinView::TwinView(const TwinRecord& twin, std::unique_ptr<unsigned char[]> arena, std::size_t size,
                   const boost::json::value& wrapped)
    : id_(twin.id),
      system_id_(twin.system_id),
      owner_(twin.owner),
      version_(twin.version),
      expires_(twin.expires),
      arena_(std::move(arena)),
      arena_size_(size),
      wrapped_(wrapped, boost::json::storage_ptr(reinterpret_cast<BumpResource*>(arena_.get()))) {}

// wrapped_ (declared last) goes first, handing its memory back to the resource (which keeps it); then arena_
// frees everything at once. The resource has nothing to release.
TwinView::~TwinView() = default;

void TwinView::prefetch_outer() const {
  __builtin_prefetch(wrapped_.get_array().data());
}

void TwinView::prefetch_inner() const {
  const auto& td = wrapped_.get_array()[0];
  if (!td.is_object() || td.get_object().empty()) return;
  // The member table: the top-level members a filter most often reads.
  const auto* table = reinterpret_cast<const char*>(td.get_object().begin());
  for (int line = 0; line < 4; ++line) __builtin_prefetch(table + line * 64);
}

std::shared_ptr<const TwinView> TwinView::make(const TwinRecord& twin) {
  boost::json::array outer;
  outer.emplace_back(to_json(twin));
  const boost::json::value wrapped(std::move(outer));
  // Measure: copy into a scratch buffer, growing it until the copy fits.
  std::size_t scratch_size = 16 * 1024;
  std::size_t needed = 0;
  for (;;) {
    auto scratch = std::make_unique_for_overwrite<unsigned char[]>(scratch_size);
    BumpResource counter(scratch.get(), scratch_size, false);
    try {
      boost::json::value measured(wrapped, boost::json::storage_ptr(&counter));
      needed = counter.used();
      break;
    } catch (const std::bad_alloc&) {
      scratch_size *= 4;
    }
  }
  // The resource lives at the front of the arena; the value's memory follows it.
  constexpr std::size_t kAlign = alignof(std::max_align_t);
  const std::size_t header = (sizeof(BumpResource) + kAlign - 1) / kAlign * kAlign;
  const std::size_t size = header + needed + kAlign;
  auto arena = std::make_unique_for_overwrite<unsigned char[]>(size);
  new (arena.get()) BumpResource(arena.get() + header, size - header, true);
  return std::shared_ptr<const TwinView>(new TwinView(twin, std::move(arena), size, wrapped));
}

}  // namespace twinbridge::core
