#include "core/twin.hpp"

#include <boost/json/monotonic_resource.hpp>

#include <cstddef>
#include <cstring>
#include <memory>
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

Slab& view_slab() {
  static auto* slab = new Slab;  // never destroyed: views may outlive every other static
  return *slab;
}

constexpr std::size_t kViewBytes = (sizeof(TwinView) + alignof(std::max_align_t) - 1) /
                                   alignof(std::max_align_t) * alignof(std::max_align_t);

}  // namespace

struct TwinView::Deleter {
  void operator()(const TwinView* view) const {
    const std::size_t total = view->total_;
    view->~TwinView();
    Slab::free(const_cast<TwinView*>(view), total);
  }
};

TwinView::TwinView(const Identity& identity, std::size_t total, std::size_t packed_size)
    : id_(identity.id),
      system_id_(identity.system_id),
      owner_(identity.owner),
      version_(identity.version),
      expires_(identity.expires),
      total_(total),
      packed_size_(packed_size) {}

TwinView::~TwinView() = default;

const std::uint8_t* TwinView::packed_bytes() const {
  return reinterpret_cast<const std::uint8_t*>(this) + kViewBytes;
}

boost::json::object TwinView::td_json(boost::json::storage_ptr sp) const {
  return std::move(packed::unpack(td_, std::move(sp)).as_object());
}

void TwinView::prefetch_outer() const {
  __builtin_prefetch(packed_bytes());
}

void TwinView::prefetch_inner() const {
  // The top-level members a filter most often reads follow the start.
  for (int line = 1; line < 4; ++line) __builtin_prefetch(packed_bytes() + line * 64);
}

std::shared_ptr<const TwinView> TwinView::allocate(const Identity& identity, std::size_t packed_size,
                                                   const std::function<void(std::uint8_t*)>& write) {
  const std::size_t total = kViewBytes + packed_size;
  auto* memory = static_cast<std::uint8_t*>(view_slab().allocate(total));
  TwinView* view = nullptr;
  try {
    view = new (memory) TwinView(identity, total, packed_size);
  } catch (...) {
    Slab::free(memory, total);
    throw;
  }
  std::shared_ptr<const TwinView> shared(view, Deleter{});  // on failure, shared_ptr calls the deleter
  write(memory + kViewBytes);
  view->td_ = packed::Ref(memory + kViewBytes).at(0);
  return shared;
}

std::shared_ptr<const TwinView> TwinView::make(const Identity& identity, const boost::json::value& wrapped) {
  thread_local packed::Packer packer;
  const std::size_t size = packer.measure(wrapped);
  return allocate(identity, size, [](std::uint8_t* out) { packer.write(out); });
}

std::shared_ptr<const TwinView> TwinView::make(const TwinRecord& twin) {
  // The TD as served, built in a scratch buffer of the thread (the heap only beyond it), then packed.
  struct Scratch {
    unsigned char buffer[16 * 1024];
    boost::json::monotonic_resource resource{buffer, sizeof buffer};
  };
  thread_local const auto scratch = std::make_unique<Scratch>();
  auto view = make(twin, boost::json::object(twin.document, boost::json::storage_ptr(&scratch->resource)));
  scratch->resource.release();
  return view;
}

std::shared_ptr<const TwinView> TwinView::make(const TwinRecord& twin, boost::json::object&& td) {
  add_served_members(twin, td);
  boost::json::value wrapped(boost::json::array_kind, td.storage());
  wrapped.get_array().emplace_back(std::move(td));  // the same memory: moved, not copied
  return make(Identity{twin.id, twin.system_id, twin.owner, twin.version, twin.expires}, wrapped);
}

std::shared_ptr<const TwinView> TwinView::relocated() const {
  const auto* from = packed_bytes();
  return allocate(Identity{id_, system_id_, owner_, version_, expires_}, packed_size_,
                  [from, size = packed_size_](std::uint8_t* out) { std::memcpy(out, from, size); });
}

bool TwinView::in_sparse_block() const {
  return view_slab().sparse(this);
}

const Slab& TwinView::memory() {
  return view_slab();
}

}  // namespace twinbridge::core
