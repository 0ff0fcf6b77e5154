#pragma once
// The store: twinbridge's durable state, in domain terms. Implementations: SqliteStore (embedded default); a
// PostgreSQL store comes later behind the same interface, so nothing above this file knows SQL.
//
// Reads are synchronous and safe from any thread; they are short indexed lookups. Writes are asynchronous:
// each write is queued, several queued writes are committed in one transaction (group commit), and the
// completion runs only after the transaction is durable, on the store's writer thread. Completions must not
// block; they hand the result back to the caller's executor. Every write carries the audit entry that records
// it; both commit together. Every write also records what it changed in the change feed (change.hpp), in the
// same transaction: the feed's sequence, not the writer thread, defines the order of changes. The exceptions
// are record_system_check (the monitor's findings are machine-made and frequent, and the status history they
// write is their own record) and record_acquisition, for the same reasons.
//
// Errors: not_found, conflict (id taken), precondition_failed (expected version differs), unavailable (store
// stopped or not reachable), internal (unexpected database error, logged by the implementation).

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/audit.hpp"
#include "core/error.hpp"
#include "core/health.hpp"
#include "core/principal.hpp"
#include "core/system.hpp"
#include "core/twin.hpp"
#include "store/change.hpp"

namespace twinbridge::store {

template <class T>
using Completion = std::move_only_function<void(core::Result<T>)>;

// Cursor pagination: items sort by a unique key; `after` is the key of the last item of the previous page.
struct PageRequest {
  std::string after;
  std::size_t limit = 100;
};

template <class T>
struct Page {
  std::vector<T> items;
  std::optional<std::string> next_after;  // set when more items follow
};

struct ApiKeyRecord {
  core::ApiKeyId id;
  core::PrincipalId principal;
  std::string hash;  // hex SHA-256 of the token
  std::string label;
  core::Timestamp created{};
  std::optional<core::Timestamp> expires;
};

// A principal together with the API key that authenticated it.
struct Credential {
  core::Principal principal;
  ApiKeyRecord key;
};

struct AuditQuery {
  std::optional<std::string> actor;
  std::optional<std::string> target_type;
  std::optional<std::string> target_id;
  std::optional<std::string> action;
  std::optional<core::Timestamp> since;
  std::int64_t after_seq = 0;  // cursor
  std::size_t limit = 100;
};

// Orders of system discovery: by the member, then by id.
enum class SystemSort { id, name, type, status, created, modified };
std::optional<SystemSort> parse_system_sort(std::string_view member);

// Registered systems of one kind, by indexed equality, in id order (or `sort` order).
struct SystemQuery {
  core::SystemKind kind = core::SystemKind::third_party;
  std::optional<std::string> type;
  std::optional<core::SystemStatus> status;
  std::optional<std::string> owner;
  std::string after;  // cursor: system_cursor() of the last record of the previous page
  std::size_t limit = 100;
  SystemSort sort = SystemSort::id;
  bool descending = false;
};

// The cursor that continues a `sort`-ordered listing after `record`: its id when sorted by id, otherwise the
// JSON text [sort value, id].
std::string system_cursor(const core::SystemRecord& record, SystemSort sort);

// Twins, by owning system, in id order.
struct TwinQuery {
  std::optional<std::string> system_id;
  std::optional<core::Timestamp>
      alive_at;  // leave out twins whose registration expired at or before this time
  std::string after;
  std::size_t offset = 0;  // skip this many (W3C WoT Discovery listing pagination)
  std::size_t limit = 100;
};

// What the monitor learned about one system: a probe sample, a change of status, or both.
struct SystemCheck {
  core::SystemKind kind = core::SystemKind::third_party;
  std::string id;
  std::optional<core::ProbeSample> probe;
  std::optional<core::StatusChange> change;
  core::Timestamp keep_probes_since{};  // probe samples of this system older than this are deleted
  std::size_t keep_history = 1000;      // at most this many status history entries are kept per system
};

// The status history of one system, in seq order (oldest first).
struct StatusHistoryQuery {
  core::SystemKind kind = core::SystemKind::third_party;
  std::string id;
  std::optional<core::Timestamp> since;  // entries at or after
  std::int64_t after_seq = 0;            // cursor
  std::size_t limit = 100;
};

// probe_samples() returns at most this many samples (the newest of the window).
inline constexpr std::size_t kMaxProbeSamples = 100'000;

// Observes store timings for metrics; implementations call it from their own threads.
class StoreObserver {
 public:
  virtual ~StoreObserver() = default;
  virtual void on_read(std::string_view operation, std::chrono::nanoseconds latency) = 0;
  virtual void on_commit(std::size_t writes, std::chrono::nanoseconds latency) = 0;
};

// What a principal owns: registered systems (of both kinds) and directory twins (twins of no twin system,
// registered through the WoT directory). The twins of a twin system go with their system. Lists are bounded;
// the counts are exact.
struct OwnedRegistrations {
  std::vector<std::pair<core::SystemKind, std::string>> systems;  // in (kind, id) order
  std::vector<std::string> twins;                                 // directory twins, in id order
  std::int64_t system_count = 0;
  std::int64_t twin_count = 0;
  bool empty() const { return system_count == 0 && twin_count == 0; }
};

// Lists at most this many of each in OwnedRegistrations (errors and transfer answers).
inline constexpr std::size_t kOwnedListLimit = 20;

// One sentence naming what a principal owns, bounded: "twin-system 'plant-7', directory twin 'urn:x' and 3
// more (4 systems, 1 directory twin)".
std::string describe(const OwnedRegistrations& owned);

// Hears of every committed change (the change feed's source): on the store's writer thread, once per
// commit, with the commit's changes in sequence order, after the commit and before any completion of its
// writes runs, so that a consumer that keeps state (an index) is never behind a write that was acknowledged.
// Must not block or call back into the store's writes.
class ChangeListener {
 public:
  virtual ~ChangeListener() = default;
  virtual void committed(std::span<const ChangePtr> changes) = 0;
  // After the writes of the commit were acknowledged, on the same thread: for work that must not delay them.
  virtual void settled() {}
};

// The changes the store keeps: every change from `first` to `last`. `last` is the newest change ever
// committed (0 before the first); `first` is last + 1 when none is kept. Older changes were pruned (the
// store keeps a configured number).
struct ChangeWindow {
  std::int64_t first = 1;
  std::int64_t last = 0;
};

// One change of a twin's state (Store::write_states).
struct StateWrite {
  std::shared_ptr<const core::TwinState> state;  // the new state
  std::int64_t expected_version = 0;             // the stored state's version; 0 when none is stored yet
  std::string data;                              // the change as streams carry it (ChangeType::state_changed)
  // The state as stored, core::to_json(*state) as text, made by the caller off the store's writer thread;
  // empty: the store makes it.
  std::string document;
};

// The access control policy of a twin (core/policy.hpp), as stored.
struct PolicyRecord {
  std::string twin_id;
  boost::json::object document;  // the policy document (core::to_json(Policy))
  std::int64_t version = 0;
  core::Timestamp modified{};
};

// A named, persistent selection of twins that a principal made (FGMV-29 flow 9.2 step 6), as stored: its
// owner and id (unique per owner) and its document as dtif::Selections wrote it ({"title"?, "twins": [...]}
// or {"title"?, "filter": "<JSONPath>"}); the store keeps the document as it is.
struct SelectionRecord {
  core::PrincipalId owner;
  std::string id;
  boost::json::object document;
  core::Timestamp created{};
  core::Timestamp modified{};
  std::int64_t version = 0;
};

// The credentials a system gave twinbridge for calling it: for a twin system, per name of a security
// definition of its TDs, {"username", "password"} or {"token"}. Stored apart from the registration (a row of
// its own, deleted with the system); never served, never in an audit entry, a change or a log line. Empty:
// none.
struct SystemCredentials {
  boost::json::object by_scheme;
};

// What twinbridge last acquired of a twin from its twin system (DTIA 8.3.3): its values and the system's
// permission answer, each with when and from where, and the failure since the last success. Written by the
// acquisition only (record_acquisition); deleted with the twin.
struct AcquisitionRecord {
  std::string twin_id;
  std::optional<core::Timestamp> values_at;       // the last values taken in
  boost::json::object values_from;                // {"system", "operation", "urls"} of those values
  std::optional<core::Timestamp> failing_since;   // the first failed attempt after the last success
  std::string problem;                            // what the last failed attempt said (empty after a success)
  std::optional<core::Timestamp> permissions_at;  // the last permission answer
  std::string permissions_from;                   // the URL that gave it
  boost::json::value permissions_answer;          // the answer as received (null: none yet)
  std::int64_t version = 0;                       // set by the store: +1 on every record
};

// A stored twin whose TD is still the JSON text it was stored as (twin.document is empty).
struct TwinText {
  core::TwinRecord twin;
  std::string document;
};

// Reads JSON text the store wrote (core::read_json), into memory of `sp`. Text that is not valid UTF-8
// (written by an older twinbridge) is read with U+FFFD in place of the bad bytes inside strings, and logged
// naming `what` (and, when given, whose it is: `of`); text that does not parse reads as null.
boost::json::value parse_stored_json(std::string_view text, std::string_view what = "a JSON column",
                                     boost::json::storage_ptr sp = {}, std::string_view of = {});

class Store {
 public:
  virtual ~Store() = default;

