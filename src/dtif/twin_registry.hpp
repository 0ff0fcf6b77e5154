#pragma once
// TwinRegistry: the twins of digital twin systems (FGMV-29 8.3.1 DTSR, "list of twins"; 8.3.2 DTSD). A twin
// is a W3C WoT Thing Description 1.1 validated by core::parse_thing_description (with twinbridge's pose).
// Twin ids are the TD ids, unique across all systems; a TD without an id gets "urn:uuid:<UUIDv7>". Discovery
// reads the in-memory TwinIndex (id order, or by owning system) and applies an optional RFC 9535 JSONPath
// filter to each TD. Thread-safe (no mutable state of its own).

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "connect/outbound_guard.hpp"
#include "core/principal.hpp"
#include "core/twin.hpp"
#include "dtif/twin_index.hpp"
#include "query/jsonpath.hpp"
#include "store/store.hpp"

namespace twinbridge::dtif {

// The published JSON Schema of twin system registrations (schemas/twin-system.schema.json).
std::string_view twin_system_schema();

struct TwinDiscoveryQuery {
  std::optional<std::string> system_id;
  std::size_t offset = 0;
  // A twin matches when the query, applied to a one-element array holding its TD, selects at least one node.
  std::optional<query::JsonPath> filter;
  // What the filter and the scan may cost (null: unlimited); see TwinIndexQuery::budget.
  query::QueryBudget* budget = nullptr;
  std::string after;
  std::size_t limit = 100;
  TwinSort sort = TwinSort::id;
  bool descending = false;
};

class TwinRegistry {
 public:
  // `outbound` checks the URLs of the TDs' forms (connect::refused_form_urls).
  TwinRegistry(store::Store& store, const TwinIndex& index, const core::Clock& clock,
               connect::OutboundGuard outbound)
      : store_(store), index_(index), clock_(clock), outbound_(std::move(outbound)) {}

  // A twin from a TD document at `pointer` of the request. On replace, `current` is the stored twin: the TD
  // id may be omitted (it stays) but not changed. Errors: validation_failed with every violation's pointer
  // (a form URL the outbound guard refuses among them).
  core::Result<core::TwinRecord> from_document(const boost::json::value& td, std::string_view pointer,
                                               const core::TwinRecord* current, const std::string& system_id,
                                               const core::PrincipalId& owner) const;

  // Twins from the "twins" array of a registration (pointers /twins/<i>/...); ids must be distinct.
  core::Result<std::vector<core::TwinRecord>> from_list(const boost::json::value& twins,
                                                        const std::string& system_id,
                                                        const core::PrincipalId& owner) const;

  // Who may publish twins (core::may_publish_twins): forbidden unless `caller` has twins:publish and holds
  // them (is of kind twin-system and owns their twin system, or for a directory twin published it), or has
  // registry:admin.
  // - twins of the twin system `system` (its initial list, or one added, replaced or removed under it);
  core::Result<void> may_publish(const core::Principal& caller, const core::SystemRecord& system) const;
  // - the stored twin `twin` (of a twin system, or a directory twin);
  core::Result<void> may_publish(const core::Principal& caller, const core::TwinRecord& twin) const;
  // - a new directory twin (a TD written to /things that belongs to no twin system): the caller will hold it.
  core::Result<void> may_publish_directory_twin(const core::Principal& caller) const;

  store::Page<std::shared_ptr<const core::TwinView>> discover(const TwinDiscoveryQuery& query) const;

  // Twins in the index, expired ones not yet removed included.
  std::size_t count() const { return index_.size(); }

  // The twin with this id; not_found when there is none or its registration expired.
  core::Result<core::TwinRecord> find(const std::string& id) const;

 private:
  store::Store& store_;
  const TwinIndex& index_;
  const core::Clock& clock_;
  connect::OutboundGuard outbound_;
};

// Longest registration lifetime a TD may ask for (one year).
inline constexpr std::int64_t kMaxTtlSeconds = 366LL * 24 * 3600;

}  // namespace twinbridge::dtif
