#pragma once
// TwinService: the one command path of the twin plane (FGMV-29 8.3.3 DTIA, 8.3.4 DTS, 8.3.5 DTAC). Every
// change of a twin — its TD (create, replace, remove), its state (reports of the physical side, one twin or
// a batch of many), its access control policy — enters here, whatever adapter it came by (HTTP, WebSocket,
// MQTT, WoT observe): it is validated against the TD, checked for ownership and access, versioned, audited
// (TD and policy changes; state changes are recorded by the change feed alone) and stored. Adapters parse
// and render; they decide nothing about twins.
//
// State. Each twin's latest accepted state is kept in memory (loaded from the store on first use). A report
// is ordered against it by the DT system's sequence number or time (core::change_order: an older report is
// refused, a duplicate acknowledged without a write), checked by the twin's core::StateSchema, and split:
//   - durable members are written to the store (one write for a whole batch) and acknowledged once
//     committed; the change feed then carries them, in order, to every subscriber;
//   - ephemeral members (TD term "twinbridge:ephemeral" on a property, "twinbridge:poseEphemeral" for the
//     pose) are fanned out through the stream hub without waiting for the store (no sequence number; the
//     live changes of a run of a batch together, once the run is checked) and only their latest value
//     is kept, in memory. A report of ephemeral members only leaves the stored state as it is; its source
//     facts are kept in memory beside it, and later reports are ordered against the newer of the two.
// Changes of one twin are applied and written in the order they were accepted: the twin's lock is held from
// reading its state until its write is queued (a batch takes the locks of its twins in id order). The store
// checks the expected version as well, so a write that would not follow the state it was computed from is
// refused (precondition_failed) instead of overwriting; the twin is then read again from the store.
//
// Reads: a twin's state with the live values of its ephemeral members, marked stale (since when, why) when
// its twin system is down or a value is older than its declared maximum age (TD term "twinbridge:maxAge",
// seconds, on a property or the whole TD): never an invented value.
//
// Access control: see decide(). Thread-safety: every method may be called from any thread; completions run
// on the store's writer thread (or at once when a command fails before reaching the store) and must not
// block.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/actor.hpp"
#include "core/policy.hpp"
#include "core/twin_state.hpp"
#include "dtif/stream_hub.hpp"
#include "dtif/twin_index.hpp"
#include "dtif/twin_registry.hpp"
#include "registry/system_monitor.hpp"
#include "store/change_feed.hpp"

namespace twinbridge::dtif {

inline constexpr std::string_view kMaxAgeTerm = "twinbridge:maxAge";
// A batch holds at most this many reports.
inline constexpr std::size_t kMaxBatchReports = 10'000;

// One change of one twin's state as its DT system reports it.
struct StateReport {
  std::string twin_id;
  boost::json::value patch;  // RFC 7396 merge patch of the state document: properties, pose, actions
  std::optional<std::int64_t> source_seq;
  std::optional<core::Timestamp> source_time;
};

// Takes the DT system's facts a report may carry beside its patch, "sourceTime" (RFC 3339) and "sourceSeq"
// (integer), out of `members` into `report`. Errors: validation_failed at `base` + "/sourceTime" etc.
core::Result<void> take_report_facts(boost::json::object& members, const std::string& base,
                                     StateReport& report);
// A change in the batch format {"twin", "patch", "sourceTime"?, "sourceSeq"?} (POST
// /v1/twin-systems/{id}/state, MQTT). Errors: validation_failed with the pointer under `base`.
core::Result<StateReport> read_state_change(const boost::json::value& change, const std::string& base);
// The same, moving the patch out of `change` (not copying it) when the change is valid; an invalid one is
// left as it was.
core::Result<StateReport> take_state_change(boost::json::value& change, const std::string& base);

// The outcome of one report: the twin's state after it (a duplicate: the current one).
using ReportResult = core::Result<std::shared_ptr<const core::TwinState>>;

// Why a state is served as stale.
struct Staleness {
  core::Timestamp since{};
  std::string reason;
  std::vector<std::string> properties;  // the values older than their maximum age (empty: all of them)
};

// A twin's state as served.
struct StateView {
  std::shared_ptr<const core::TwinView> twin;  // the twin (its TD) the state was read with
  std::shared_ptr<const core::TwinState> state;
  boost::json::object live;  // the latest values of ephemeral properties
  std::map<std::string, core::Timestamp> live_updated;
  std::optional<core::Pose> live_pose;  // the latest ephemeral pose
  std::optional<core::Timestamp> live_pose_updated;
  std::optional<Staleness> stale;
};

// The state document of a view: the state's, with the live values merged in, "stale" {since, reason,
// properties} when stale, and only the properties `readable` admits (all when null).
boost::json::object to_json(const StateView& view,
                            const std::function<bool(std::string_view property)>& readable = nullptr);

// The principal of twinbridge's own commands on behalf of a twin system (core::Actor of internal_actor).
inline constexpr std::string_view kAcquisitionPrincipal = "twinbridge:acquisition";

// The actor of commands twinbridge makes itself, on behalf of the twin system `system_id`: the acquisition
// (dtif/acquisition.hpp) reports the values it fetched from the system and seeds policies from its permission
// answer. Its principal is kAcquisitionPrincipal (the reserved "twinbridge:" prefix; no credential can name
// it), of kind operator with the admin role, so it passes report()'s and set_policy()'s ownership checks:
// whoever builds it decides first what the command may do (the acquisition reports only twins of
// `system_id`, through report()'s system_id). Its credential is "on-behalf-of:<system_id>" and its channel
// `channel`, so that audit entries and state changes say where the change came from; `request_id` ties them
// to the request that caused them.
core::Actor internal_actor(core::Channel channel, std::string_view system_id, std::string request_id);

class TwinService final : public store::ChangeConsumer {
 public:
  // `outbound` (the operator's outbound.allow) checks the URLs of the TDs' forms when they are registered.
  TwinService(store::Store& store, const TwinIndex& index, StreamHub& hub,
              const registry::SystemMonitor& monitor, const core::Clock& clock,
              connect::OutboundGuard outbound);