  // At most one; set before start() (and not changed while the store runs).
  virtual void set_change_listener(ChangeListener* listener) = 0;

  // Starts the writer; stop() commits every write already queued, then refuses new ones with `unavailable`.
  virtual void start() = 0;
  virtual void stop() = 0;

  // Readiness: a trivial query succeeds.
  virtual core::Result<void> ping() = 0;

  // The change feed as kept: its window, and the kept changes after `after_seq` in sequence order (at most
  // `limit`; typed members unset). A read of a range no longer kept starts at the window's first change.
  virtual core::Result<ChangeWindow> change_window() = 0;
  virtual core::Result<std::vector<Change>> changes(std::int64_t after_seq, std::size_t limit) = 0;

  virtual core::Result<core::Principal> principal(const core::PrincipalId& id) = 0;
  virtual core::Result<Page<core::Principal>> principals(const PageRequest& page) = 0;
  // nullopt when no key has that id.
  virtual core::Result<std::optional<Credential>> credential(const core::ApiKeyId& key_id) = 0;
  virtual core::Result<std::vector<ApiKeyRecord>> api_keys(const core::PrincipalId& principal) = 0;
  virtual core::Result<Page<core::AuditEntry>> audit(const AuditQuery& query) = 0;
  // What `principal` owns (lists bounded by kOwnedListLimit).
  virtual core::Result<OwnedRegistrations> owned_by(const core::PrincipalId& principal) = 0;

