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
boost::json::object to_json(const TwinRecord& twin);

// A registered twin as served, immutable, for the in-memory twin index and discovery answers: the TD as
// to_json() gives it, held in a one-element array (JSONPath filters apply to that array without a copy),
// all of it in one allocation of exactly its size (about a third of the memory of a default-allocated
// boost::json value). Shared between threads through shared_ptr<const TwinView>.
class TwinView {
 public:
  static std::shared_ptr<const TwinView> make(const TwinRecord& twin);
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
  std::size_t bytes() const { return arena_size_; }

  // Scans over many views are bound by memory latency (each TD is a few pointer hops); a scan that asks for
  // the next views' memory early runs about 40 % faster. prefetch_outer() a few views ahead, then
  // prefetch_inner() (which reads what the former fetched) nearer.
  void prefetch_outer() const;
  void prefetch_inner() const;

 private:
  TwinView(const TwinRecord& twin, std::unique_ptr<unsigned char[]> arena, std::size_t size,
           const boost::json::value& wrapped);

  std::string id_;
  std::string system_id_;
  PrincipalId owner_;
  std::int64_t version_;
  std::optional<Timestamp> expires_;
  std::unique_ptr<unsigned char[]> arena_;
  std::size_t arena_size_;
  boost::json::value wrapped_;  // allocated in arena_
};

}  // namespace twinbridge::core