  const TwinRegistry& registry() const { return registry_; }
  const TwinIndex& index() const { return index_; }

  // TD commands. `system` is the twin system the new twin belongs to (null: a directory twin, held by the
  // actor). `detail` goes into the audit entry. Errors: forbidden (may_publish), validation_failed (the TD,
  // every violation's pointer), the store's (conflict: id taken; precondition_failed: changed meanwhile).
  void create(const core::Actor& actor, const core::SystemRecord* system, const boost::json::value& td,
              boost::json::object detail, store::Completion<core::TwinRecord> done);
  void replace(const core::Actor& actor, const core::TwinRecord& current, const boost::json::value& td,
               std::string action, boost::json::object detail, store::Completion<core::TwinRecord> done);
  void remove(const core::Actor& actor, const core::TwinRecord& current, boost::json::object detail,
              store::Completion<void> done);

  // State reports of the physical side, by the principal that holds the twins (twins:publish). One result
  // per report, in order; the completion runs once every durable part is committed. With `system_id`, every
  // twin must belong to that twin system. Per report: not_found (no such twin), forbidden, validation_failed
  // (pointers into the report's patch), conflict (older than the current state); a store failure fails
  // every report that reached it.
  // A batch is checked in runs of kLockRun reports, each run's twins locked (in id order) until its writes
  // are queued: another batch, or one change on an I/O thread, waits for one run at most, and the first run
  // commits while the next ones are checked. A twin's changes are applied in the order of the batch.
  static constexpr std::size_t kLockRun = 32;
  void report(const core::Actor& actor, std::vector<StateReport> reports,
              const std::optional<std::string>& system_id, store::Completion<std::vector<ReportResult>> done);

  // The state of a twin; not_found when there is no such twin. A short store read on first use.
  core::Result<StateView> state(const std::string& twin_id);

