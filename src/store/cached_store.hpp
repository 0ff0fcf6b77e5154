#pragma once
// CachedStore: a read-through, write-through cache in front of another Store, for the reads on every
// request's path (the caller's credential and principal). It serves a hit from memory; a miss reads the inner
// store and fills the cache. Writes go to the inner store; after they commit, the cache is updated
// (principals) or dropped (credentials), before the writer's completion runs, so a client never reads its own
// write stale.
//
// Coherence: all writes of a twinbridge process pass through its Store, so the cache is exact within one
// process. A fill that raced a write is discarded (a generation counter, read before the inner read, must be
// unchanged at fill time). Several nodes on one database need the event bus to drop entries on other nodes'
// writes (see README).
//
// Size: at most `capacity` entries per map; when full, the map is cleared (simple, and refilled by the hot
// keys). Thread-safe.

#include <atomic>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "store/store.hpp"

namespace twinbridge::store {

class CachedStore final : public Store {
 public:
  CachedStore(std::unique_ptr<Store> inner, std::size_t capacity = 100'000);

  void set_change_listener(ChangeListener* listener) override { inner_->set_change_listener(listener); }
  void start() override { inner_->start(); }
  void stop() override { inner_->stop(); }
  core::Result<void> ping() override { return inner_->ping(); }
  core::Result<ChangeWindow> change_window() override { return inner_->change_window(); }
  core::Result<std::vector<Change>> changes(std::int64_t after_seq, std::size_t limit) override {
    return inner_->changes(after_seq, limit);
  }

  core::Result<core::Principal> principal(const core::PrincipalId& id) override;
  core::Result<Page<core::Principal>> principals(const PageRequest& page) override {
    return inner_->principals(page);
  }
  core::Result<std::optional<Credential>> credential(const core::ApiKeyId& key_id) override;
  core::Result<std::vector<ApiKeyRecord>> api_keys(const core::PrincipalId& principal) override {
    return inner_->api_keys(principal);
  }
  core::Result<Page<core::AuditEntry>> audit(const AuditQuery& query) override {
    return inner_->audit(query);
  }
  core::Result<OwnedRegistrations> owned_by(const core::PrincipalId& principal) override {
    return inner_->owned_by(principal);
  }
  core::Result<core::SystemRecord> system(core::SystemKind kind, const std::string& id) override {
    return inner_->system(kind, id);
  }
  core::Result<Page<core::SystemRecord>> systems(const SystemQuery& query) override {
    return inner_->systems(query);
  }
  core::Result<core::TwinRecord> twin(const std::string& id) override { return inner_->twin(id); }
  core::Result<std::optional<core::TwinState>> twin_state(const std::string& id) override {
    return inner_->twin_state(id);
  }
  core::Result<std::optional<PolicyRecord>> twin_policy(const std::string& id) override {
    return inner_->twin_policy(id);
  }
  void write_states(std::vector<StateWrite> writes,
                    Completion<std::vector<core::Result<void>>> done) override {
    inner_->write_states(std::move(writes), std::move(done));
  }
  void put_policy(PolicyRecord record, std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                  Completion<PolicyRecord> done) override {
    inner_->put_policy(std::move(record), expected_version, std::move(audit), std::move(done));
  }
  core::Result<Page<core::TwinRecord>> twins(const TwinQuery& query) override { return inner_->twins(query); }
  core::Result<void> each_twin_text(std::size_t batch,
                                    const std::function<void(std::vector<TwinText>&&)>& each) override {
    return inner_->each_twin_text(batch, each);
  }
  core::Result<Page<core::StatusHistoryEntry>> status_history(const StatusHistoryQuery& query) override {
    return inner_->status_history(query);
  }
  core::Result<std::optional<core::StatusHistoryEntry>> status_before(core::SystemKind kind,
                                                                      const std::string& id,
                                                                      core::Timestamp at) override {
    return inner_->status_before(kind, id, at);
  }
  core::Result<std::vector<core::ProbeSample>> probe_samples(core::SystemKind kind, const std::string& id,
                                                             core::Timestamp from,
                                                             core::Timestamp to) override {
    return inner_->probe_samples(kind, id, from, to);
  }
  void record_system_check(SystemCheck check, Completion<void> done) override {
    inner_->record_system_check(std::move(check), std::move(done));
  }
  void record_system_checks(std::vector<SystemCheck> checks, Completion<void> done) override {
    inner_->record_system_checks(std::move(checks), std::move(done));
  }
  void register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                            core::AuditEntry audit, Completion<core::SystemRecord> done) override {
    inner_->register_twin_system(std::move(record), std::move(twins), std::move(audit), std::move(done));
  }
  void create_twin(core::TwinRecord twin, core::AuditEntry audit,
                   Completion<core::TwinRecord> done) override {
    inner_->create_twin(std::move(twin), std::move(audit), std::move(done));
  }
  void update_twin(core::TwinRecord twin, std::int64_t expected_version, core::AuditEntry audit,
                   Completion<core::TwinRecord> done) override {
    inner_->update_twin(std::move(twin), expected_version, std::move(audit), std::move(done));
  }
  void delete_twin(std::string id, std::optional<std::int64_t> expected_version, core::AuditEntry audit,
                   Completion<void> done) override {
    inner_->delete_twin(std::move(id), expected_version, std::move(audit), std::move(done));
  }

