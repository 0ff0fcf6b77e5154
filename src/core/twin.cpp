#include "core/twin.hpp"

#include <boost/container/pmr/memory_resource.hpp>

#include <cstddef>
#include <new>

namespace twinbridge::core {

namespace {

// Adds to `td`, the TD of twin `t`, what a served TD has beside it (in td's memory).
void add_served_members(const TwinRecord& t, boost::json::object& td) {
  boost::json::object registration(td.storage());
  registration["created"] = format_rfc3339(t.created);
  registration["modified"] = format_rfc3339(t.modified);
  if (t.ttl_seconds) registration["ttl"] = *t.ttl_seconds;
  if (t.expires) registration["expires"] = format_rfc3339(*t.expires);
  td["registration"] = std::move(registration);
  if (!t.system_id.empty()) td["twinbridge:system"] = t.system_id;
  td["twinbridge:version"] = t.version;
}

}  // namespace

boost::json::object to_json(const TwinRecord& t, boost::json::storage_ptr sp) {
  boost::json::object out(t.document, std::move(sp));
  add_served_members(t, out);
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
  // `track_overflow`: record whether anything went to the heap (overflowed()) — only for a resource one
  // thread uses; a view's resource is shared by the threads that copy its JSON (a copy allocates from it).
  BumpResource(unsigned char* base, std::size_t capacity, bool overflow_to_heap, bool track_overflow = false)
      : base_(base),
        capacity_(capacity),
        overflow_to_heap_(overflow_to_heap),
        track_overflow_(track_overflow) {}
  std::size_t used() const { return used_; }
  bool overflowed() const { return overflowed_; }

 private:
  void* do_allocate(std::size_t n, std::size_t align) override {
    const std::size_t offset = (used_ + align - 1) / align * align;
    if (offset + n <= capacity_) {
      used_ = offset + n;
      return base_ + offset;
    }
    if (!overflow_to_heap_) throw std::bad_alloc();
    if (track_overflow_) overflowed_ = true;
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
  const bool track_overflow_;
  std::size_t used_ = 0;
  bool overflowed_ = false;
};

}  // namespace

namespace {

Slab& view_slab() {
  static auto* slab = new Slab;  // never destroyed: views may outlive every other static
  return *slab;
}

}  // namespace

struct TwinView::Deleter {
  void operator()(const TwinView* view) const {
    const std::size_t total = view->total_;
    view->~TwinView();
    Slab::free(const_cast<TwinView*>(view), total);
  }
};

TwinView::TwinView(const Identity& identity, std::size_t total, std::size_t json_bytes,
                   boost::json::storage_ptr storage, const boost::json::value& wrapped)
    : id_(identity.id),
      system_id_(identity.system_id),
      owner_(identity.owner),
      version_(identity.version),
      expires_(identity.expires),
      total_(total),
      json_bytes_(json_bytes),
      wrapped_(wrapped, std::move(storage)) {}

// wrapped_ hands its memory back to the resource (which keeps it); the deleter then frees the whole
// allocation. The resource has nothing to release.
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

namespace {

// A thread's scratch buffer, kept between views: building a view allocates nothing on the heap.
class Scratch {
 public:
  unsigned char* data() { return buffer_.get(); }
  std::size_t size() const { return size_; }
  void grow() {
    size_ *= 4;
    buffer_ = std::make_unique_for_overwrite<unsigned char[]>(size_);
  }

 private:
  std::size_t size_ = 16 * 1024;
  std::unique_ptr<unsigned char[]> buffer_ = std::make_unique_for_overwrite<unsigned char[]>(size_);
};

}  // namespace

std::shared_ptr<const TwinView> TwinView::make(const Identity& identity, const boost::json::value& wrapped) {
  thread_local Scratch scratch;
  std::size_t needed = 0;
  for (;;) {
    BumpResource counter(scratch.data(), scratch.size(), false);
    try {
      boost::json::value measured(wrapped, boost::json::storage_ptr(&counter));
      needed = counter.used();
      break;
    } catch (const std::bad_alloc&) {
      scratch.grow();
    }
  }
  // One allocation of the slab: the view, the resource, then the value's memory.
  constexpr std::size_t kAlign = alignof(std::max_align_t);
  constexpr std::size_t view_bytes = (sizeof(TwinView) + kAlign - 1) / kAlign * kAlign;
  constexpr std::size_t resource_bytes = (sizeof(BumpResource) + kAlign - 1) / kAlign * kAlign;
  const std::size_t json_bytes = needed + kAlign;
  const std::size_t total = view_bytes + resource_bytes + json_bytes;
  auto* memory = static_cast<unsigned char*>(view_slab().allocate(total));
  auto* resource =
      new (memory + view_bytes) BumpResource(memory + view_bytes + resource_bytes, json_bytes, true);
  TwinView* view = nullptr;
  try {
    view = new (memory) TwinView(identity, total, json_bytes, boost::json::storage_ptr(resource), wrapped);
  } catch (...) {
    Slab::free(memory, total);
    throw;
  }
  return std::shared_ptr<const TwinView>(view, Deleter{});  // on failure, shared_ptr itself calls the deleter
}

std::shared_ptr<const TwinView> TwinView::make(const TwinRecord& twin) {
  thread_local Scratch scratch;
  thread_local bool overflowed = false;  // the last view outgrew the scratch: grow it (now unused)
  if (overflowed) scratch.grow();
  // The TD as served, built in the scratch buffer (the heap only beyond it), then copied to its place.
  BumpResource built_memory(scratch.data(), scratch.size(), true, true);
  auto view = make(twin, boost::json::object(twin.document, boost::json::storage_ptr(&built_memory)));
  overflowed = built_memory.overflowed();
  return view;
}

std::shared_ptr<const TwinView> TwinView::make(const TwinRecord& twin, boost::json::object&& td) {
  add_served_members(twin, td);
  boost::json::value wrapped(boost::json::array_kind, td.storage());
  wrapped.get_array().emplace_back(std::move(td));  // the same memory: moved, not copied
  return make(Identity{twin.id, twin.system_id, twin.owner, twin.version, twin.expires}, wrapped);
}

std::shared_ptr<const TwinView> TwinView::relocated() const {
  return make(Identity{id_, system_id_, owner_, version_, expires_}, wrapped_);
}

bool TwinView::in_sparse_block() const {
  return view_slab().sparse(this);
}

const Slab& TwinView::memory() {
  return view_slab();
}

}  // namespace twinbridge::core
