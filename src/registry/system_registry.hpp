#pragma once
// SystemRegistry: registration and discovery of one kind of system (FGMV-29 8.2.1 TPSR + 8.2.2 TPSD for
// 3rd-party systems; the same class serves 8.3.1 DTSR + 8.3.2 DTSD with the twin-system schema). It validates
// registration documents against the kind's published JSON Schema, decides who may register a system of its
// kind and who may change a record (the rules of core/access.hpp), and answers discovery queries: indexed
// equality on type, status and owner in the store, then an optional RFC 9535 JSONPath filter over each
// record, with cursor pagination.
//
// Writes are not done here: the caller (src/http) awaits the store write with the record this class built, so
// that the write carries the caller's audit entry. Every URL member of a registration (each member of
// `endpoints`: twinbridge calls them later) must pass the outbound guard: a URL it refuses is a validation
// error at that URL's pointer. Thread-safe (immutable after construction).

#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "connect/outbound_guard.hpp"
#include "core/json_schema.hpp"
#include "core/principal.hpp"
#include "core/system.hpp"
#include "query/jsonpath.hpp"
#include "store/store.hpp"

namespace twinbridge::registry {

struct DiscoveryQuery {
  std::optional<std::string> type;
  std::optional<core::SystemStatus> status;
  std::optional<std::string> owner;
  bool exclude_down = false;  // leave out systems whose status is down
  // A record matches when the query, applied to a one-element array holding the record, selects at least one
  // node (so `$[?@.service_charge.amount < 0.05]` reads as a filter over the collection).
  std::optional<query::JsonPath> filter;
  // What the filter may cost (null: unlimited); each record examined is a node visited. Once it is exhausted,
  // discover() answers budget->error("filter").
  query::QueryBudget* budget = nullptr;
  std::string after;
  std::size_t limit = 100;
  store::SystemSort sort = store::SystemSort::id;
  bool descending = false;
};

class SystemRegistry {
 public:
  // `schema` must be a JSON Schema document; compiled once (a bad one is a bug: start-up fails). `outbound`
  // decides which endpoint URLs may be registered.
  SystemRegistry(store::Store& store, core::SystemKind kind, std::string_view schema,
                 connect::OutboundGuard outbound);

  core::SystemKind kind() const { return kind_; }
  std::string_view schema_text() const { return schema_text_; }

  // Builds a record from a registration document. On create `current` is null: the id may be given
  // (validated) or is generated, and `owner` owns the record. On replace/patch `current` is the stored
  // record: id and the server-maintained members may be echoed unchanged, not changed. Errors:
  // validation_failed with every bad field's JSON pointer (an endpoint URL the outbound guard refuses among
  // them).
  core::Result<core::SystemRecord> from_document(const boost::json::value& document,
                                                 const core::SystemRecord* current,
                                                 const core::PrincipalId& owner) const;

  // The write-only "credentials" member of a registration document (twin systems): nullopt when the document
  // has none, empty credentials when it is null, else the credentials by security definition name (their
  // shape is the schema's to check). from_document() leaves them out of the record: they are stored apart
  // (store::SystemCredentials) and never served, logged or audited.
  static std::optional<store::SystemCredentials> credentials(const boost::json::value& document);
  // `document` with its credentials replaced by the names they are for (for audit entries).
  static boost::json::value without_secrets(boost::json::value document);

  // forbidden unless `caller` may register a system of this kind: registry:write and a principal of the
  // kind's registrant kind (third-party-system, twin-system), or registry:admin.
  core::Result<void> may_register(const core::Principal& caller) const;

  // forbidden unless `caller` owns `record` (with registry:write) or has registry:admin.
  core::Result<void> may_change(const core::Principal& caller, const core::SystemRecord& record) const;

  core::Result<store::Page<core::SystemRecord>> discover(const DiscoveryQuery& query) const;

 private:
  store::Store& store_;
  core::SystemKind kind_;
  std::string_view schema_text_;
  core::JsonSchema schema_;
  connect::OutboundGuard outbound_;
};

}  // namespace twinbridge::registry
