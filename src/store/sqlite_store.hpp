#pragma once
// SqliteStore: the embedded default store, one SQLite database file in WAL mode in the data directory.
//
// Writes go through one writer thread that takes every queued write (up to max_batch), applies each in its
// own savepoint inside one transaction and commits once: with synchronous=FULL the commit is durable (fsync
// of the WAL) before any completion runs, so an acknowledged write survives kill -9 and power loss, and N
// concurrent writers cost one fsync, not N. Reads use a pool of read-only connections and never wait for the
// writer (WAL snapshot isolation).
//
// Thread-safety: every public method may be called from any thread; start() and stop() not at the same time.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "store/sqlite.hpp"
#include "store/store.hpp"

namespace twinbridge::store {

struct SqliteOptions {
  std::filesystem::path path;        // the database file
  std::string synchronous = "FULL";  // FULL (durable on power loss) or NORMAL (durable on process crash only)
  std::size_t max_batch = 1024;      // writes committed together at most
  std::size_t max_queue = 100'000;   // queued writes beyond this fail fast with `unavailable`
  std::int64_t keep_changes = 1'000'000;  // the change feed keeps this many newest changes (at least 1)
};

// The changes of the batch being committed: each gets the next sequence number and its row in `changes`,
// inside the write's savepoint, so a write that rolls back takes its changes (and their numbers) with it.
// Writer thread only.
class ChangeLog {
 public:
  ChangeLog(sqlite::Connection& db, std::int64_t last) : db_(db), batch_last_(last) {}

  // Gives `change` the next sequence number and stores it.
  core::Result<void> add(Change change);

  std::size_t mark() const { return changes_.size(); }
  void roll_back_to(std::size_t mark) { changes_.resize(mark); }
  void clear(std::int64_t last) {
    changes_.clear();
    batch_last_ = last;
  }
  std::span<const ChangePtr> changes() const { return changes_; }
  std::int64_t last() const { return changes_.empty() ? batch_last_ : changes_.back()->seq; }

 private:
  std::int64_t next_seq() const { return last() + 1; }

  sqlite::Connection& db_;
  std::int64_t batch_last_;  // the last sequence number committed before this batch
  std::vector<ChangePtr> changes_;
};

class SqliteStore final : public Store {
 public:
  // Opens or creates the database and applies pending schema migrations. Fails when the file belongs to a
  // newer twinbridge (schema version above the known one).
  static core::Result<std::unique_ptr<SqliteStore>> open(SqliteOptions options,
                                                         StoreObserver* observer = nullptr);
  ~SqliteStore() override;

  void set_change_listener(ChangeListener* listener) override { change_listener_ = listener; }
  void start() override;
  void stop() override;
  core::Result<void> ping() override;
  core::Result<ChangeWindow> change_window() override;
  core::Result<std::vector<Change>> changes(std::int64_t after_seq, std::size_t limit) override;

  core::Result<core::Principal> principal(const core::PrincipalId& id) override;
  core::Result<Page<core::Principal>> principals(const PageRequest& page) override;
  core::Result<std::optional<Credential>> credential(const core::ApiKeyId& key_id) override;
  core::Result<std::vector<ApiKeyRecord>> api_keys(const core::PrincipalId& principal) override;
  core::Result<Page<core::AuditEntry>> audit(const AuditQuery& query) override;
  core::Result<OwnedRegistrations> owned_by(const core::PrincipalId& principal) override;

  core::Result<core::SystemRecord> system(core::SystemKind kind, const std::string& id) override;
  core::Result<Page<core::SystemRecord>> systems(const SystemQuery& query) override;
  void create_system(core::SystemRecord record, core::AuditEntry audit,
                     Completion<core::SystemRecord> done) override;
  void update_system(core::SystemRecord record, std::int64_t expected_version, core::AuditEntry audit,
                     Completion<core::SystemRecord> done) override;
  void delete_system(core::SystemKind kind, std::string id, std::optional<std::int64_t> expected_version,
                     core::AuditEntry audit, Completion<std::vector<std::string>> done) override;

  core::Result<core::TwinRecord> twin(const std::string& id) override;
  core::Result<std::optional<core::TwinState>> twin_state(const std::string& id) override;
  core::Result<std::optional<PolicyRecord>> twin_policy(const std::string& id) override;
  void write_states(std::vector<StateWrite> writes,
                    Completion<std::vector<core::Result<void>>> done) override;
  void put_policy(PolicyRecord record, std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                  Completion<PolicyRecord> done) override;
  core::Result<Page<core::TwinRecord>> twins(const TwinQuery& query) override;
  core::Result<void> each_twin_text(std::size_t batch,
                                    const std::function<void(std::vector<TwinText>&&)>& each) override;
  void register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                            core::AuditEntry audit, Completion<core::SystemRecord> done) override;
  void create_twin(core::TwinRecord twin, core::AuditEntry audit, Completion<core::TwinRecord> done) override;
  void update_twin(core::TwinRecord twin, std::int64_t expected_version, core::AuditEntry audit,
                   Completion<core::TwinRecord> done) override;
  void delete_twin(std::string id, std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                   Completion<void> done) override;

