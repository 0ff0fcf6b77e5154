#pragma once
// A registered digital twin: a W3C WoT Thing Description 1.1 (validated by parse_thing_description, with
// twinbridge's pose extension) plus what the directory keeps about it: which twin system owns it (empty when
// it was registered directly in the WoT directory), who registered it, and the registration information of
// W3C WoT Discovery (created, modified, ttl, expires).

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/ids.hpp"
#include "core/packed_json.hpp"
#include "core/slab.hpp"
#include "core/time.hpp"

namespace twinbridge::core {

struct TwinRecord {
  std::string id;         // the TD's id (an absolute URI)
  std::string system_id;  // the owning twin system, or empty
  PrincipalId owner;      // the principal that registered it
  std::string title;
  boost::json::object document;  // the validated TD, pose extension included
  Timestamp created{};
  Timestamp modified{};
  std::int64_t version = 0;
  std::optional<std::int64_t> ttl_seconds;  // W3C WoT Discovery registration ttl
  std::optional<Timestamp> expires;         // created/modified + ttl; an expired twin is gone
};

// The TD as served: the document plus "registration" {created, modified, ttl?, expires?} (W3C WoT Discovery)
// and "twinbridge:system", "twinbridge:version".
boost::json::object to_json(const TwinRecord& twin, boost::json::storage_ptr sp = {});

// A registered twin as served, immutable, for the in-memory twin index and discovery answers: the TD as
// to_json() gives it, packed (core/packed_json.hpp: about the size of its text, a third of a boost::json
// value's) and held in a one-element array (JSONPath filters apply to that array without a copy). The view
// and its packed TD are one allocation of exactly their size from a slab of huge pages (core/slab.hpp): no
// allocator header, side by side with the other views. Shared between threads through
// shared_ptr<const TwinView>; nothing in it changes after make().
class TwinView {
 public:
  // What a view knows of its twin beside the TD.
  struct Identity {
    const std::string& id;
    const std::string& system_id;
    const PrincipalId& owner;
    std::int64_t version;
    const std::optional<Timestamp>& expires;
  };

  static std::shared_ptr<const TwinView> make(const TwinRecord& twin);
  // The same with `td` in place of twin.document; the served members are added to `td` itself (in its
  // memory, e.g. a scratch buffer the TD was just parsed into) before it is packed into the view.
  static std::shared_ptr<const TwinView> make(const TwinRecord& twin, boost::json::object&& td);
  ~TwinView();
  TwinView(const TwinView&) = delete;
  TwinView& operator=(const TwinView&) = delete;

  const std::string& id() const { return id_; }
  const std::string& system_id() const { return system_id_; }
  const PrincipalId& owner() const { return owner_; }
  std::int64_t version() const { return version_; }
  const std::optional<Timestamp>& expires() const { return expires_; }
  // The TD as served (an object), and the array [td] that filters run over.
  packed::Ref td() const { return td_; }
  packed::Ref wrapped() const { return packed::Ref(packed_bytes()); }
  // Appends the TD's JSON text, as boost::json::serialize(to_json(record)) writes it.
  void append_json(std::string& out) const { packed::append_json(td_, out); }
  // The TD as a boost::json object (a copy: for what reads a TD rarely, such as building its state schema).
  boost::json::object td_json(boost::json::storage_ptr sp = {}) const;
  std::size_t bytes() const { return packed_size_; }  // of the packed TD

  // The same view in fresh memory of the slab. An owner that keeps views long (the twin index) replaces the
  // views of sparse blocks with their relocated copies, so that those blocks can be freed.
  std::shared_ptr<const TwinView> relocated() const;
  bool in_sparse_block() const;
  // The slab of every view (its figures).
  static const Slab& memory();

  // Scans over many views are bound by memory latency; a scan that asks for the next views' memory early
  // runs faster. prefetch_outer() a few views ahead, then prefetch_inner() nearer.
  void prefetch_outer() const;
  void prefetch_inner() const;

 private:
  struct Deleter;
  static std::shared_ptr<const TwinView> make(const Identity& identity, const boost::json::value& wrapped);
  static std::shared_ptr<const TwinView> allocate(const Identity& identity, std::size_t packed_size,
                                                  const std::function<void(std::uint8_t*)>& write);
  TwinView(const Identity& identity, std::size_t total, std::size_t packed_size);
  const std::uint8_t* packed_bytes() const;

  std::string id_;
  std::string system_id_;
  PrincipalId owner_;
  std::int64_t version_;
  std::optional<Timestamp> expires_;
  std::size_t total_;        // bytes of the slab's allocation
  std::size_t packed_size_;  // of them, for the packed [td] after the view
  packed::Ref td_;
};

}  // namespace twinbridge::core
