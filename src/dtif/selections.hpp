#pragma once
// Selections (FGMV-29 flow 9.2 step 6): a metaverse system's named, persistent choice of the twins it will
// use, by ids or by an RFC 9535 JSONPath filter over their Thing Descriptions. A selection belongs to the
// principal that made it (metaverse systems and operators with twins:read); its id is that principal's
// choice, unique among its own selections (core::validate_id). Selections are versioned (ETag), audited
// ("selection.create", "selection.replace", "selection.delete") and on the change feed (selection_changed,
// selection_deleted). Resolving one gives the twins it selects now: by ids, those that exist (in id order);
// by filter, those whose TD matches, as GET /v1/twins?filter= finds them.
//
// The document (from_document, to_json):
//   {"id", "title"?, "twins": [twin ids] | "filter": "<JSONPath>",
//    "owner", "created", "modified", "version"}   (the last four maintained by twinbridge)
// Exactly one of "twins" (1 to kMaxSelectionTwins distinct twin ids) and "filter" (at most
// kMaxSelectionFilterBytes, parsed when written).
//
// Thread-safety: immutable after construction; every method may be called from any thread. Writes complete
// on the store's writer thread (or at once when the command fails before reaching the store). Errors:
// forbidden (may_select), not_found (no such selection of the caller's), validation_failed (the document,
// every violation's pointer), bad_request (a filter that is not a JSONPath query, at "/filter"), the
// store's (conflict: the caller has a selection of that id; precondition_failed: changed meanwhile).

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/actor.hpp"
#include "dtif/twin_index.hpp"
#include "dtif/twin_registry.hpp"
#include "query/budget.hpp"
#include "store/store.hpp"

namespace twinbridge::dtif {

inline constexpr std::size_t kMaxSelectionTwins = 1000;
inline constexpr std::size_t kMaxSelectionFilterBytes = 4096;
inline constexpr std::size_t kMaxSelectionTitleBytes = 256;

// The selection document as served (see the top of this file).
boost::json::object to_json(const store::SelectionRecord& selection);

class Selections {
 public:
  Selections(store::Store& store, const TwinIndex& index, const TwinRegistry& twins, const core::Clock& clock)
      : store_(store), index_(index), twins_(twins), clock_(clock) {}

  // forbidden unless `caller` is a metaverse system or an operator, with twins:read.
  core::Result<void> may_select(const core::Principal& caller) const;

  // The caller's selection `id`; not_found when it has none of that id.
  core::Result<store::SelectionRecord> find(const core::Actor& actor, const std::string& id) const;
  // The caller's selections, in id order.
  core::Result<store::Page<store::SelectionRecord>> list(const core::Actor& actor,
                                                         const store::PageRequest& page) const;

  // Creates a selection from `document` (its "id" is required), owned by the actor.
  void create(const core::Actor& actor, const boost::json::value& document,
              store::Completion<store::SelectionRecord> done);
  // Replaces `current` (the actor's) with `document`; its "id", when given, must be current's.
  void replace(const core::Actor& actor, const store::SelectionRecord& current,
               const boost::json::value& document, store::Completion<store::SelectionRecord> done);
  void remove(const core::Actor& actor, const store::SelectionRecord& current, store::Completion<void> done);

  // The twins `selection` selects now, in id order, from after `after` (a twin id), at most `limit`. A
  // filter runs under `budget` (may be null: unlimited); once it is exhausted the answer is
  // budget->error("filter"). CPU-bound for a filter: callers run it off the I/O threads.
  core::Result<store::Page<std::shared_ptr<const core::TwinView>>> resolve(
      const store::SelectionRecord& selection, const std::string& after, std::size_t limit,
      query::QueryBudget* budget) const;

 private:
  // The record a document makes; `current` is the stored one on replace (null on create).
  core::Result<store::SelectionRecord> from_document(const boost::json::value& document,
                                                     const store::SelectionRecord* current,
                                                     const core::PrincipalId& owner) const;

  store::Store& store_;
  const TwinIndex& index_;
  const TwinRegistry& twins_;
  const core::Clock& clock_;
};

}  // namespace twinbridge::dtif