  void create_principal(core::Principal principal, std::optional<ApiKeyRecord> key, core::AuditEntry audit,
                        Completion<core::Principal> done) override;
  void update_principal(core::Principal principal, std::int64_t expected_version, core::AuditEntry audit,
                        Completion<core::Principal> done) override;
  void delete_principal(core::PrincipalId id, std::optional<std::int64_t> expected_version,
                        core::AuditEntry audit, Completion<void> done) override;
  void create_system(core::SystemRecord record, core::AuditEntry audit,
                     Completion<core::SystemRecord> done) override {
    inner_->create_system(std::move(record), std::move(audit), std::move(done));
  }
  void update_system(core::SystemRecord record, std::int64_t expected_version, core::AuditEntry audit,
                     Completion<core::SystemRecord> done) override {
    inner_->update_system(std::move(record), expected_version, std::move(audit), std::move(done));
  }
  void transfer_registrations(core::PrincipalId from, core::PrincipalId to, core::AuditEntry audit,
                              Completion<OwnedRegistrations> done) override {
    inner_->transfer_registrations(std::move(from), std::move(to), std::move(audit), std::move(done));
  }
  void delete_system(core::SystemKind kind, std::string id, std::optional<std::int64_t> expected_version,
                     core::AuditEntry audit, Completion<std::vector<std::string>> done) override {
    inner_->delete_system(kind, std::move(id), expected_version, std::move(audit), std::move(done));
  }
  void add_api_key(ApiKeyRecord key, core::AuditEntry audit, Completion<ApiKeyRecord> done) override;
  void revoke_api_key(core::PrincipalId principal, core::ApiKeyId key, core::AuditEntry audit,
                      Completion<void> done) override;

  core::Result<std::optional<SelectionRecord>> selection(const core::PrincipalId& owner,
                                                         const std::string& id) override {
    return inner_->selection(owner, id);
  }
  core::Result<Page<SelectionRecord>> selections(const core::PrincipalId& owner,
                                                 const PageRequest& page) override {
    return inner_->selections(owner, page);
  }
  void create_selection(SelectionRecord record, core::AuditEntry audit,
                        Completion<SelectionRecord> done) override {
    inner_->create_selection(std::move(record), std::move(audit), std::move(done));
  }
  void update_selection(SelectionRecord record, std::int64_t expected_version, core::AuditEntry audit,
                        Completion<SelectionRecord> done) override {
    inner_->update_selection(std::move(record), expected_version, std::move(audit), std::move(done));
  }
  void delete_selection(core::PrincipalId owner, std::string id, std::optional<std::int64_t> expected_version,
                        core::AuditEntry audit, Completion<void> done) override {
    inner_->delete_selection(std::move(owner), std::move(id), expected_version, std::move(audit),
                             std::move(done));
  }
  core::Result<std::optional<SystemCredentials>> system_credentials(core::SystemKind kind,
                                                                    const std::string& id) override {
    return inner_->system_credentials(kind, id);
  }
  void register_twin_system(core::SystemRecord record, std::vector<core::TwinRecord> twins,
                            SystemCredentials credentials, core::AuditEntry audit,
                            Completion<core::SystemRecord> done) override {
    inner_->register_twin_system(std::move(record), std::move(twins), std::move(credentials),
                                 std::move(audit), std::move(done));
  }
  void update_system(core::SystemRecord record, std::int64_t expected_version, SystemCredentials credentials,
                     core::AuditEntry audit, Completion<core::SystemRecord> done) override {
    inner_->update_system(std::move(record), expected_version, std::move(credentials), std::move(audit),
                          std::move(done));
  }
  core::Result<std::optional<AcquisitionRecord>> acquisition(const std::string& twin_id) override {
    return inner_->acquisition(twin_id);
  }
  void record_acquisition(AcquisitionRecord record, Completion<AcquisitionRecord> done) override {
    inner_->record_acquisition(std::move(record), std::move(done));
  }

 private:
  // Called after a write of `principal` committed: stores the new value (or drops it) and drops every
  // credential.
  void after_write(const std::string& principal_id, const core::Principal* stored);
  // Called after a write of an API key committed.
  void drop_credentials();
  template <class Value, class Load>
  core::Result<Value> read_through(std::unordered_map<std::string, Value>& map, const std::string& key,
                                   Load load);

  std::unique_ptr<Store> inner_;
  std::size_t capacity_;
  std::shared_mutex mutex_;
  std::uint64_t generation_ = 0;  // bumped by every committed write; guarded by mutex_
  std::unordered_map<std::string, core::Principal> principals_;
  std::unordered_map<std::string, std::optional<Credential>> credentials_;  // nullopt: known not to exist
};

}  // namespace twinbridge::store