  // Access control. The deciding rule, for `actor` doing `op` on `affordance` of the twin:
  //   - the TD bounds everything (core::check_characteristics): an affordance it does not declare, or an
  //     operation its characteristics exclude, is refused for everyone;
  //   - the twin's holder (the owner of its twin system, or of a directory twin) and registry:admin may do
  //     everything;
  //   - with a policy, core::decide (an explicit deny wins; no matching rule denies);
  //   - without one, principals with twins:read may read, observe and subscribe; writes and invocations
  //     need a policy that allows them.
  core::Result<core::Decision> decide(const core::Actor& actor, core::Operation op,
                                      const std::string& twin_id, std::string_view affordance);
  // Whether `actor` may read the twin's state at all: with twins:read, as its holder (a twin system reads the
  // twins it publishes) or with registry:admin. forbidden otherwise; not_found when there is no such twin.
  core::Result<void> may_read(const core::Actor& actor, const std::string& twin_id);
  // Which properties of the twin `actor` may `op` (readproperty, observeproperty), decided as decide() does,
  // with the policy read once: for serving a whole state, or a stream's changes. forbidden as may_read().
  core::Result<std::function<bool(std::string_view property)>> readable(
      const core::Actor& actor, const std::string& twin_id,
      core::Operation op = core::Operation::readproperty);
  // decide() for a principal named by id (POST /v1/access/check), by an actor with registry:read.
  core::Result<core::Decision> decide_for(const core::Principal& subject, core::Operation op,
                                          const std::string& twin_id, std::string_view affordance);

  // The policy of a twin (nullopt: none); not_found when there is no such twin.
  core::Result<std::optional<store::PolicyRecord>> policy(const std::string& twin_id);
  // Sets the policy: by the twin's holder or registry:admin. Validated (core::parse_policy) and checked
  // against the TD (core::check_policy_affordances). expected_version: as Store::put_policy.
  void set_policy(const core::Actor& actor, const std::string& twin_id, const boost::json::value& document,
                  std::optional<std::int64_t> expected_version, store::Completion<store::PolicyRecord> done);

  // Seeds the policy of a twin that has none yet from `policy` (the permission answer of its twin system,
  // core::policy_from_permission_answer), checked against the TD (core::check_policy_affordances). Audited
  // as "twin.policy" with detail {"seeded_from": source}. Errors as set_policy; precondition_failed when the
  // twin has a policy by now (a policy someone set is never replaced by an answer).
  void seed_policy(const core::Actor& actor, const std::string& twin_id, const core::Policy& policy,
                   std::string source, store::Completion<store::PolicyRecord> done);

  // Follows the change feed: a changed TD is compiled again, a deleted twin forgotten.
  void apply(std::span<const store::ChangePtr> changes) override;

  // Twins whose state is held in memory.
  std::size_t cached() const;

 private:
  struct ReportOutcome;
  // Run [first, last) of a batch of report(): its twins locked, each report checked (its result set), the
  // run's writes queued (each counted in `outcome` until it completes).
  void report_run(const core::Actor& actor, std::vector<StateReport>& reports, std::size_t first,
                  std::size_t last, const std::optional<std::string>& system_id, core::Timestamp now,
                  const std::shared_ptr<ReportOutcome>& outcome);
  static void finish(const std::shared_ptr<ReportOutcome>& outcome);
  struct Entry;
  std::shared_ptr<Entry> entry(const std::string& twin_id);
  // A live change of twin `id` (never stored, sequence 0) taken in at `at` (`ingested_at` in RFC 3339):
  // `properties` is the text of the members of its "properties" ("name":value,...), `pose` the text of its
  // pose; either may be empty.
  static store::ChangePtr live_change(const std::string& id, core::Timestamp at, std::string_view ingested_at,
                                      std::string_view properties, std::string_view pose);
  // With the entry's lock held: the TD's schema and the current state, loaded when needed.
  core::Result<void> prepare(Entry& e, const core::TwinView& twin);
  core::Result<core::Decision> decide_impl(const core::Principal& subject, core::Operation op,
                                           const std::string& twin_id, std::string_view affordance);
  // `live`: when each live value of an ephemeral property was taken in.
  std::optional<Staleness> staleness(const core::TwinView& twin, const core::TwinState& state,
                                     const std::map<std::string, core::Timestamp>& live) const;

  store::Store& store_;
  const TwinIndex& index_;
  StreamHub& hub_;
  const registry::SystemMonitor& monitor_;
  const core::Clock& clock_;
  TwinRegistry registry_;

  // The compiled schema of a TD, shared by every twin whose TD has the same shape (StateSchema::shape_key):
  // compiled once for a fleet of identical devices.
  std::shared_ptr<const core::StateSchema> schema_for(const boost::json::object& td);
  std::mutex schemas_mutex_;
  std::unordered_map<std::string, std::weak_ptr<const core::StateSchema>> schemas_;
  std::size_t schemas_swept_ = 64;

  mutable std::mutex entries_mutex_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;
};

}  // namespace twinbridge::dtif