  // not_found when there is no such system.
  virtual core::Result<core::SystemRecord> system(core::SystemKind kind, const std::string& id) = 0;
  virtual core::Result<Page<core::SystemRecord>> systems(const SystemQuery& query) = 0;

  // not_found when there is no such twin.
  virtual core::Result<core::TwinRecord> twin(const std::string& id) = 0;
  virtual core::Result<Page<core::TwinRecord>> twins(const TwinQuery& query) = 0;
  // Every stored twin (expired ones too; not one whose id is not valid UTF-8), in the store's own order, in
  // batches of at most `batch` handed to `each` as they are read, each TD still the JSON text it was stored
  // as: start-up reads them all, and parses them on the threads and into the memory it picks
  // (parse_stored_json).
  virtual core::Result<void> each_twin_text(std::size_t batch,
                                            const std::function<void(std::vector<TwinText>&&)>& each) = 0;

  // The stored state of a twin; nullopt when none was stored (a twin starts from its TD).
  virtual core::Result<std::optional<core::TwinState>> twin_state(const std::string& id) = 0;
  // The policy of a twin; nullopt when it has none.
  virtual core::Result<std::optional<PolicyRecord>> twin_policy(const std::string& id) = 0;

  // Monitoring of systems. An unknown system has no history and no samples (no error).
  // The status history in seq order; Page::next_after is the seq of the last entry, for after_seq.
  virtual core::Result<Page<core::StatusHistoryEntry>> status_history(const StatusHistoryQuery& query) = 0;
  // The newest history entry at or before `at` (the status in force then), nullopt when there is none.
  virtual core::Result<std::optional<core::StatusHistoryEntry>> status_before(core::SystemKind kind,
                                                                              const std::string& id,
                                                                              core::Timestamp at) = 0;
  // The probe samples with from <= at <= to, ordered by time. Bounded: when the window holds more than
  // kMaxProbeSamples, only the newest kMaxProbeSamples are returned.
  virtual core::Result<std::vector<core::ProbeSample>> probe_samples(core::SystemKind kind,
                                                                     const std::string& id,
                                                                     core::Timestamp from,
                                                                     core::Timestamp to) = 0;