  core::Result<Page<core::StatusHistoryEntry>> status_history(const StatusHistoryQuery& query) override;
  core::Result<std::optional<core::StatusHistoryEntry>> status_before(core::SystemKind kind,
                                                                      const std::string& id,
                                                                      core::Timestamp at) override;
  core::Result<std::vector<core::ProbeSample>> probe_samples(core::SystemKind kind, const std::string& id,
                                                             core::Timestamp from,
                                                             core::Timestamp to) override;
  void record_system_check(SystemCheck check, Completion<void> done) override;
  void record_system_checks(std::vector<SystemCheck> checks, Completion<void> done) override;

  void create_principal(core::Principal principal, std::optional<ApiKeyRecord> key, core::AuditEntry audit,
                        Completion<core::Principal> done) override;
  void update_principal(core::Principal principal, std::int64_t expected_version, core::AuditEntry audit,
                        Completion<core::Principal> done) override;
  void delete_principal(core::PrincipalId id, std::optional<std::int64_t> expected_version,
                        core::AuditEntry audit, Completion<void> done) override;
  void transfer_registrations(core::PrincipalId from, core::PrincipalId to, core::AuditEntry audit,
                              Completion<OwnedRegistrations> done) override;
  void add_api_key(ApiKeyRecord key, core::AuditEntry audit, Completion<ApiKeyRecord> done) override;
  void revoke_api_key(core::PrincipalId principal, core::ApiKeyId key, core::AuditEntry audit,
                      Completion<void> done) override;

  core::Result<std::optional<SelectionRecord>> selection(const core::PrincipalId& owner,
                                                         const std::string& id) override;
  core::Result<Page<SelectionRecord>> selections(const core::PrincipalId& owner,
                                                 const PageRequest& page) override;
  void create_selection(SelectionRecord record, core::AuditEntry audit,
                        Completion<SelectionRecord> done) override;
  void update_selection(SelectionRecord record, std::int64_t expected_version, core::AuditEntry audit,
                        Completion<SelectionRecord> done) override;
  void delete_selection(core::PrincipalId owner, std::string id, std::optional<std::int64_t> expected_version,
                        core::AuditEntry audit, Completion<void> done) override;
  core::Result<std::optional<SystemCredentials>> system_credentials(core::SystemKind kind,
                                                                    const std::string& id) override;
  void register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                            SystemCredentials credentials, core::AuditEntry audit,
                            Completion<core::SystemRecord> done) override;
  void update_system(core::SystemRecord record, std::int64_t expected_version, SystemCredentials credentials,
                     core::AuditEntry audit, Completion<core::SystemRecord> done) override;
  core::Result<std::optional<AcquisitionRecord>> acquisition(const std::string& twin_id) override;
  void record_acquisition(AcquisitionRecord record, Completion<AcquisitionRecord> done) override;

  static int schema_version();

 private:
  core::Result<Page<core::SystemRecord>> sorted_systems(const SystemQuery& query);
  struct PendingWrite {
    std::move_only_function<core::Result<void>(sqlite::Connection&, ChangeLog&)> apply;
    std::move_only_function<void(core::Result<void>)> complete;
  };
  class ReadLease;

  SqliteStore(SqliteOptions options, StoreObserver* observer, std::unique_ptr<sqlite::Connection> writer);

  // Queues `apply` (run on the writer thread inside the batch transaction; it records its changes in the
  // ChangeLog); `done` gets its result after commit.
  template <class T>
  void submit(std::move_only_function<core::Result<T>(sqlite::Connection&, ChangeLog&)> apply,
              Completion<T> done);
  void enqueue(PendingWrite write);
  void writer_loop();
  void commit_batch(std::vector<PendingWrite>& batch);

  core::Result<ReadLease> reader();
  void release(std::unique_ptr<sqlite::Connection> conn);

  SqliteOptions options_;
  StoreObserver* observer_;
  ChangeListener* change_listener_ = nullptr;
  std::unique_ptr<sqlite::Connection> writer_conn_;
  std::int64_t last_seq_ = 0;     // the newest committed change (writer thread after start)
  std::int64_t pruned_upto_ = 0;  // changes up to this were pruned (writer thread)

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<PendingWrite> queue_;
  bool accepting_ = false;
  bool stopping_ = false;
  std::thread writer_;

  // WAL checkpoints on a thread of their own (with a connection of its own), so that the writer never copies
  // pages into the database file and flushes it between two commits: the writer's WAL hook asks for one once
  // the WAL holds kCheckpointPages pages (SQLite's default would run it inside the commit that crossed them).
  static int on_wal(void* self, sqlite3* db, const char* name, int pages);
  void checkpoint_loop();
  std::unique_ptr<sqlite::Connection> checkpoint_conn_;
  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_cv_;
  std::atomic<bool> checkpoint_asked_{false};
  bool checkpoint_stopping_ = false;  // under checkpoint_mutex_
  std::thread checkpointer_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<sqlite::Connection>> readers_;
};

}  // namespace twinbridge::store
