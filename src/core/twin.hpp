#pragma once
// A registered digital twin: a W3C WoT Thing Description 1.1 (validated by parse_thing_description, with
// twinbridge's pose extension) plus what the directory keeps about it: which twin system owns it (empty when
// it was registered directly in the WoT directory), who registered it, and the registration information of
// W3C WoT Discovery (created, modified, ttl, expires).

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/ids.hpp"
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
// to_json() gives it, held in a one-element array (JSONPath filters apply to that array without a copy).
// The view and all of its JSON are one allocation of exactly their size from a slab of huge pages
// (core/slab.hpp): about a third of the memory of a default-allocated boost::json value, no allocator
// header, and side by side with the other views. Shared between threads through shared_ptr<const TwinView>.
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
  // memory, e.g. a scratch buffer the TD was just parsed into) before it is copied into the view.
  static std::shared_ptr<const TwinView> make(const TwinRecord& twin, boost::json::object&& td);
  ~TwinView();
  TwinView(const TwinView&) = delete;
  TwinView& operator=(const TwinView&) = delete;

  const std::string& id() const { return id_; }
  const std::string& system_id() const { return system_id_; }
  const PrincipalId& owner() const { return owner_; }
  std::int64_t version() const { return version_; }
  const std::optional<Timestamp>& expires() const { return expires_; }
  const boost::json::value& json() const { return wrapped_.at(0); }
  const boost::json::value& wrapped() const { return wrapped_; }  // [json()]
  std::size_t bytes() const { return json_bytes_; }               // of the JSON

  // The same view in fresh memory of the slab. An owner that keeps views long (the twin index) replaces the
  // views of sparse blocks with their relocated copies, so that those blocks can be freed.
  std::shared_ptr<const TwinView> relocated() const;
  bool in_sparse_block() const;
  // The slab of every view (its figures).
  static const Slab& memory();

  // Scans over many views are bound by memory latency (each TD is a few pointer hops); a scan that asks for
  // the next views' memory early runs about 40 % faster. prefetch_outer() a few views ahead, then
  // prefetch_inner() (which reads what the former fetched) nearer.
  void prefetch_outer() const;
  void prefetch_inner() const;

 private:
  struct Deleter;
  static std::shared_ptr<const TwinView> make(const Identity& identity, const boost::json::value& wrapped);
  TwinView(const Identity& identity, std::size_t total, std::size_t json_bytes,
           boost::json::storage_ptr storage, const boost::json::value& wrapped);

  std::string id_;
  std::string system_id_;
  PrincipalId owner_;
  std::int64_t version_;
  std::optional<Timestamp> expires_;
  std::size_t total_;           // bytes of the slab's allocation
  std::size_t json_bytes_;      // of them, for the JSON
  boost::json::value wrapped_;  // allocated after the view, in the same allocation
};

}  // namespace twinbridge::core