  // Writes. `principal.version` is set by the store (1 on create, expected + 1 on update); created/modified
  // come from the audit entry's time. create fails with conflict when the id is taken.
  virtual void create_principal(core::Principal principal, std::optional<ApiKeyRecord> key,
                                core::AuditEntry audit, Completion<core::Principal> done) = 0;
  virtual void update_principal(core::Principal principal, std::int64_t expected_version,
                                core::AuditEntry audit, Completion<core::Principal> done) = 0;
  // create_principal fails with conflict (pointer /id) when the id belonged to a deleted principal: ids are
  // never reused (a tombstone is kept), so that nothing a deleted principal owned or was granted can pass to
  // a newcomer.
  // Deletes the principal and its keys, and keeps its id as a tombstone. With expected_version, fails with
  // precondition_failed when it differs; fails with conflict, naming them (describe()), while it owns
  // registrations (systems or directory twins): they are transferred or deleted first.
  virtual void delete_principal(core::PrincipalId id, std::optional<std::int64_t> expected_version,
                                core::AuditEntry audit, Completion<void> done) = 0;
  // Moves everything `from` owns to `to` in one transaction: its systems (each gets version + 1 and a new
  // modified time: the owner is part of the record), the twins of its twin systems and its directory twins
  // (their owner only: a twin's TD and version do not change). not_found when either principal does not
  // exist; bad_request when they are the same. The completion gets what moved (lists bounded).
  virtual void transfer_registrations(core::PrincipalId from, core::PrincipalId to, core::AuditEntry audit,
                                      Completion<OwnedRegistrations> done) = 0;
  // Systems: version, created and modified are set by the store as for principals; create fails with conflict
  // when the (kind, id) is taken or when its owner is a deleted principal (a registration that raced the
  // owner's deletion); update and delete fail with precondition_failed when the version differs.
  // The status members belong to the monitor (record_system_check): create stores the record's, update keeps
  // the stored ones and returns them. Deleting a system deletes its probe samples and status history.
  virtual void create_system(core::SystemRecord record, core::AuditEntry audit,
                             Completion<core::SystemRecord> done) = 0;
  virtual void update_system(core::SystemRecord record, std::int64_t expected_version, core::AuditEntry audit,
                             Completion<core::SystemRecord> done) = 0;
  // Deleting a twin system deletes its twins too; the completion gets their ids (empty for 3rd-party
  // systems).
  virtual void delete_system(core::SystemKind kind, std::string id,
                             std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                             Completion<std::vector<std::string>> done) = 0;
  // A twin system and its initial twins, in one transaction. conflict when the system id or a twin id is
  // taken (the error's pointer names the twin: /twins/<index>/id).
  virtual void register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                                    core::AuditEntry audit, Completion<core::SystemRecord> done) = 0;
  // Twins: versions and timestamps as for principals. create fails with conflict when any twin (of any
  // system) has the id, and with not_found when its twin system does not exist (deregistered meanwhile).
  // Deleting a twin system (delete_system) deletes its twins. Deleting a twin deletes its state and policy.
  virtual void create_twin(core::TwinRecord twin, core::AuditEntry audit,
                           Completion<core::TwinRecord> done) = 0;
  virtual void update_twin(core::TwinRecord twin, std::int64_t expected_version, core::AuditEntry audit,
                           Completion<core::TwinRecord> done) = 0;
  virtual void delete_twin(std::string id, std::optional<std::int64_t> expected_version,
                           core::AuditEntry audit, Completion<void> done) = 0;
  // Stores what the monitor learned about a system, in one write: the probe sample (samples older than
  // keep_probes_since are deleted), and with a change its new status, reason and status_since (= change.at)
  // on the system record, without changing its version or modified time (a status is not an edit of the
  // registration, and an ETag held by a client stays valid), plus a history entry (beyond keep_history
  // entries, the oldest are deleted). Not audited: there is one write per probe of every system, and the
  // status history records the changes. Fails with not_found, writing nothing, when the system does not exist
  // (a check that raced the system's deletion is dropped).
  virtual void record_system_check(SystemCheck check, Completion<void> done) = 0;
  // Many checks (of many systems) in one write, as record_system_check each; checks of systems that no longer
  // exist are skipped. The monitor batches plain probe samples this way.
  virtual void record_system_checks(std::vector<SystemCheck> checks, Completion<void> done) = 0;
  // Twin state changes (of one twin or many), in one write, each on its own: the completion gets one result
  // per write, in order: not_found when the twin does not exist (deleted meanwhile), precondition_failed when
  // the stored state's version is not expected_version. Each stored change is a state_changed change.
  // Not audited: there may be thousands per second, and the change feed is their record.
  virtual void write_states(std::vector<StateWrite> writes,
                            Completion<std::vector<core::Result<void>>> done) = 0;
  // Creates or replaces a twin's policy: version 1 on create, expected + 1 on replace; modified from the
  // audit entry. expected_version 0: the twin must have none yet; nullopt: whatever it has. not_found when
  // the twin does not exist; precondition_failed when the version differs. A policy_changed change.
  virtual void put_policy(PolicyRecord record, std::optional<std::int64_t> expected_version,
                          core::AuditEntry audit, Completion<PolicyRecord> done) = 0;
  virtual void add_api_key(ApiKeyRecord key, core::AuditEntry audit, Completion<ApiKeyRecord> done) = 0;
  virtual void revoke_api_key(core::PrincipalId principal, core::ApiKeyId key, core::AuditEntry audit,
                              Completion<void> done) = 0;

  // Selections, by owner and id: versions and timestamps as for principals. create fails with conflict
  // (pointer /id) when the owner has a selection of that id; update and delete with not_found when there is
  // none and precondition_failed when the version differs. Changes: selection_changed, selection_deleted.
  // Deleting a principal deletes its selections.
  virtual core::Result<std::optional<SelectionRecord>> selection(const core::PrincipalId& owner,
                                                                 const std::string& id) = 0;
  // The owner's selections in id order.
  virtual core::Result<Page<SelectionRecord>> selections(const core::PrincipalId& owner,
                                                         const PageRequest& page) = 0;
  virtual void create_selection(SelectionRecord record, core::AuditEntry audit,
                                Completion<SelectionRecord> done) = 0;
  virtual void update_selection(SelectionRecord record, std::int64_t expected_version, core::AuditEntry audit,
                                Completion<SelectionRecord> done) = 0;
  virtual void delete_selection(core::PrincipalId owner, std::string id,
                                std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                                Completion<void> done) = 0;

  // The credentials of a system (SystemCredentials); nullopt when it has none.
  virtual core::Result<std::optional<SystemCredentials>> system_credentials(core::SystemKind kind,
                                                                            const std::string& id) = 0;
  // As register_twin_system and update_system, and in the same transaction the system's credentials become
  // `credentials` (empty: none). The other writes of systems leave the credentials as they are;
  // delete_system deletes them.
  virtual void register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                                    SystemCredentials credentials, core::AuditEntry audit,
                                    Completion<core::SystemRecord> done) = 0;
  virtual void update_system(core::SystemRecord record, std::int64_t expected_version,
                             SystemCredentials credentials, core::AuditEntry audit,
                             Completion<core::SystemRecord> done) = 0;

  // The last acquisition of a twin; nullopt when there was none.
  virtual core::Result<std::optional<AcquisitionRecord>> acquisition(const std::string& twin_id) = 0;
  // Replaces the twin's acquisition record; the completion gets it with its version. not_found when the twin
  // does not exist. Neither audited nor on the change feed, like record_system_check: machine-made and
  // frequent; the values themselves reach the feed as state changes, a seeded policy as a policy change.
  virtual void record_acquisition(AcquisitionRecord record, Completion<AcquisitionRecord> done) = 0;
};

}  // namespace twinbridge::store
