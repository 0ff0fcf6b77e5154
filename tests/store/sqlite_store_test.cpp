#include "store/sqlite_store.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/access.hpp"
#include "core/credentials.hpp"
#include "store/change_feed.hpp"
#include "store/sqlite.hpp"
#include "support/store_writes.hpp"

namespace twinbridge::store {
namespace {

using namespace std::chrono_literals;
using core::ApiKeyId;
using core::AuditEntry;
using core::Errc;
using core::Principal;
using core::PrincipalId;
using core::Result;

const core::Timestamp kT0 = core::from_unix_micros(1'780'000'000'123'456);

using testing::completion;
using testing::wait_for;

bool is_ready(const std::future<Result<Principal>>& f) {
  return f.wait_for(0s) == std::future_status::ready;
}

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Counts reads and records the size of every committed batch. hold_next_commit() makes the next commit wait
// inside on_commit (after the transaction is durable, before any completion runs) until release(): while it
// waits, every write submitted queues up, which lets a test decide deterministically what the next batch
// contains.
class RecordingObserver final : public StoreObserver {
 public:
  void on_read(std::string_view, std::chrono::nanoseconds) override {
    std::lock_guard lock(mutex_);
    ++reads_;
  }

  void on_commit(std::size_t writes, std::chrono::nanoseconds) override {
    std::unique_lock lock(mutex_);
    batches_.push_back(writes);
    if (hold_) {
      held_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !hold_; });
    }
  }

  void hold_next_commit() {
    std::lock_guard lock(mutex_);
    hold_ = true;
    held_ = false;
  }

  void wait_until_held() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return held_; });
  }

  void release() {
    {
      std::lock_guard lock(mutex_);
      hold_ = false;
    }
    cv_.notify_all();
  }

  std::vector<std::size_t> batches() const {
    std::lock_guard lock(mutex_);
    return batches_;
  }

  std::size_t reads() const {
    std::lock_guard lock(mutex_);
    return reads_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::size_t> batches_;
  std::size_t reads_ = 0;
  bool hold_ = false;
  bool held_ = false;
};

Principal make_principal(std::string id, core::PrincipalKind kind = core::PrincipalKind::twin_system) {
  Principal p;
  p.id = PrincipalId(std::move(id));
  p.kind = kind;
  p.name = "Principal " + p.id.str();
  p.roles = core::default_roles(kind);
  p.properties = {{"site", "Hall 3"}, {"axes", 6}, {"tags", boost::json::array{"a", "b"}}};
  return p;
}

AuditEntry make_audit(std::string action, std::string target_id, core::Timestamp at = kT0,
                      std::string actor = "admin-token") {
  AuditEntry e;
  e.at = at;
  e.actor = std::move(actor);
  e.actor_kind = "operator";
  e.action = std::move(action);
  e.target_type = "principal";
  e.target_id = std::move(target_id);
  e.request_id = "req-" + core::random_hex(4);
  e.detail = {{"name", "value"}};
  return e;
}

ApiKeyRecord make_key(const PrincipalId& principal, std::string id) {
  ApiKeyRecord k;
  k.id = ApiKeyId(std::move(id));
  k.principal = principal;
  k.hash = core::sha256_hex("token of " + k.id.str());
  k.label = "key " + k.id.str();
  k.created = kT0;
  return k;
}

void expect_same(const Principal& a, const Principal& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.roles, b.roles);
  EXPECT_EQ(a.properties, b.properties);
  EXPECT_EQ(a.disabled, b.disabled);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.modified, b.modified);
  EXPECT_EQ(a.version, b.version);
}

void expect_same(const ApiKeyRecord& a, const ApiKeyRecord& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.principal, b.principal);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_EQ(a.label, b.label);
  EXPECT_EQ(a.created, b.created);
  EXPECT_EQ(a.expires, b.expires);
}

// Remembers every committed change the store announced (its ChangeListener), in the order heard.
class Recorder final : public ChangeListener {
 public:
  void committed(std::span<const ChangePtr> changes) override {
    std::lock_guard lock(mutex_);
    heard_.insert(heard_.end(), changes.begin(), changes.end());
  }
  void settled() override {
    std::lock_guard lock(mutex_);
    settled_at_.push_back(heard_.size());
  }
  // The number of changes heard when each commit settled.
  std::vector<std::size_t> settled_at() const {
    std::lock_guard lock(mutex_);
    return settled_at_;
  }
  std::vector<ChangePtr> heard() const {
    std::lock_guard lock(mutex_);
    return heard_;
  }
  std::vector<ChangePtr> of(ChangeType type) const {
    std::vector<ChangePtr> out;
    for (auto& c : heard()) {
      if (c->type == type) out.push_back(c);
    }
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<ChangePtr> heard_;
  std::vector<std::size_t> settled_at_;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("twinbridge-store-test-" + core::random_hex(8));
    ASSERT_TRUE(std::filesystem::create_directory(dir_)) << dir_;
    open_store(options());
  }

  void TearDown() override {
    observer_.release();  // never leave the writer waiting in on_commit, or destroying the store would hang
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  SqliteOptions options() const {
    SqliteOptions o;
    o.path = dir_ / "twinbridge.db";
    return o;
  }

  void open_store(SqliteOptions o) {
    store_.reset();
    auto opened = SqliteStore::open(std::move(o), &observer_);
    ASSERT_TRUE(opened.has_value()) << opened.error().detail;
    store_ = std::move(*opened);
    recorder_ = std::make_unique<Recorder>();
    store_->set_change_listener(recorder_.get());
    store_->start();
  }

  void close_store() {
    store_->stop();
    store_.reset();
  }

  Result<Principal> create(Principal p, std::optional<ApiKeyRecord> key = std::nullopt,
                           std::optional<AuditEntry> audit = std::nullopt) {
    auto entry = audit ? std::move(*audit) : make_audit("principal.create", p.id.str());
    return wait_for<Principal>([&](Completion<Principal> done) {
      store_->create_principal(std::move(p), std::move(key), std::move(entry), std::move(done));
    });
  }

  Result<Principal> update(Principal p, std::int64_t expected_version, core::Timestamp at = kT0 + 1s) {
    auto entry = make_audit("principal.update", p.id.str(), at);
    return wait_for<Principal>([&](Completion<Principal> done) {
      store_->update_principal(std::move(p), expected_version, std::move(entry), std::move(done));
    });
  }

  Result<void> remove(const PrincipalId& id, std::optional<std::int64_t> expected_version) {
    return wait_for<void>([&](Completion<void> done) {
      store_->delete_principal(id, expected_version, make_audit("principal.delete", id.str(), kT0 + 2s),
                               std::move(done));
    });
  }

  Result<ApiKeyRecord> add_key(ApiKeyRecord key) {
    auto entry = make_audit("api-key.create", key.principal.str(), kT0 + 3s);
    return wait_for<ApiKeyRecord>([&](Completion<ApiKeyRecord> done) {
      store_->add_api_key(std::move(key), std::move(entry), std::move(done));
    });
  }

  Result<void> revoke(const PrincipalId& principal, const ApiKeyId& key) {
    return wait_for<void>([&](Completion<void> done) {
      store_->revoke_api_key(principal, key, make_audit("api-key.revoke", principal.str(), kT0 + 4s),
                             std::move(done));
    });
  }

  // Creates every principal with concurrent writes and waits for all of them.
  void create_all(const std::vector<std::string>& ids) {
    std::vector<std::future<Result<Principal>>> pending;
    for (const auto& id : ids) {
      auto [done, result] = completion<Principal>();
      store_->create_principal(make_principal(id), std::nullopt, make_audit("principal.create", id),
                               std::move(done));
      pending.push_back(std::move(result));
    }
    for (auto& f : pending) {
      const auto r = f.get();
      ASSERT_TRUE(r.has_value()) << r.error().detail;
    }
  }

  std::vector<AuditEntry> audit_matching(AuditQuery q) {
    std::vector<AuditEntry> out;
    for (;;) {
      auto page = store_->audit(q);
      EXPECT_TRUE(page.has_value()) << page.error().detail;
      if (!page) return out;
      out.insert(out.end(), page->items.begin(), page->items.end());
      if (!page->next_after) return out;
      q.after_seq = std::stoll(*page->next_after);
    }
  }

  // Every entry of the audit log that a query set up by `configure` matches, across all pages.
  template <class Configure>
  std::vector<AuditEntry> audit_where(Configure&& configure) {
    AuditQuery q;
    q.limit = 1000;
    std::forward<Configure>(configure)(q);
    return audit_matching(std::move(q));
  }

  std::vector<AuditEntry> all_audit() {
    return audit_where([](AuditQuery&) {});
  }

  std::vector<std::string> all_principal_ids() {
    std::vector<std::string> out;
    PageRequest request{.after = "", .limit = 1000};
    for (;;) {
      auto page = store_->principals(request);
      EXPECT_TRUE(page.has_value()) << page.error().detail;
      if (!page) return out;
      for (const auto& p : page->items) out.push_back(p.id.str());
      if (!page->next_after) return out;
      request.after = *page->next_after;
    }
  }

  static std::vector<std::string> actions_of(const std::vector<AuditEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.action);
    return out;
  }

  std::filesystem::path dir_;
  RecordingObserver observer_;          // declared before the store: it outlives it
  std::unique_ptr<Recorder> recorder_;  // declared before the store: it outlives it
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, CreatesAndReadsAPrincipal) {
  auto p = make_principal("urn:dev:ops:robot-1");
  p.disabled = true;
  const auto created = create(p);
  ASSERT_TRUE(created.has_value()) << created.error().detail;
  EXPECT_EQ(created->version, 1);
  EXPECT_EQ(created->created, kT0);
  EXPECT_EQ(created->modified, kT0);
  EXPECT_EQ(created->name, p.name);

  const auto read = store_->principal(p.id);
  ASSERT_TRUE(read.has_value()) << read.error().detail;
  expect_same(*read, *created);
  EXPECT_TRUE(read->disabled);
  EXPECT_EQ(read->properties, p.properties);
  EXPECT_EQ(read->roles, p.roles);

  const auto entries = all_audit();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].at, read->created);
}

TEST_F(SqliteStoreTest, ReadingAnUnknownPrincipalIsNotFound) {
  const auto read = store_->principal(PrincipalId("nobody"));
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, Errc::not_found);
}

TEST_F(SqliteStoreTest, CredentialFindsThePrincipalAndTheKeyCreatedWithIt) {
  const auto p = make_principal("urn:dev:ops:robot-1");
  const auto issued = core::issue_api_key();
  auto key = make_key(p.id, issued.key_id);
  key.hash = issued.hash;
  ASSERT_TRUE(create(p, key).has_value());

  const auto id = core::api_key_id_of(issued.token);
  ASSERT_TRUE(id.has_value());
  const auto found = store_->credential(ApiKeyId(std::string(*id)));
  ASSERT_TRUE(found.has_value()) << found.error().detail;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->principal.id, p.id);
  EXPECT_EQ((*found)->principal.version, 1);
  expect_same((*found)->key, key);
  EXPECT_TRUE(core::constant_time_equal((*found)->key.hash, core::sha256_hex(issued.token)));
}

TEST_F(SqliteStoreTest, CredentialOfAnUnknownKeyIsEmpty) {
  const auto found = store_->credential(ApiKeyId("0123456789abcdef"));
  ASSERT_TRUE(found.has_value()) << found.error().detail;
  EXPECT_FALSE(found->has_value());
}

TEST_F(SqliteStoreTest, AddedKeysAreListedWithTheirExpiry) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p, make_key(p.id, "k1")).has_value());
  auto second = make_key(p.id, "k2");
  second.expires = kT0 + 24h;
  const auto added = add_key(second);
  ASSERT_TRUE(added.has_value()) << added.error().detail;
  expect_same(*added, second);

  const auto keys = store_->api_keys(p.id);
  ASSERT_TRUE(keys.has_value()) << keys.error().detail;
  ASSERT_EQ(keys->size(), 2u);
  expect_same((*keys)[0], make_key(p.id, "k1"));
  expect_same((*keys)[1], second);

  const auto found = store_->credential(ApiKeyId("k2"));
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->key.expires, kT0 + 24h);
}

TEST_F(SqliteStoreTest, AddingAKeyToAnUnknownPrincipalIsNotFound) {
  const auto added = add_key(make_key(PrincipalId("nobody"), "k1"));
  ASSERT_FALSE(added.has_value());
  EXPECT_EQ(added.error().code, Errc::not_found);
  EXPECT_TRUE(all_audit().empty());
}

TEST_F(SqliteStoreTest, AddingATakenKeyIdIsAConflict) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p, make_key(p.id, "k1")).has_value());
  const auto added = add_key(make_key(p.id, "k1"));
  ASSERT_FALSE(added.has_value());
  EXPECT_EQ(added.error().code, Errc::conflict);
  EXPECT_EQ(all_audit().size(), 1u);
}

TEST_F(SqliteStoreTest, DuplicateIdIsAConflictWithoutASecondAuditEntry) {
  const auto first = make_principal("p");
  ASSERT_TRUE(create(first).has_value());
  auto second = make_principal("p");
  second.name = "another name";
  const auto again = create(second);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::conflict);

  const auto read = store_->principal(first.id);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->name, first.name);
  EXPECT_EQ(all_audit().size(), 1u);
}

TEST_F(SqliteStoreTest, CreateWithATakenKeyIdLeavesNoPrincipalBehind) {
  const auto first = make_principal("p1");
  ASSERT_TRUE(create(first, make_key(first.id, "k1")).has_value());
  const auto second = make_principal("p2");
  const auto created = create(second, make_key(second.id, "k1"));
  ASSERT_FALSE(created.has_value());
  EXPECT_EQ(created.error().code, Errc::conflict);

  // The principal row was written before the key failed; the write is all or nothing.
  const auto read = store_->principal(second.id);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, Errc::not_found);
  EXPECT_EQ(all_audit().size(), 1u);
  const auto found = store_->credential(ApiKeyId("k1"));
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->principal.id, first.id);
}

TEST_F(SqliteStoreTest, UpdateWithTheExpectedVersionGivesTheNextVersion) {
  const auto created = create(make_principal("p"));
  ASSERT_TRUE(created.has_value());
  auto changed = *created;
  changed.name = "renamed";
  changed.roles = {"auditor"};
  changed.properties = {{"new", true}};
  changed.disabled = true;
  const auto updated = update(changed, 1, kT0 + 1s);
  ASSERT_TRUE(updated.has_value()) << updated.error().detail;
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(updated->created, kT0);
  EXPECT_EQ(updated->modified, kT0 + 1s);

  const auto read = store_->principal(changed.id);
  ASSERT_TRUE(read.has_value());
  expect_same(*read, *updated);
  EXPECT_EQ(read->name, "renamed");
  EXPECT_EQ(read->roles, std::vector<std::string>{"auditor"});
  EXPECT_TRUE(read->disabled);

  const auto again = update(*read, 2, kT0 + 5s);
  ASSERT_TRUE(again.has_value()) << again.error().detail;
  EXPECT_EQ(again->version, 3);
}

TEST_F(SqliteStoreTest, UpdateWithAnotherVersionIsRefusedAndChangesNothing) {
  const auto created = create(make_principal("p"));
  ASSERT_TRUE(created.has_value());
  auto changed = *created;
  changed.name = "renamed";
  for (std::int64_t wrong : {0, 2, 7}) {
    const auto updated = update(changed, wrong);
    ASSERT_FALSE(updated.has_value()) << wrong;
    EXPECT_EQ(updated.error().code, Errc::precondition_failed) << wrong;
  }
  const auto read = store_->principal(changed.id);
  ASSERT_TRUE(read.has_value());
  expect_same(*read, *created);
  EXPECT_EQ(all_audit().size(), 1u);
}

TEST_F(SqliteStoreTest, UpdateOfAnUnknownPrincipalIsNotFound) {
  const auto updated = update(make_principal("nobody"), 1);
  ASSERT_FALSE(updated.has_value());
  EXPECT_EQ(updated.error().code, Errc::not_found);
  EXPECT_TRUE(all_audit().empty());
}

TEST_F(SqliteStoreTest, DeleteWithoutExpectedVersion) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p).has_value());
  const auto deleted = remove(p.id, std::nullopt);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().detail;
  const auto read = store_->principal(p.id);
  ASSERT_FALSE(read.has_value());
  EXPECT_EQ(read.error().code, Errc::not_found);
}

TEST_F(SqliteStoreTest, DeleteWithTheExpectedVersion) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p).has_value());
  const auto wrong = remove(p.id, 2);
  ASSERT_FALSE(wrong.has_value());
  EXPECT_EQ(wrong.error().code, Errc::precondition_failed);
  ASSERT_TRUE(store_->principal(p.id).has_value());

  const auto deleted = remove(p.id, 1);
  ASSERT_TRUE(deleted.has_value()) << deleted.error().detail;
  EXPECT_FALSE(store_->principal(p.id).has_value());
  EXPECT_EQ(actions_of(all_audit()), (std::vector<std::string>{"principal.create", "principal.delete"}));
}

TEST_F(SqliteStoreTest, DeletingAnUnknownPrincipalIsNotFound) {
  const auto deleted = remove(PrincipalId("nobody"), std::nullopt);
  ASSERT_FALSE(deleted.has_value());
  EXPECT_EQ(deleted.error().code, Errc::not_found);
  EXPECT_TRUE(all_audit().empty());
}

TEST_F(SqliteStoreTest, DeleteRemovesThePrincipalsKeys) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p, make_key(p.id, "k1")).has_value());
  ASSERT_TRUE(add_key(make_key(p.id, "k2")).has_value());
  ASSERT_TRUE(remove(p.id, std::nullopt).has_value());

  for (const char* key : {"k1", "k2"}) {
    const auto found = store_->credential(ApiKeyId(key));
    ASSERT_TRUE(found.has_value()) << found.error().detail;
    EXPECT_FALSE(found->has_value()) << key;
  }
  const auto keys = store_->api_keys(p.id);
  ASSERT_TRUE(keys.has_value());
  EXPECT_TRUE(keys->empty());

  // No principal gets the id again (a tombstone is kept), so nothing of the old one passes to a newcomer.
  const auto again = create(p);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, Errc::conflict);
  const auto found = store_->credential(ApiKeyId("k1"));
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
}

TEST_F(SqliteStoreTest, RevokeApiKeyRemovesTheKey) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p, make_key(p.id, "k1")).has_value());
  ASSERT_TRUE(add_key(make_key(p.id, "k2")).has_value());
  const auto revoked = revoke(p.id, ApiKeyId("k1"));
  ASSERT_TRUE(revoked.has_value()) << revoked.error().detail;

  const auto gone = store_->credential(ApiKeyId("k1"));
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->has_value());
  const auto kept = store_->credential(ApiKeyId("k2"));
  ASSERT_TRUE(kept.has_value());
  EXPECT_TRUE(kept->has_value());
  EXPECT_EQ(actions_of(all_audit()),
            (std::vector<std::string>{"principal.create", "api-key.create", "api-key.revoke"}));
}

TEST_F(SqliteStoreTest, RevokingAnUnknownKeyIsNotFound) {
  const auto p = make_principal("p");
  ASSERT_TRUE(create(p, make_key(p.id, "k1")).has_value());

  const auto unknown = revoke(p.id, ApiKeyId("nope"));
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, Errc::not_found);

  // Another principal cannot revoke a key that is not its own.
  ASSERT_TRUE(create(make_principal("other")).has_value());
  const auto foreign = revoke(PrincipalId("other"), ApiKeyId("k1"));
  ASSERT_FALSE(foreign.has_value());
  EXPECT_EQ(foreign.error().code, Errc::not_found);
  const auto kept = store_->credential(ApiKeyId("k1"));
  ASSERT_TRUE(kept.has_value());
  EXPECT_TRUE(kept->has_value());

  ASSERT_TRUE(revoke(p.id, ApiKeyId("k1")).has_value());
  const auto twice = revoke(p.id, ApiKeyId("k1"));
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().code, Errc::not_found);

  EXPECT_EQ(actions_of(all_audit()),
            (std::vector<std::string>{"principal.create", "principal.create", "api-key.revoke"}));
}

TEST_F(SqliteStoreTest, PrincipalsArePagedInIdOrder) {
  std::vector<std::string> ids;
  for (int i = 0; i < 250; ++i) ids.push_back(fmt::format("p-{:03}", i));
  auto shuffled = ids;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(7));
  ASSERT_NO_FATAL_FAILURE(create_all(shuffled));

  std::vector<std::string> seen;
  std::vector<std::size_t> page_sizes;
  PageRequest request{.after = "", .limit = 100};
  for (int pages = 0; pages < 10; ++pages) {
    const auto page = store_->principals(request);
    ASSERT_TRUE(page.has_value()) << page.error().detail;
    page_sizes.push_back(page->items.size());
    for (const auto& p : page->items) seen.push_back(p.id.str());
    if (!page->next_after) break;
    EXPECT_EQ(*page->next_after, page->items.back().id.str());
    request.after = *page->next_after;
  }
  EXPECT_EQ(page_sizes, (std::vector<std::size_t>{100, 100, 50}));
  EXPECT_EQ(seen, ids);  // sorted, complete, and without duplicates
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), seen.size());
}

TEST_F(SqliteStoreTest, AFullLastPageHasNoNextCursor) {
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(fmt::format("p-{:02}", i));
  ASSERT_NO_FATAL_FAILURE(create_all(ids));

  const auto first = store_->principals({.after = "", .limit = 10});
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->items.size(), 10u);
  ASSERT_EQ(first->next_after, "p-09");
  const auto last = store_->principals({.after = "p-09", .limit = 10});
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->items.size(), 10u);
  EXPECT_EQ(last->items.front().id.str(), "p-10");
  EXPECT_FALSE(last->next_after.has_value());
}

TEST_F(SqliteStoreTest, EverySuccessfulWriteHasExactlyOneAuditEntry) {
  const auto p = make_principal("p");
  auto create_audit = make_audit("principal.create", "p", kT0, "op-1");
  create_audit.actor_kind = "operator";
  create_audit.request_id = "req-create";
  create_audit.detail = {{"name", p.name}, {"roles", boost::json::array{"a"}}};
  const auto created = create(p, make_key(p.id, "k1"), create_audit);
  ASSERT_TRUE(created.has_value());
  EXPECT_FALSE(create(p).has_value());                            // conflict
  EXPECT_FALSE(update(*created, 5).has_value());                  // precondition failed
  EXPECT_FALSE(update(make_principal("nobody"), 1).has_value());  // not found
  ASSERT_TRUE(update(*created, 1).has_value());
  EXPECT_FALSE(add_key(make_key(p.id, "k1")).has_value());  // conflict
  ASSERT_TRUE(add_key(make_key(p.id, "k2")).has_value());
  EXPECT_FALSE(revoke(p.id, ApiKeyId("k3")).has_value());  // not found
  ASSERT_TRUE(revoke(p.id, ApiKeyId("k2")).has_value());
  EXPECT_FALSE(remove(p.id, 1).has_value());  // precondition failed
  ASSERT_TRUE(remove(p.id, 2).has_value());
  EXPECT_FALSE(remove(p.id, std::nullopt).has_value());  // not found

  const auto entries = all_audit();
  EXPECT_EQ(actions_of(entries),
            (std::vector<std::string>{"principal.create", "principal.update", "api-key.create",
                                      "api-key.revoke", "principal.delete"}));
  for (std::size_t i = 1; i < entries.size(); ++i) EXPECT_GT(entries[i].seq, entries[i - 1].seq);
  ASSERT_FALSE(entries.empty());
  const auto& first = entries.front();
  EXPECT_EQ(first.at, create_audit.at);
  EXPECT_EQ(first.actor, "op-1");
  EXPECT_EQ(first.actor_kind, "operator");
  EXPECT_EQ(first.target_type, "principal");
  EXPECT_EQ(first.target_id, "p");
  EXPECT_EQ(first.request_id, "req-create");
  EXPECT_EQ(first.detail, create_audit.detail);
}

TEST_F(SqliteStoreTest, AuditIsFilteredAndPaged) {
  // Entry i is written at kT0 + i seconds.
  const std::vector<std::pair<std::string, std::string>> writes = {
      {"alice", "p0"}, {"bob", "p1"}, {"alice", "p2"}, {"alice", "p3"}, {"bob", "p4"}, {"carol", "p5"}};
  for (std::size_t i = 0; i < writes.size(); ++i) {
    const auto& [actor, id] = writes[i];
    const auto at = kT0 + std::chrono::seconds(i);
    ASSERT_TRUE(
        create(make_principal(id), std::nullopt, make_audit("principal.create", id, at, actor)).has_value());
  }
  ASSERT_TRUE(update(*store_->principal(PrincipalId("p1")), 1, kT0 + 10s).has_value());

  auto ids_of = [](const std::vector<AuditEntry>& entries) {
    std::vector<std::string> out;
    for (const auto& e : entries) out.push_back(e.target_id + ":" + e.action);
    return out;
  };
  EXPECT_EQ(ids_of(audit_where([&](AuditQuery& q) { q.actor = "alice"; })),
            (std::vector<std::string>{"p0:principal.create", "p2:principal.create", "p3:principal.create"}));
  EXPECT_EQ(ids_of(audit_where([&](AuditQuery& q) { q.target_id = "p1"; })),
            (std::vector<std::string>{"p1:principal.create", "p1:principal.update"}));
  EXPECT_EQ(ids_of(audit_where([&](AuditQuery& q) { q.action = "principal.update"; })),
            (std::vector<std::string>{"p1:principal.update"}));
  EXPECT_EQ(ids_of(audit_where([&](AuditQuery& q) { q.since = kT0 + 4s; })),
            (std::vector<std::string>{"p4:principal.create", "p5:principal.create", "p1:principal.update"}));
  EXPECT_EQ(ids_of(audit_where([&](AuditQuery& q) {
              q.actor = "bob";
              q.since = kT0 + 2s;
            })),
            (std::vector<std::string>{"p4:principal.create"}));
  EXPECT_EQ(audit_where([&](AuditQuery& q) { q.target_type = "principal"; }).size(), 7u);
  EXPECT_TRUE(audit_where([&](AuditQuery& q) { q.target_type = "system"; }).empty());
  EXPECT_TRUE(audit_where([&](AuditQuery& q) { q.actor = "nobody"; }).empty());

  // Paging with after_seq: pages of 3, then 3, then 1, in seq order without repeats.
  const auto all = all_audit();
  ASSERT_EQ(all.size(), 7u);
  AuditQuery paged;
  paged.limit = 3;
  std::vector<std::int64_t> seqs;
  std::vector<std::size_t> sizes;
  for (int pages = 0; pages < 10; ++pages) {
    const auto page = store_->audit(paged);
    ASSERT_TRUE(page.has_value()) << page.error().detail;
    sizes.push_back(page->items.size());
    for (const auto& e : page->items) seqs.push_back(e.seq);
    if (!page->next_after) break;
    EXPECT_EQ(*page->next_after, std::to_string(page->items.back().seq));
    paged.after_seq = std::stoll(*page->next_after);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3, 3, 1}));
  std::vector<std::int64_t> expected;
  for (const auto& e : all) expected.push_back(e.seq);
  EXPECT_EQ(seqs, expected);

  // after_seq also combines with a filter.
  const auto after_first_alice = audit_where([&](AuditQuery& q) {
    q.actor = "alice";
    q.after_seq = all[0].seq;
  });
  EXPECT_EQ(ids_of(after_first_alice),
            (std::vector<std::string>{"p2:principal.create", "p3:principal.create"}));
}

TEST_F(SqliteStoreTest, ConcurrentWritersShareCommits) {
  constexpr int kThreads = 8;
  constexpr int kWritesPerThread = 500;
  // The first commit waits until every write has been submitted, so the writes queued meanwhile must share
  // the commits that follow.
  observer_.hold_next_commit();
  std::vector<std::vector<std::future<Result<Principal>>>> pending(kThreads);
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([this, t, &pending] {
      for (int i = 0; i < kWritesPerThread; ++i) {
        const auto id = fmt::format("t{}-{:03}", t, i);
        auto [done, result] = completion<Principal>();
        store_->create_principal(make_principal(id), std::nullopt, make_audit("principal.create", id),
                                 std::move(done));
        pending[static_cast<std::size_t>(t)].push_back(std::move(result));
      }
    });
  }
  for (auto& w : writers) w.join();
  observer_.release();

  int succeeded = 0;
  for (auto& thread_pending : pending) {
    for (auto& f : thread_pending) {
      const auto r = f.get();
      EXPECT_TRUE(r.has_value()) << r.error().detail;
      if (r) ++succeeded;
    }
  }
  EXPECT_EQ(succeeded, kThreads * kWritesPerThread);

  const auto batches = observer_.batches();
  std::size_t total = 0;
  for (auto n : batches) total += n;
  EXPECT_EQ(total, static_cast<std::size_t>(kThreads * kWritesPerThread));
  EXPECT_GT(*std::max_element(batches.begin(), batches.end()), 1u);
  EXPECT_LT(batches.size(), static_cast<std::size_t>(kThreads * kWritesPerThread));

  EXPECT_EQ(all_principal_ids().size(), static_cast<std::size_t>(kThreads * kWritesPerThread));
  EXPECT_EQ(all_audit().size(), static_cast<std::size_t>(kThreads * kWritesPerThread));
}

TEST_F(SqliteStoreTest, AFailedWriteInABatchDoesNotAffectTheOthers) {
  observer_.hold_next_commit();
  auto [first_done, first] = completion<Principal>();
  store_->create_principal(make_principal("first"), std::nullopt, make_audit("principal.create", "first"),
                           std::move(first_done));
  observer_.wait_until_held();

  // These three queue up while the writer waits, so they are committed as one batch.
  std::vector<std::future<Result<Principal>>> pending;
  for (const char* id : {"a", "a", "b"}) {
    auto [done, result] = completion<Principal>();
    store_->create_principal(make_principal(id), std::nullopt, make_audit("principal.create", id),
                             std::move(done));
    pending.push_back(std::move(result));
  }
  observer_.release();

  EXPECT_TRUE(first.get().has_value());
  const auto a = pending[0].get();
  const auto duplicate = pending[1].get();
  const auto b = pending[2].get();
  EXPECT_TRUE(a.has_value());
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error().code, Errc::conflict);
  EXPECT_TRUE(b.has_value());
  EXPECT_EQ(observer_.batches(), (std::vector<std::size_t>{1, 3}));
  EXPECT_EQ(all_principal_ids(), (std::vector<std::string>{"a", "b", "first"}));
  EXPECT_EQ(all_audit().size(), 3u);
}

TEST_F(SqliteStoreTest, AFullQueueFailsFast) {
  auto o = options();
  o.max_queue = 2;
  ASSERT_NO_FATAL_FAILURE(open_store(o));

  observer_.hold_next_commit();
  auto [first_done, first] = completion<Principal>();
  store_->create_principal(make_principal("first"), std::nullopt, make_audit("principal.create", "first"),
                           std::move(first_done));
  observer_.wait_until_held();

  std::vector<std::future<Result<Principal>>> pending;
  for (const char* id : {"q1", "q2", "over"}) {
    auto [done, result] = completion<Principal>();
    store_->create_principal(make_principal(id), std::nullopt, make_audit("principal.create", id),
                             std::move(done));
    pending.push_back(std::move(result));
  }
  // The third write found the queue full: it has failed already, while the writer is still held.
  ASSERT_TRUE(is_ready(pending[2]));
  EXPECT_FALSE(is_ready(pending[0]));
  const auto over = pending[2].get();
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().code, Errc::unavailable);
  EXPECT_GT(over.error().retry_after_seconds, 0);

  observer_.release();
  EXPECT_TRUE(first.get().has_value());
  EXPECT_TRUE(pending[0].get().has_value());
  EXPECT_TRUE(pending[1].get().has_value());
  EXPECT_EQ(all_principal_ids(), (std::vector<std::string>{"first", "q1", "q2"}));
}

TEST_F(SqliteStoreTest, DataSurvivesReopening) {
  const auto p = make_principal("urn:dev:ops:robot-1");
  const auto created = create(p, make_key(p.id, "k1"));
  ASSERT_TRUE(created.has_value());
  auto changed = *created;
  changed.name = "renamed";
  const auto updated = update(changed, 1);
  ASSERT_TRUE(updated.has_value());

  close_store();
  ASSERT_NO_FATAL_FAILURE(open_store(options()));

  const auto read = store_->principal(p.id);
  ASSERT_TRUE(read.has_value()) << read.error().detail;
  expect_same(*read, *updated);
  const auto found = store_->credential(ApiKeyId("k1"));
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ((*found)->principal.name, "renamed");
  EXPECT_EQ(actions_of(all_audit()), (std::vector<std::string>{"principal.create", "principal.update"}));

  // Writes continue after reopening, and audit sequence numbers keep increasing.
  const auto last_seq = all_audit().back().seq;
  ASSERT_TRUE(update(*read, 2).has_value());
  EXPECT_GT(all_audit().back().seq, last_seq);
}

TEST_F(SqliteStoreTest, StopCompletesQueuedWritesAndRefusesLaterOnes) {
  std::vector<std::future<Result<Principal>>> pending;
  for (int i = 0; i < 100; ++i) {
    const auto id = fmt::format("p-{:03}", i);
    auto [done, result] = completion<Principal>();
    store_->create_principal(make_principal(id), std::nullopt, make_audit("principal.create", id),
                             std::move(done));
    pending.push_back(std::move(result));
  }
  store_->stop();
  for (auto& f : pending) {
    ASSERT_TRUE(is_ready(f));  // stop() returned only after every queued write completed
    const auto r = f.get();
    EXPECT_TRUE(r.has_value()) << r.error().detail;
  }

  const auto later = create(make_principal("late"));
  ASSERT_FALSE(later.has_value());
  EXPECT_EQ(later.error().code, Errc::unavailable);
  const auto deleted = remove(PrincipalId("p-000"), std::nullopt);
  ASSERT_FALSE(deleted.has_value());
  EXPECT_EQ(deleted.error().code, Errc::unavailable);

  // Reads still work, and they show every queued write and nothing of the refused ones.
  EXPECT_EQ(all_principal_ids().size(), 100u);
  EXPECT_EQ(all_audit().size(), 100u);
}

TEST_F(SqliteStoreTest, WritesBeforeStartAreRefused) {
  SqliteOptions o;
  o.path = dir_ / "not-yet-created" / "other.db";
  auto opened = SqliteStore::open(o);
  ASSERT_TRUE(opened.has_value()) << opened.error().detail;
  auto& unstarted = **opened;
  const auto r = wait_for<Principal>([&](Completion<Principal> done) {
    unstarted.create_principal(make_principal("p"), std::nullopt, make_audit("principal.create", "p"),
                               std::move(done));
  });
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_TRUE(unstarted.ping().has_value());
}

TEST_F(SqliteStoreTest, RefusesADatabaseWithANewerSchema) {
  close_store();
  const auto path = options().path.string();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT MAX(version) FROM schema_migrations", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(stmt, 0), SqliteStore::schema_version());
  sqlite3_finalize(stmt);
  char* message = nullptr;
  const int rc = sqlite3_exec(
      db, "INSERT INTO schema_migrations(version, name, applied_at) VALUES (999, 'from the future', 0)",
      nullptr, nullptr, &message);
  const std::string error = message != nullptr ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << error;

  const auto opened = SqliteStore::open(options(), &observer_);
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code, Errc::unavailable);
  EXPECT_TRUE(contains(opened.error().detail, "newer")) << opened.error().detail;
  EXPECT_TRUE(contains(opened.error().detail, "999")) << opened.error().detail;
}

TEST_F(SqliteStoreTest, RefusesAnUnknownSynchronousMode) {
  auto o = options();
  o.synchronous = "OFF";
  const auto opened = SqliteStore::open(o);
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().code, Errc::validation_failed);
}

TEST_F(SqliteStoreTest, PingSucceedsAndReadsAreObserved) {
  const auto before = observer_.reads();
  EXPECT_TRUE(store_->ping().has_value());
  EXPECT_FALSE(store_->principal(PrincipalId("nobody")).has_value());
  EXPECT_EQ(observer_.reads(), before + 2);
}

core::SystemRecord system_record(std::string id, std::string type, std::string owner = "owner-1") {
  core::SystemRecord r;
  r.kind = core::SystemKind::third_party;
  r.id = std::move(id);
  r.type = std::move(type);
  r.name = "name of " + r.id;
  r.owner = PrincipalId(std::move(owner));
  r.body = {{"type", r.type}, {"name", r.name}, {"properties", {{"tier", 1}}}};
  return r;
}

TEST_F(SqliteStoreTest, SystemsAreCreatedReadUpdatedAndDeletedWithVersions) {
  auto created = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->create_system(system_record("s1", "payment"), make_audit("third-party-system.register", "s1"),
                          std::move(done));
  });
  ASSERT_TRUE(created) << created.error().detail;
  EXPECT_EQ(created->version, 1);
  EXPECT_EQ(created->created, kT0);
  auto read = store_->system(core::SystemKind::third_party, "s1");
  ASSERT_TRUE(read);
  EXPECT_EQ(read->body, created->body);
  EXPECT_EQ(read->owner.str(), "owner-1");
  EXPECT_EQ(store_->system(core::SystemKind::twin, "s1").error().code,
            Errc::not_found);  // kinds are separate

  auto dup = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->create_system(system_record("s1", "payment"), make_audit("x", "s1"), std::move(done));
  });
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::conflict);

  auto changed = *read;
  changed.name = "renamed";
  auto stale = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(changed, 5, make_audit("u", "s1"), std::move(done));
  });
  EXPECT_EQ(stale.error().code, Errc::precondition_failed);
  auto updated = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(changed, 1, make_audit("u", "s1"), std::move(done));
  });
  ASSERT_TRUE(updated);
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(store_->system(core::SystemKind::third_party, "s1")->name, "renamed");

  auto removed = wait_for<std::vector<std::string>>([&](Completion<std::vector<std::string>> done) {
    store_->delete_system(core::SystemKind::third_party, "s1", 2, make_audit("d", "s1"), std::move(done));
  });
  ASSERT_TRUE(removed);
  EXPECT_EQ(store_->system(core::SystemKind::third_party, "s1").error().code, Errc::not_found);
}

TEST_F(SqliteStoreTest, SystemQueriesUseTheEqualityIndexesAndPage) {
  for (int i = 0; i < 30; ++i) {
    auto r = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
      store_->create_system(system_record("sys-" + std::to_string(100 + i), i % 3 == 0 ? "cad" : "payment",
                                          i % 2 == 0 ? "even" : "odd"),
                            make_audit("r", "x"), std::move(done));
    });
    ASSERT_TRUE(r);
  }
  SystemQuery q;
  q.type = "cad";
  q.limit = 4;
  std::vector<std::string> ids;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = store_->systems(q);
    ASSERT_TRUE(page);
    for (const auto& r : page->items) {
      EXPECT_EQ(r.type, "cad");
      ids.push_back(r.id);
    }
    if (!page->next_after) break;
    q.after = *page->next_after;
  }
  EXPECT_EQ(ids.size(), 10u);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  SystemQuery both;
  both.type = "cad";
  both.owner = "even";
  EXPECT_EQ(store_->systems(both)->items.size(), 5u);

  // The planner walks the index for each leading equality instead of scanning the table.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(options().path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  for (const auto& [sql, index] : std::vector<std::pair<std::string, std::string>>{
           {"EXPLAIN QUERY PLAN SELECT id FROM systems WHERE kind = 'third-party-system' AND type = 'cad' "
            "AND id > '' "
            "ORDER BY id",
            "systems_by_type"},
           {"EXPLAIN QUERY PLAN SELECT id FROM systems WHERE kind = 'third-party-system' AND status = 'up' "
            "AND id > '' "
            "ORDER BY id",
            "systems_by_status"},
           {"EXPLAIN QUERY PLAN SELECT id FROM systems WHERE kind = 'third-party-system' AND owner = 'x' AND "
            "id > '' "
            "ORDER BY id",
            "systems_by_owner"}}) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK);
    std::string plan;
    while (sqlite3_step(stmt) == SQLITE_ROW)
      plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
    sqlite3_finalize(stmt);
    EXPECT_NE(plan.find(index), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
  }
  sqlite3_close(db);
}

Result<core::SystemRecord> register_system(Store& store, const std::string& id) {
  return wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store.create_system(system_record(id, "payment"), make_audit("third-party-system.register", id),
                        std::move(done));
  });
}

Result<void> record(Store& store, SystemCheck check) {
  return wait_for<void>(
      [&](Completion<void> done) { store.record_system_check(std::move(check), std::move(done)); });
}

SystemCheck status_check(std::string id, core::SystemStatus to, std::string reason, core::Timestamp at) {
  SystemCheck c;
  c.id = std::move(id);
  c.change = core::StatusChange{
      .from = core::SystemStatus::unknown, .to = to, .reason = std::move(reason), .at = at};
  return c;
}

SystemCheck probe_check(std::string id, core::Timestamp at, bool ok = true,
                        std::chrono::microseconds latency = 1500us) {
  SystemCheck c;
  c.id = std::move(id);
  c.probe = core::ProbeSample{.at = at, .ok = ok, .latency = latency};
  return c;
}

// The whole status history of a 3rd-party system, read in pages of `limit`.
std::vector<core::StatusHistoryEntry> history_of(Store& store, const std::string& id,
                                                 std::size_t limit = 1000) {
  std::vector<core::StatusHistoryEntry> out;
  StatusHistoryQuery q;
  q.id = id;
  q.limit = limit;
  for (;;) {
    auto page = store.status_history(q);
    EXPECT_TRUE(page.has_value()) << page.error().detail;
    if (!page) return out;
    out.insert(out.end(), page->items.begin(), page->items.end());
    if (!page->next_after) return out;
    q.after_seq = std::stoll(*page->next_after);
  }
}

std::vector<std::string> reasons_of(const std::vector<core::StatusHistoryEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.reason);
  return out;
}

std::vector<core::Timestamp> times_of(const std::vector<core::ProbeSample>& samples) {
  std::vector<core::Timestamp> out;
  for (const auto& s : samples) out.push_back(s.at);
  return out;
}

std::vector<core::ProbeSample> samples_of(Store& store, const std::string& id,
                                          core::Timestamp from = core::Timestamp{},
                                          core::Timestamp to = kT0 + 24h) {
  auto samples = store.probe_samples(core::SystemKind::third_party, id, from, to);
  EXPECT_TRUE(samples.has_value()) << samples.error().detail;
  return samples ? *samples : std::vector<core::ProbeSample>{};
}

// Runs `sql` on the database file through a connection of its own.
void exec_sql(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  const std::string error = message != nullptr ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << error;
}

// The single integer `sql` yields.
std::int64_t query_integer(const std::filesystem::path& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  std::int64_t value = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

TEST_F(SqliteStoreTest, ARecordedCheckSetsTheStatusWithoutANewVersionOrAuditEntry) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  const auto audit_before = all_audit().size();
  auto check = status_check("s1", core::SystemStatus::down, "3 probes failed: HTTP 503", kT0 + 10s);
  check.probe = core::ProbeSample{.at = kT0 + 10s, .ok = false, .latency = 2500us};
  const auto recorded = record(*store_, std::move(check));
  ASSERT_TRUE(recorded) << recorded.error().detail;

  const auto read = store_->system(core::SystemKind::third_party, "s1");
  ASSERT_TRUE(read) << read.error().detail;
  EXPECT_EQ(read->status, core::SystemStatus::down);
  EXPECT_EQ(read->status_reason, "3 probes failed: HTTP 503");
  EXPECT_EQ(read->status_since, kT0 + 10s);
  EXPECT_EQ(read->version, 1);  // a status is not an edit: ETags held by clients stay valid
  EXPECT_EQ(read->modified, kT0);
  SystemQuery down;
  down.status = core::SystemStatus::down;
  ASSERT_EQ(store_->systems(down)->items.size(), 1u);  // the status index sees it

  const auto history = history_of(*store_, "s1");
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].status, core::SystemStatus::down);
  EXPECT_EQ(history[0].at, kT0 + 10s);
  EXPECT_EQ(history[0].reason, "3 probes failed: HTTP 503");
  const auto samples = samples_of(*store_, "s1");
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0].at, kT0 + 10s);
  EXPECT_FALSE(samples[0].ok);
  EXPECT_EQ(samples[0].latency, 2500us);
  EXPECT_EQ(all_audit().size(), audit_before);

  // A probe without a change leaves status and history alone.
  ASSERT_TRUE(record(*store_, probe_check("s1", kT0 + 20s)));
  EXPECT_EQ(store_->system(core::SystemKind::third_party, "s1")->status, core::SystemStatus::down);
  EXPECT_EQ(history_of(*store_, "s1").size(), 1u);
  EXPECT_EQ(samples_of(*store_, "s1").size(), 2u);
}

TEST_F(SqliteStoreTest, StatusHistoryIsInSeqOrderAndPagedByCursor) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  ASSERT_TRUE(register_system(*store_, "s2"));
  for (int i = 0; i < 7; ++i) {
    const auto to = i % 2 == 0 ? core::SystemStatus::up : core::SystemStatus::degraded;
    ASSERT_TRUE(record(*store_, status_check("s1", to, fmt::format("change {}", i), kT0 + i * 1s)));
    ASSERT_TRUE(record(*store_, status_check("s2", to, fmt::format("other {}", i), kT0 + i * 1s)));
  }

  StatusHistoryQuery q;
  q.id = "s1";
  q.limit = 3;
  std::vector<std::size_t> page_sizes;
  std::vector<core::StatusHistoryEntry> all;
  for (;;) {
    const auto page = store_->status_history(q);
    ASSERT_TRUE(page) << page.error().detail;
    page_sizes.push_back(page->items.size());
    all.insert(all.end(), page->items.begin(), page->items.end());
    if (!page->next_after) break;
    EXPECT_EQ(*page->next_after, std::to_string(page->items.back().seq));
    q.after_seq = std::stoll(*page->next_after);
  }
  EXPECT_EQ(page_sizes, (std::vector<std::size_t>{3, 3, 1}));
  EXPECT_EQ(reasons_of(all), (std::vector<std::string>{"change 0", "change 1", "change 2", "change 3",
                                                       "change 4", "change 5", "change 6"}));
  EXPECT_TRUE(
      std::is_sorted(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.seq < b.seq; }));
  EXPECT_EQ(all[1].status, core::SystemStatus::degraded);

  StatusHistoryQuery since;
  since.id = "s1";
  since.since = kT0 + 5s;
  EXPECT_EQ(reasons_of(store_->status_history(since)->items),
            (std::vector<std::string>{"change 5", "change 6"}));
  StatusHistoryQuery twin_kind;
  twin_kind.kind = core::SystemKind::twin;
  twin_kind.id = "s1";
  EXPECT_TRUE(store_->status_history(twin_kind)->items.empty());  // kinds are separate

  // The history and sample queries walk their system's index instead of scanning.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(options().path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  for (const auto& [sql, index] : std::vector<std::pair<std::string, std::string>>{
           {"EXPLAIN QUERY PLAN SELECT seq, at, status, reason FROM system_status_history WHERE kind = "
            "'third-party-system' AND system_id = 's1' AND seq > 0 ORDER BY seq LIMIT 101",
            "system_status_history_by_system"},
           {"EXPLAIN QUERY PLAN SELECT seq, at, status, reason FROM system_status_history WHERE kind = "
            "'third-party-system' AND system_id = 's1' AND at <= 5 ORDER BY seq DESC LIMIT 1",
            "system_status_history_by_system"},
           {"EXPLAIN QUERY PLAN SELECT at, ok, latency_us FROM system_probes WHERE kind = "
            "'third-party-system' AND system_id = 's1' AND at >= 0 AND at <= 5 ORDER BY at DESC LIMIT 10",
            "system_probes_by_system"}}) {
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    std::string plan;
    while (sqlite3_step(stmt) == SQLITE_ROW)
      plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
    sqlite3_finalize(stmt);
    EXPECT_NE(plan.find(index), std::string::npos) << plan;
    EXPECT_EQ(plan.find("SCAN"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
  }
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, HistoryBeyondKeepHistoryIsPrunedOldestFirst) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  ASSERT_TRUE(register_system(*store_, "s2"));
  ASSERT_TRUE(record(*store_, status_check("s2", core::SystemStatus::up, "other", kT0)));
  for (int i = 0; i < 6; ++i) {
    auto check = status_check("s1", core::SystemStatus::up, fmt::format("change {}", i), kT0 + i * 1s);
    check.keep_history = 3;
    ASSERT_TRUE(record(*store_, std::move(check)));
    EXPECT_EQ(history_of(*store_, "s1").size(), std::min(i + 1, 3)) << i;
  }
  EXPECT_EQ(reasons_of(history_of(*store_, "s1")),
            (std::vector<std::string>{"change 3", "change 4", "change 5"}));
  EXPECT_EQ(reasons_of(history_of(*store_, "s2")),
            (std::vector<std::string>{"other"}));  // not another system's
  EXPECT_EQ(store_->system(core::SystemKind::third_party, "s1")->status_reason, "change 5");
}

TEST_F(SqliteStoreTest, ProbeSamplesOlderThanKeepProbesSinceArePruned) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  ASSERT_TRUE(register_system(*store_, "s2"));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(record(*store_, probe_check("s1", kT0 + i * 1s)));
    ASSERT_TRUE(record(*store_, probe_check("s2", kT0 + i * 1s)));
  }
  auto check = probe_check("s1", kT0 + 10s);
  check.keep_probes_since = kT0 + 5s;
  ASSERT_TRUE(record(*store_, std::move(check)));
  EXPECT_EQ(times_of(samples_of(*store_, "s1")),
            (std::vector<core::Timestamp>{kT0 + 5s, kT0 + 6s, kT0 + 7s, kT0 + 8s, kT0 + 9s, kT0 + 10s}));
  EXPECT_EQ(samples_of(*store_, "s2").size(), 10u);  // not another system's

  // A check without a probe prunes too.
  SystemCheck prune_only;
  prune_only.id = "s1";
  prune_only.keep_probes_since = kT0 + 9s;
  ASSERT_TRUE(record(*store_, std::move(prune_only)));
  EXPECT_EQ(times_of(samples_of(*store_, "s1")), (std::vector<core::Timestamp>{kT0 + 9s, kT0 + 10s}));
}

TEST_F(SqliteStoreTest, StatusBeforeIsTheNewestEntryAtOrBeforeTheTime) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  ASSERT_TRUE(record(*store_, status_check("s1", core::SystemStatus::up, "first", kT0 + 10s)));
  ASSERT_TRUE(record(*store_, status_check("s1", core::SystemStatus::down, "second", kT0 + 20s)));
  ASSERT_TRUE(record(*store_, status_check("s1", core::SystemStatus::up, "third", kT0 + 30s)));

  const auto before = [&](core::Timestamp at) {
    auto e = store_->status_before(core::SystemKind::third_party, "s1", at);
    EXPECT_TRUE(e.has_value()) << e.error().detail;
    return e ? *e : std::nullopt;
  };
  EXPECT_FALSE(before(kT0 + 5s).has_value());
  ASSERT_TRUE(before(kT0 + 20s).has_value());
  EXPECT_EQ(before(kT0 + 20s)->reason, "second");
  EXPECT_EQ(before(kT0 + 20s)->status, core::SystemStatus::down);
  EXPECT_EQ(before(kT0 + 20s)->at, kT0 + 20s);
  EXPECT_EQ(before(kT0 + 29s)->reason, "second");
  EXPECT_EQ(before(kT0 + 1h)->reason, "third");
  const auto unknown = store_->status_before(core::SystemKind::third_party, "nobody", kT0 + 1h);
  ASSERT_TRUE(unknown);
  EXPECT_FALSE(unknown->has_value());
}

TEST_F(SqliteStoreTest, ProbeSamplesAreReturnedForTheWindowInTimeOrder) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  // Recorded out of order: the result is still ordered by time.
  for (const int i : {4, 1, 7, 3, 0, 6, 2, 5}) {
    ASSERT_TRUE(
        record(*store_, probe_check("s1", kT0 + i * 1s, i % 3 != 0, std::chrono::microseconds(1000 + i))));
  }
  const auto window = samples_of(*store_, "s1", kT0 + 3s, kT0 + 6s);  // both ends included
  EXPECT_EQ(times_of(window), (std::vector<core::Timestamp>{kT0 + 3s, kT0 + 4s, kT0 + 5s, kT0 + 6s}));
  ASSERT_EQ(window.size(), 4u);
  EXPECT_FALSE(window[0].ok);
  EXPECT_TRUE(window[1].ok);
  EXPECT_EQ(window[1].latency, 1004us);
  EXPECT_TRUE(samples_of(*store_, "s1", kT0 + 8s, kT0 + 9s).empty());
}

TEST_F(SqliteStoreTest, ProbeSamplesAreBoundedToTheNewest) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  const auto n = kMaxProbeSamples + 5;
  exec_sql(options().path,
           fmt::format("WITH RECURSIVE i(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM i WHERE x + 1 < {}) "
                       "INSERT INTO system_probes(kind, system_id, at, ok, latency_us) "
                       "SELECT 'third-party-system', 's1', {} + x, 1, 1000 FROM i",
                       n, core::to_unix_micros(kT0)));
  const auto samples = samples_of(*store_, "s1");
  ASSERT_EQ(samples.size(), kMaxProbeSamples);
  EXPECT_EQ(samples.front().at, kT0 + 5us);  // the 5 oldest are left out
  EXPECT_EQ(samples.back().at, kT0 + std::chrono::microseconds(n - 1));
  EXPECT_TRUE(std::is_sorted(samples.begin(), samples.end(),
                             [](const auto& a, const auto& b) { return a.at < b.at; }));
}

TEST_F(SqliteStoreTest, ACheckOfAMissingSystemIsNotFoundAndWritesNothing) {
  auto check = status_check("ghost", core::SystemStatus::up, "ok", kT0);
  check.probe = core::ProbeSample{.at = kT0, .ok = true, .latency = 100us};
  const auto r = record(*store_, check);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::not_found);

  // A check that raced the deregistration of its system is dropped the same way.
  ASSERT_TRUE(register_system(*store_, "gone"));
  ASSERT_TRUE(wait_for<std::vector<std::string>>([&](Completion<std::vector<std::string>> done) {
    store_->delete_system(core::SystemKind::third_party, "gone", std::nullopt, make_audit("d", "gone"),
                          std::move(done));
  }));
  check.id = "gone";
  const auto late = record(*store_, check);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Errc::not_found);

  EXPECT_TRUE(history_of(*store_, "ghost").empty());
  EXPECT_TRUE(history_of(*store_, "gone").empty());
  EXPECT_TRUE(samples_of(*store_, "ghost").empty());
  EXPECT_TRUE(samples_of(*store_, "gone").empty());
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM system_probes"), 0);
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM system_status_history"), 0);
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM systems"), 0);
}

TEST_F(SqliteStoreTest, ABatchOfChecksSkipsSystemsThatAreGone) {
  ASSERT_TRUE(register_system(*store_, "alive"));
  auto alive = status_check("alive", core::SystemStatus::up, "ok", kT0);
  alive.change.reset();
  alive.probe = core::ProbeSample{.at = kT0, .ok = true, .latency = 100us};
  auto ghost = alive;
  ghost.id = "ghost";
  auto later = alive;
  later.probe->at = kT0 + 1s;
  ASSERT_TRUE(wait_for<void>([&](Completion<void> done) {
    store_->record_system_checks({alive, ghost, later}, std::move(done));
  }));
  EXPECT_EQ(samples_of(*store_, "alive").size(), 2u);
  EXPECT_TRUE(samples_of(*store_, "ghost").empty());
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM system_probes"), 2);
}

TEST_F(SqliteStoreTest, DeletingASystemDeletesItsProbesAndHistory) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  ASSERT_TRUE(register_system(*store_, "s2"));
  for (const auto* id : {"s1", "s2"}) {
    auto check = status_check(id, core::SystemStatus::up, "ok", kT0 + 1s);
    check.probe = core::ProbeSample{.at = kT0 + 1s, .ok = true, .latency = 100us};
    ASSERT_TRUE(record(*store_, std::move(check)));
  }
  ASSERT_TRUE(wait_for<std::vector<std::string>>([&](Completion<std::vector<std::string>> done) {
    store_->delete_system(core::SystemKind::third_party, "s1", 1, make_audit("d", "s1"), std::move(done));
  }));
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM system_probes WHERE system_id = 's1'"), 0);
  EXPECT_EQ(
      query_integer(options().path, "SELECT COUNT(*) FROM system_status_history WHERE system_id = 's1'"), 0);
  EXPECT_EQ(samples_of(*store_, "s2").size(), 1u);
  EXPECT_EQ(history_of(*store_, "s2").size(), 1u);

  // Registered again under the same id, it starts with a clean record.
  ASSERT_TRUE(register_system(*store_, "s1"));
  EXPECT_TRUE(history_of(*store_, "s1").empty());
  EXPECT_TRUE(samples_of(*store_, "s1").empty());
}

TEST_F(SqliteStoreTest, AnUpdateKeepsTheStatusRecordedSinceTheRecordWasRead) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  auto read = store_->system(core::SystemKind::third_party, "s1");  // as a PATCH route reads it
  ASSERT_TRUE(read);
  ASSERT_EQ(read->status, core::SystemStatus::unknown);
  ASSERT_TRUE(
      record(*store_, status_check("s1", core::SystemStatus::down, "timed out after 5000 ms", kT0 + 10s)));

  auto changed = *read;
  changed.name = "renamed";
  const auto updated = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(changed, 1, make_audit("u", "s1", kT0 + 20s), std::move(done));
  });
  ASSERT_TRUE(updated) << updated.error().detail;
  EXPECT_EQ(updated->version, 2);
  EXPECT_EQ(updated->modified, kT0 + 20s);
  EXPECT_EQ(updated->status, core::SystemStatus::down);  // the returned record shows what is stored
  EXPECT_EQ(updated->status_reason, "timed out after 5000 ms");
  EXPECT_EQ(updated->status_since, kT0 + 10s);
  const auto stored = store_->system(core::SystemKind::third_party, "s1");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->name, "renamed");
  EXPECT_EQ(stored->status, core::SystemStatus::down);
  EXPECT_EQ(stored->status_reason, "timed out after 5000 ms");
  EXPECT_EQ(stored->status_since, kT0 + 10s);
}

TEST_F(SqliteStoreTest, ADatabaseOfSchema3Migrates) {
  ASSERT_TRUE(register_system(*store_, "s1"));
  close_store();
  // Back to what schema 3 left: no monitoring tables, version 3.
  exec_sql(options().path,
           "BEGIN; DROP TABLE system_probes; DROP TABLE system_status_history; "
           "DROP TABLE principal_tombstones; DROP INDEX twins_by_owner; DROP TABLE changes; "
           "DROP TABLE twin_state; DROP TABLE twin_policies; DROP TABLE selections; "
           "DROP TABLE system_credentials; DROP TABLE twin_acquisitions; "
           "DELETE FROM schema_migrations WHERE version > 3; COMMIT;");
  ASSERT_EQ(query_integer(options().path, "SELECT MAX(version) FROM schema_migrations"), 3);
  ASSERT_EQ(query_integer(options().path,
                          "SELECT COUNT(*) FROM sqlite_schema WHERE name LIKE 'system_probes%' OR name LIKE "
                          "'system_status_history%'"),
            0);

  ASSERT_NO_FATAL_FAILURE(open_store(options()));
  EXPECT_EQ(query_integer(options().path, "SELECT MAX(version) FROM schema_migrations"),
            SqliteStore::schema_version());
  EXPECT_EQ(SqliteStore::schema_version(), 9);
  const auto kept = store_->system(core::SystemKind::third_party, "s1");
  ASSERT_TRUE(kept) << kept.error().detail;
  EXPECT_EQ(kept->status, core::SystemStatus::unknown);
  auto check = status_check("s1", core::SystemStatus::up, "HTTP 200", kT0 + 1s);
  check.probe = core::ProbeSample{.at = kT0 + 1s, .ok = true, .latency = 900us};
  ASSERT_TRUE(record(*store_, std::move(check)));
  EXPECT_EQ(history_of(*store_, "s1").size(), 1u);
  EXPECT_EQ(samples_of(*store_, "s1").size(), 1u);
  EXPECT_EQ(store_->system(core::SystemKind::third_party, "s1")->status, core::SystemStatus::up);
}

// Rows written by an older binary that did not check UTF-8 (issue 7: a twin id percent-decoded from the
// path).

// A twin row as an older binary wrote it; `id`, `title` and `document` are SQL expressions.
std::string insert_twin_sql(const std::string& id, const std::string& title, const std::string& document) {
  return fmt::format(
      "INSERT INTO twins(id, system_id, owner, title, document, created, modified, version) VALUES ({}, '', "
      "'p', {}, {}, 0, 0, 1);",
      id, title, document);
}

std::string twin_sql(const std::string& id) {
  return insert_twin_sql(fmt::format("'{}'", id), "'T'",
                         fmt::format("'{{\"id\":\"{}\",\"title\":\"T\"}}'", id));
}

TEST_F(SqliteStoreTest, ATwinWhoseIdIsNotUtf8IsSkippedWithoutEndingThePageEarly) {
  // urn:b:<FF FE> sorts between urn:b:1 and urn:c:1; pages of two must still reach every valid twin.
  exec_sql(options().path, "BEGIN;" + twin_sql("urn:a:1") + twin_sql("urn:b:1") +
                               insert_twin_sql("CAST(X'75726E3A623AFFFE' AS TEXT)", "'T'",
                                               "CAST(X'7B226964223A2275726E3A623AFFFE227D' AS TEXT)") +
                               insert_twin_sql("CAST(X'75726E3A623AC0AF' AS TEXT)", "'T'", "'{}'") +
                               twin_sql("urn:c:1") + twin_sql("urn:d:1") + "COMMIT;");
  for (const std::size_t limit : {1u, 2u, 3u, 100u}) {
    std::vector<std::string> ids;
    TwinQuery q;
    q.limit = limit;
    for (int guard = 0; guard < 20; ++guard) {
      auto page = store_->twins(q);
      ASSERT_TRUE(page) << page.error().detail;
      for (const auto& t : page->items) ids.push_back(t.id);
      if (!page->next_after) break;
      q.after = *page->next_after;
    }
    EXPECT_EQ(ids, (std::vector<std::string>{"urn:a:1", "urn:b:1", "urn:c:1", "urn:d:1"}))
        << "limit " << limit;
  }
}

TEST_F(SqliteStoreTest, EveryTwinIsReadAsTextInBatchesWithoutTheOnesWhoseIdIsNotUtf8) {
  exec_sql(options().path, "BEGIN;" + twin_sql("urn:a:1") + twin_sql("urn:b:1") +
                               insert_twin_sql("CAST(X'75726E3A623AFFFE' AS TEXT)", "'T'", "'{}'") +
                               twin_sql("urn:c:1") + twin_sql("urn:d:1") + twin_sql("urn:e:1") + "COMMIT;");
  std::vector<std::size_t> sizes;
  std::vector<std::string> ids;
  ASSERT_TRUE(store_->each_twin_text(2, [&](std::vector<TwinText>&& batch) {
    sizes.push_back(batch.size());
    for (const auto& t : batch) {
      ids.push_back(t.twin.id);
      EXPECT_TRUE(t.twin.document.empty());
      const auto td = parse_stored_json(t.document);
      ASSERT_TRUE(td.is_object()) << t.document;
      EXPECT_EQ(td.at("id").as_string(), t.twin.id);
      EXPECT_EQ(t.twin.title, "T");
      EXPECT_EQ(t.twin.version, 1);
    }
  }));
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"urn:a:1", "urn:b:1", "urn:c:1", "urn:d:1", "urn:e:1"}));
  // Six rows in batches of two; the row skipped leaves its batch short.
  EXPECT_EQ(sizes, (std::vector<std::size_t>{2, 1, 2}));
}

TEST_F(SqliteStoreTest, IllFormedTextInATwinIsServedWithReplacementCharacters) {
  exec_sql(
      options().path,
      insert_twin_sql("'urn:t:1'", "CAST(X'4C616D70FF' AS TEXT)",
                      "CAST(X'7B226964223A2275726E3A743A31222C227469746C65223A224C616D70FF227D' AS TEXT)"));
  auto twin = store_->twin("urn:t:1");
  ASSERT_TRUE(twin) << twin.error().detail;
  EXPECT_EQ(twin->title, "Lamp\xEF\xBF\xBD");
  ASSERT_TRUE(twin->document.contains("title")) << "the document must not be lost";
  EXPECT_EQ(twin->document.at("title"), "Lamp\xEF\xBF\xBD");
  EXPECT_EQ(twin->document.at("id"), "urn:t:1");
}

TEST_F(SqliteStoreTest, AnAuditEntryWithIllFormedTextIsKeptAndRepaired) {
  exec_sql(options().path,
           "INSERT INTO audit(at, actor, actor_kind, action, target_type, target_id, request_id, detail) "
           "VALUES (1, 'op', 'operator', 'twin.create', 'twin', CAST(X'75726E3A703AFFFE' AS TEXT), 'r1', "
           "CAST(X'7B226964223A2275726E3A703AFFFE227D' AS TEXT))");
  const auto entries = all_audit();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].target_id, "urn:p:\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(entries[0].detail.at("id"), "urn:p:\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(entries[0].action, "twin.create");
}

core::TwinRecord twin_record(std::string id, std::string system_id, std::string owner) {
  core::TwinRecord t;
  t.id = std::move(id);
  t.system_id = std::move(system_id);
  t.owner = PrincipalId(std::move(owner));
  t.title = "twin " + t.id;
  t.document = {{"id", t.id}, {"title", t.title}};
  return t;
}

TEST_F(SqliteStoreTest, TheIdOfADeletedPrincipalIsNeverReusedAcrossRestarts) {
  ASSERT_TRUE(create(make_principal("gone")));
  ASSERT_TRUE(remove(PrincipalId("gone"), std::nullopt));
  auto again = create(make_principal("gone"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::conflict);
  ASSERT_EQ(again.error().fields.size(), 1u);
  EXPECT_EQ(again.error().fields[0].pointer, "/id");
  EXPECT_TRUE(contains(again.error().detail, "never reused")) << again.error().detail;
  EXPECT_TRUE(contains(again.error().detail, core::format_rfc3339(kT0 + 2s))) << again.error().detail;

  close_store();
  ASSERT_NO_FATAL_FAILURE(open_store(options()));
  auto after_restart = create(make_principal("gone"));
  ASSERT_FALSE(after_restart);
  EXPECT_EQ(after_restart.error().code, Errc::conflict);
  // Nothing can be registered in a deleted principal's name either (a write that raced its deletion).
  auto orphan = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->create_system(system_record("orphan", "payment", "gone"), make_audit("r", "orphan"),
                          std::move(done));
  });
  ASSERT_FALSE(orphan);
  EXPECT_EQ(orphan.error().code, Errc::conflict);
  auto twin = wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(twin_record("urn:t:orphan", "", "gone"), make_audit("t", "urn:t:orphan"),
                        std::move(done));
  });
  ASSERT_FALSE(twin);
  EXPECT_EQ(twin.error().code, Errc::conflict);
}

TEST_F(SqliteStoreTest, APrincipalThatOwnsRegistrationsIsDeletedOnlyAfterATransfer) {
  ASSERT_TRUE(create(make_principal("a")));
  ASSERT_TRUE(create(make_principal("b")));
  auto tp = system_record("pay", "payment", "a");
  ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->create_system(tp, make_audit("r", "pay"), std::move(done));
  }));
  auto plant = system_record("plant", "factory", "a");
  plant.kind = core::SystemKind::twin;
  ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->register_twin_system(plant,
                                 {twin_record("urn:t:1", "plant", "a"), twin_record("urn:t:2", "plant", "a")},
                                 make_audit("r", "plant"), std::move(done));
  }));
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(twin_record("urn:t:dir", "", "a"), make_audit("t", "urn:t:dir"), std::move(done));
  }));

  auto owned = store_->owned_by(PrincipalId("a"));
  ASSERT_TRUE(owned) << owned.error().detail;
  EXPECT_EQ(owned->system_count, 2);
  EXPECT_EQ(owned->twin_count, 1);  // the directory twin; the system's twins go with it
  EXPECT_EQ(owned->twins, std::vector<std::string>{"urn:t:dir"});

  const auto audit_before = all_audit().size();
  auto refused = remove(PrincipalId("a"), std::nullopt);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::conflict);
  for (const char* name : {"third-party-system 'pay'", "twin-system 'plant'", "directory twin 'urn:t:dir'",
                           "2 systems", "1 directory twin"}) {
    EXPECT_TRUE(contains(refused.error().detail, name)) << refused.error().detail;
  }
  EXPECT_TRUE(store_->principal(PrincipalId("a")));
  EXPECT_EQ(all_audit().size(), audit_before);

  auto to_self = wait_for<OwnedRegistrations>([&](Completion<OwnedRegistrations> done) {
    store_->transfer_registrations(PrincipalId("a"), PrincipalId("a"), make_audit("x", "a"), std::move(done));
  });
  EXPECT_EQ(to_self.error().code, Errc::bad_request);
  auto to_nobody = wait_for<OwnedRegistrations>([&](Completion<OwnedRegistrations> done) {
    store_->transfer_registrations(PrincipalId("a"), PrincipalId("nobody"), make_audit("x", "a"),
                                   std::move(done));
  });
  EXPECT_EQ(to_nobody.error().code, Errc::not_found);

  auto moved = wait_for<OwnedRegistrations>([&](Completion<OwnedRegistrations> done) {
    store_->transfer_registrations(PrincipalId("a"), PrincipalId("b"),
                                   make_audit("principal.transfer", "a", kT0 + 5s), std::move(done));
  });
  ASSERT_TRUE(moved) << moved.error().detail;
  EXPECT_EQ(moved->system_count, 2);
  EXPECT_EQ(moved->twin_count, 1);
  const auto pay = store_->system(core::SystemKind::third_party, "pay");
  EXPECT_EQ(pay->owner.str(), "b");
  EXPECT_EQ(pay->version, 2);
  EXPECT_EQ(pay->modified, kT0 + 5s);
  EXPECT_EQ(store_->system(core::SystemKind::twin, "plant")->owner.str(), "b");
  for (const char* id : {"urn:t:1", "urn:t:2", "urn:t:dir"}) {
    const auto t = store_->twin(id);
    EXPECT_EQ(t->owner.str(), "b") << id;
    EXPECT_EQ(t->version, 1) << id;  // the TD did not change
  }
  // The change feed carries the new owner of each twin (for the in-memory index) and of each system.
  std::set<std::string> heard;
  for (const auto& c : recorder_->of(ChangeType::thing_transferred)) {
    ASSERT_TRUE(c->twin);
    EXPECT_EQ(c->twin->owner.str(), "b");
    heard.insert(c->subject);
  }
  EXPECT_EQ(heard, (std::set<std::string>{"urn:t:1", "urn:t:2", "urn:t:dir"}));
  std::set<std::string> systems;
  for (const auto& c : recorder_->of(ChangeType::system_updated)) systems.insert(c->subject);
  EXPECT_EQ(systems, (std::set<std::string>{"pay", "plant"}));
  EXPECT_TRUE(store_->owned_by(PrincipalId("a"))->empty());
  EXPECT_EQ(all_audit().back().action, "principal.transfer");

  ASSERT_TRUE(remove(PrincipalId("a"), std::nullopt));
}

TEST_F(SqliteStoreTest, DeletedOwnersBeyondTheListAreCounted) {
  ASSERT_TRUE(create(make_principal("many")));
  for (int i = 0; i < 25; ++i) {
    const auto id = fmt::format("s{:02}", i);
    ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
      store_->create_system(system_record(id, "payment", "many"), make_audit("r", id), std::move(done));
    }));
  }
  auto owned = store_->owned_by(PrincipalId("many"));
  ASSERT_TRUE(owned);
  EXPECT_EQ(owned->system_count, 25);
  EXPECT_EQ(owned->systems.size(), kOwnedListLimit);
  const auto refused = remove(PrincipalId("many"), std::nullopt);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(contains(refused.error().detail, "and 5 more (25 systems, 0 directory twins)"))
      << refused.error().detail;
}

TEST_F(SqliteStoreTest, TheFeedCarriesCommittedChangesOfPrincipalsAndKeysWithTheirFacts) {
  const auto p = make_principal("watched");
  ASSERT_TRUE(create(p, make_key(p.id, "k1")));
  auto disabled = p;
  disabled.disabled = true;
  ASSERT_TRUE(update(disabled, 1));
  EXPECT_FALSE(update(disabled, 7));  // a failed write is not announced
  ASSERT_TRUE(revoke(p.id, ApiKeyId("k1")));
  ASSERT_TRUE(remove(p.id, std::nullopt));

  std::vector<std::string> types;
  for (const auto& c : recorder_->heard()) types.emplace_back(to_string(c->type));
  EXPECT_EQ(types, (std::vector<std::string>{"principal_created", "key_added", "principal_updated",
                                             "key_revoked", "principal_deleted"}));
  const auto updated = recorder_->of(ChangeType::principal_updated).at(0);
  ASSERT_TRUE(updated->principal && updated->principal->principal);
  EXPECT_TRUE(updated->principal->principal->disabled);
  const auto revoked = recorder_->of(ChangeType::key_revoked).at(0);
  ASSERT_TRUE(revoked->principal && revoked->principal->revoked_key);
  EXPECT_EQ(revoked->principal->revoked_key->str(), "k1");
  EXPECT_FALSE(revoked->principal->principal.has_value());
  EXPECT_TRUE(recorder_->of(ChangeType::principal_deleted).at(0)->principal->deleted);
  // No secret in what streams would carry.
  for (const auto& c : recorder_->heard()) {
    EXPECT_FALSE(contains(c->data, "hash")) << c->data;
  }
}

TEST_F(SqliteStoreTest, TheFeedIsNumberedWithoutGapsInCommitOrderAndSurvivesARestart) {
  // Failed writes in the same batches as successful ones take no number.
  std::vector<std::future<Result<Principal>>> pending;
  for (int i = 0; i < 40; ++i) {
    auto [done, fut] = completion<Principal>();
    store_->create_principal(make_principal(i % 4 == 3 ? "dup" : fmt::format("p{}", i)), std::nullopt,
                             make_audit("principal.create", "x"), std::move(done));
    pending.push_back(std::move(fut));
  }
  for (auto& f : pending) f.get();
  const auto heard = recorder_->heard();
  ASSERT_EQ(heard.size(), 31u);  // 30 distinct ids plus the first "dup"
  for (std::size_t i = 0; i < heard.size(); ++i) EXPECT_EQ(heard[i]->seq, static_cast<std::int64_t>(i + 1));

  auto window = store_->change_window();
  ASSERT_TRUE(window);
  EXPECT_EQ(window->first, 1);
  EXPECT_EQ(window->last, 31);
  close_store();
  ASSERT_NO_FATAL_FAILURE(open_store(options()));
  ASSERT_TRUE(create(make_principal("after-restart")));
  const auto after = recorder_->heard();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]->seq, 32);
  // The kept changes read back complete for streams (typed facts are live only).
  auto read = store_->changes(29, 10);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 3u);
  EXPECT_EQ((*read)[0].seq, 30);
  EXPECT_EQ((*read)[2].seq, 32);
  EXPECT_EQ((*read)[2].type, ChangeType::principal_created);
  EXPECT_EQ((*read)[2].subject, "after-restart");
  EXPECT_EQ(boost::json::parse((*read)[2].data).at("id").as_string(), "after-restart");
}

TEST_F(SqliteStoreTest, TheFeedKeepsTheNewestChangesAndSaysWhereItsWindowStarts) {
  auto o = options();
  o.keep_changes = 10;
  ASSERT_NO_FATAL_FAILURE(open_store(o));
  std::vector<std::future<Result<Principal>>> pending;
  for (int i = 0; i < 4200; ++i) {
    auto [done, fut] = completion<Principal>();
    store_->create_principal(make_principal(fmt::format("p{}", i)), std::nullopt,
                             make_audit("principal.create", "x"), std::move(done));
    pending.push_back(std::move(fut));
  }
  for (auto& f : pending) ASSERT_TRUE(f.get());
  auto window = store_->change_window();
  ASSERT_TRUE(window);
  EXPECT_EQ(window->last, 4200);
  EXPECT_GT(window->first, 1);  // pruned in steps: at most a prune step more than asked is kept
  EXPECT_LE(window->last - window->first + 1, 10 + 4096);
  auto read = store_->changes(0, 5);
  ASSERT_TRUE(read);
  ASSERT_FALSE(read->empty());
  EXPECT_EQ(read->front().seq, window->first);  // a read of a pruned range starts at the window
}

TEST_F(SqliteStoreTest, ATwinRegisteredAgainAfterItsExpiryStartsWithoutTheOldStateAndPolicy) {
  ASSERT_TRUE(create(make_principal("old")));
  ASSERT_TRUE(create(make_principal("new")));
  auto first = twin_record("urn:t:exp", "", "old");
  first.expires = kT0 + 10s;
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(first, make_audit("twin.create", "urn:t:exp"), std::move(done));
  }));
  auto state = std::make_shared<core::TwinState>();
  state->id = "urn:t:exp";
  state->version = 2;
  state->properties["secret"] = 42;
  state->ingested = kT0;
  state->channel = "http";
  auto written = wait_for<std::vector<Result<void>>>([&](Completion<std::vector<Result<void>>> done) {
    store_->write_states({StateWrite{state, 0, "{}", ""}}, std::move(done));
  });
  ASSERT_TRUE(written && (*written)[0]);
  ASSERT_TRUE(wait_for<PolicyRecord>([&](Completion<PolicyRecord> done) {
    store_->put_policy({"urn:t:exp", {{"rules", boost::json::array{}}}, 0, {}}, std::nullopt,
                       make_audit("twin.policy", "urn:t:exp"), std::move(done));
  }));
  // After its expiry another principal registers the same id: nothing of the old twin is its.
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(twin_record("urn:t:exp", "", "new"),
                        make_audit("twin.create", "urn:t:exp", kT0 + 20s), std::move(done));
  }));
  EXPECT_FALSE(store_->twin_state("urn:t:exp").value().has_value());
  EXPECT_FALSE(store_->twin_policy("urn:t:exp").value().has_value());
  const auto heard = recorder_->heard();
  ASSERT_GE(heard.size(), 2u);
  EXPECT_EQ(heard[heard.size() - 2]->type, ChangeType::thing_deleted);
  EXPECT_EQ(heard.back()->type, ChangeType::thing_created);
}

// Each state write of a batch holds or fails on its own: the twin must exist and its stored state be at the
// version the writer expects; a failed write stores nothing and leaves no change.
TEST_F(SqliteStoreTest, StateWritesHoldOnlyAtTheExpectedVersionOfAnExistingTwin) {
  ASSERT_TRUE(create(make_principal("o")));
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(twin_record("urn:t:s", "", "o"), make_audit("twin.create", "urn:t:s"),
                        std::move(done));
  }));
  const auto state = [](std::string id, std::int64_t version, int value) {
    auto s = std::make_shared<core::TwinState>();
    s->id = std::move(id);
    s->version = version;
    s->properties["v"] = value;
    s->ingested = kT0;
    s->channel = "http";
    return std::shared_ptr<const core::TwinState>(std::move(s));
  };
  const auto write = [&](std::vector<StateWrite> writes) {
    auto r = wait_for<std::vector<Result<void>>>([&](Completion<std::vector<Result<void>>> done) {
      store_->write_states(std::move(writes), std::move(done));
    });
    EXPECT_TRUE(r) << r.error().detail;
    return r ? *r : std::vector<Result<void>>{};
  };
  const auto heard_before = recorder_->heard().size();
  auto first = write({StateWrite{state("urn:t:s", 2, 1), 0, "{}", ""},
                      StateWrite{state("urn:t:missing", 2, 1), 0, "{}", ""}});
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(first[0]);
  ASSERT_FALSE(first[1]);
  EXPECT_EQ(first[1].error().code, Errc::not_found);
  EXPECT_EQ(first[1].error().detail, "twin 'urn:t:missing' does not exist");
  // A writer that believes there is no stored state yet, or another version, is refused with the stored one.
  auto stale =
      write({StateWrite{state("urn:t:s", 3, 2), 0, "{}", ""}, StateWrite{state("urn:t:s", 3, 3), 1, "{}", ""},
             StateWrite{state("urn:t:s", 3, 4), 2, "{}", ""}});
  ASSERT_EQ(stale.size(), 3u);
  ASSERT_FALSE(stale[0]);
  EXPECT_EQ(stale[0].error().code, Errc::precondition_failed);
  EXPECT_EQ(stale[0].error().detail, "the state of twin 'urn:t:s' is at version 2, not 0");
  ASSERT_FALSE(stale[1]);
  EXPECT_EQ(stale[1].error().detail, "the state of twin 'urn:t:s' is at version 2, not 1");
  EXPECT_TRUE(stale[2]);
  const auto stored = store_->twin_state("urn:t:s");
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->version, 3);
  EXPECT_EQ((*stored)->properties.at("v"), 4);
  EXPECT_EQ(recorder_->heard().size(), heard_before + 2);  // one change per write that held
}

TEST_F(SqliteStoreTest, TwinChangesCarryTheServedTdAndTheMergePatchOfAnUpdate) {
  ASSERT_TRUE(create(make_principal("o")));
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(twin_record("urn:t:x", "", "o"), make_audit("twin.create", "urn:t:x"),
                        std::move(done));
  }));
  auto changed = twin_record("urn:t:x", "", "o");
  changed.title = "renamed";
  changed.document["title"] = "renamed";
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->update_twin(changed, 1, make_audit("twin.update", "urn:t:x"), std::move(done));
  }));
  ASSERT_TRUE(wait_for<void>([&](Completion<void> done) {
    store_->delete_twin("urn:t:x", 2, make_audit("twin.delete", "urn:t:x"), std::move(done));
  }));
  const auto created = recorder_->of(ChangeType::thing_created).at(0);
  EXPECT_EQ(boost::json::parse(created->data).at("title").as_string(), "twin urn:t:x");
  ASSERT_TRUE(created->twin);
  const auto updated = recorder_->of(ChangeType::thing_updated).at(0);
  const auto patch = boost::json::parse(updated->data).as_object();
  EXPECT_EQ(patch.at("id").as_string(), "urn:t:x");
  EXPECT_EQ(patch.at("title").as_string(), "renamed");
  EXPECT_EQ(patch.at("twinbridge:version").as_int64(), 2);
  EXPECT_EQ(recorder_->of(ChangeType::thing_deleted).at(0)->subject, "urn:t:x");
}

TEST_F(SqliteStoreTest, ADatabaseOfSchema4KnowsItsDeletedPrincipalsFromTheAuditLog) {
  ASSERT_TRUE(create(make_principal("deleted-long-ago")));
  ASSERT_TRUE(remove(PrincipalId("deleted-long-ago"), std::nullopt));
  ASSERT_TRUE(create(make_principal("alive")));
  close_store();
  // Back to what schema 4 left: no tombstones; the audit log remembers the deletion.
  exec_sql(options().path,
           "BEGIN; DROP TABLE principal_tombstones; DROP INDEX twins_by_owner; DROP TABLE changes; "
           "DROP TABLE twin_state; DROP TABLE twin_policies; DROP TABLE selections; "
           "DROP TABLE system_credentials; DROP TABLE twin_acquisitions; "
           "DELETE FROM schema_migrations WHERE version > 4; COMMIT;");
  ASSERT_NO_FATAL_FAILURE(open_store(options()));
  EXPECT_EQ(query_integer(options().path, "SELECT MAX(version) FROM schema_migrations"),
            SqliteStore::schema_version());
  auto again = create(make_principal("deleted-long-ago"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::conflict);
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM principal_tombstones"), 1);
  EXPECT_TRUE(store_->principal(PrincipalId("alive")));
}

}  // namespace
}  // namespace twinbridge::store

namespace twinbridge::store {
namespace {

// SQLite's own messages name tables, columns and constraints: they belong in the log, never in a problem
// document a client reads.
SelectionRecord selection_record(std::string owner, std::string id, boost::json::object document) {
  SelectionRecord r;
  r.owner = PrincipalId(std::move(owner));
  r.id = std::move(id);
  r.document = std::move(document);
  return r;
}

TEST_F(SqliteStoreTest, SelectionsAreVersionedPerOwnerAuditedAndOnTheFeed) {
  auto put = [&](SelectionRecord r) {
    return wait_for<SelectionRecord>([&](Completion<SelectionRecord> done) {
      store_->create_selection(std::move(r), make_audit("selection.create", "s"), std::move(done));
    });
  };
  auto made = put(selection_record("mv-1", "lamps", {{"twins", boost::json::array{"urn:t:1"}}}));
  ASSERT_TRUE(made) << made.error().detail;
  EXPECT_EQ(made->version, 1);
  EXPECT_EQ(made->created, kT0);
  // Ids are per owner: another principal may use the same one; the same owner may not.
  ASSERT_TRUE(put(selection_record("mv-2", "lamps", {{"filter", "$[?@.title]"}})));
  auto taken = put(selection_record("mv-1", "lamps", {}));
  ASSERT_FALSE(taken);
  EXPECT_EQ(taken.error().code, Errc::conflict);
  EXPECT_EQ(taken.error().fields.at(0).pointer, "/id");

  auto changed = wait_for<SelectionRecord>([&](Completion<SelectionRecord> done) {
    store_->update_selection(selection_record("mv-1", "lamps", {{"filter", "$[?@.title == 'x']"}}), 1,
                             make_audit("selection.replace", "lamps", kT0 + 1s), std::move(done));
  });
  ASSERT_TRUE(changed) << changed.error().detail;
  EXPECT_EQ(changed->version, 2);
  EXPECT_EQ(changed->created, kT0);
  EXPECT_EQ(changed->modified, kT0 + 1s);
  auto stale = wait_for<SelectionRecord>([&](Completion<SelectionRecord> done) {
    store_->update_selection(selection_record("mv-1", "lamps", {}), 1, make_audit("r", "lamps"),
                             std::move(done));
  });
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Errc::precondition_failed);

  auto read = store_->selection(PrincipalId("mv-1"), "lamps");
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->document.at("filter"), "$[?@.title == 'x']");
  EXPECT_EQ((*read)->version, 2);
  auto mine = store_->selections(PrincipalId("mv-1"), {"", 10});
  ASSERT_TRUE(mine);
  ASSERT_EQ(mine->items.size(), 1u);
  EXPECT_EQ(mine->items[0].owner, PrincipalId("mv-1"));

  ASSERT_TRUE(wait_for<void>([&](Completion<void> done) {
    store_->delete_selection(PrincipalId("mv-1"), "lamps", 2, make_audit("selection.delete", "lamps"),
                             std::move(done));
  }));
  auto gone = store_->selection(PrincipalId("mv-1"), "lamps");
  ASSERT_TRUE(gone);
  EXPECT_FALSE(*gone);
  EXPECT_EQ(recorder_->of(ChangeType::selection_changed).size(), 3u);
  ASSERT_EQ(recorder_->of(ChangeType::selection_deleted).size(), 1u);
  EXPECT_EQ(boost::json::parse(recorder_->of(ChangeType::selection_deleted)[0]->data),
            (boost::json::object{{"owner", "mv-1"}, {"id", "lamps"}}));
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM audit WHERE action LIKE 'selection.%'"), 4);
}

TEST_F(SqliteStoreTest, DeletingAPrincipalDeletesItsSelections) {
  ASSERT_TRUE(create(make_principal("mv", core::PrincipalKind::metaverse_system)));
  ASSERT_TRUE(wait_for<SelectionRecord>([&](Completion<SelectionRecord> done) {
    store_->create_selection(selection_record("mv", "a", {{"filter", "$"}}), make_audit("s", "a"),
                             std::move(done));
  }));
  ASSERT_TRUE(remove(PrincipalId("mv"), std::nullopt));
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM selections"), 0);
  EXPECT_EQ(recorder_->of(ChangeType::selection_deleted).size(), 1u);
}

TEST_F(SqliteStoreTest, CredentialsAreStoredApartFromTheRegistrationAndGoWithTheSystem) {
  auto plant = system_record("plant", "factory", "a");
  plant.kind = core::SystemKind::twin;
  SystemCredentials secret;
  secret.by_scheme = {{"basic_sc", {{"username", "u"}, {"password", "p4ss-w0rd"}}}};
  auto stored = wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->register_twin_system(plant, {twin_record("urn:t:1", "plant", "a")}, secret,
                                 make_audit("r", "plant"), std::move(done));
  });
  ASSERT_TRUE(stored) << stored.error().detail;
  auto read = store_->system_credentials(core::SystemKind::twin, "plant");
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->by_scheme, secret.by_scheme);
  // Nothing of them is in the record, the audit log or the change feed.
  auto record = store_->system(core::SystemKind::twin, "plant");
  ASSERT_TRUE(record);
  EXPECT_FALSE(contains(boost::json::serialize(core::to_json(*record)), "p4ss-w0rd"));
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM audit WHERE detail LIKE '%p4ss%'"), 0);
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM changes WHERE data LIKE '%p4ss%'"), 0);

  // An update without credentials keeps them; with, replaces them; empty removes them.
  ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(plant, 1, make_audit("u", "plant"), std::move(done));
  }));
  EXPECT_TRUE(*store_->system_credentials(core::SystemKind::twin, "plant"));
  SystemCredentials bearer;
  bearer.by_scheme = {{"bearer_sc", {{"token", "t0k"}}}};
  ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(plant, 2, bearer, make_audit("u", "plant"), std::move(done));
  }));
  EXPECT_EQ((*store_->system_credentials(core::SystemKind::twin, "plant"))->by_scheme, bearer.by_scheme);
  ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(plant, 3, SystemCredentials{}, make_audit("u", "plant"), std::move(done));
  }));
  EXPECT_FALSE(*store_->system_credentials(core::SystemKind::twin, "plant"));

  ASSERT_TRUE(wait_for<core::SystemRecord>([&](Completion<core::SystemRecord> done) {
    store_->update_system(plant, 4, bearer, make_audit("u", "plant"), std::move(done));
  }));
  ASSERT_TRUE(wait_for<std::vector<std::string>>([&](Completion<std::vector<std::string>> done) {
    store_->delete_system(core::SystemKind::twin, "plant", 5, make_audit("d", "plant"), std::move(done));
  }));
  EXPECT_EQ(query_integer(options().path, "SELECT COUNT(*) FROM system_credentials"), 0);
}

TEST_F(SqliteStoreTest, AnAcquisitionRecordIsVersionedAndGoesWithItsTwin) {
  ASSERT_TRUE(wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(twin_record("urn:t:a", "", "o"), make_audit("t", "urn:t:a"), std::move(done));
  }));
  AcquisitionRecord r;
  r.twin_id = "urn:t:a";
  r.values_at = kT0;
  r.values_from = {{"system", "plant"}, {"operation", "readallproperties"}};
  r.permissions_at = kT0 + 1s;
  r.permissions_from = "http://plant.example/permissions?twin=urn%3At%3Aa";
  r.permissions_answer = boost::json::object{{"permissions", boost::json::array{}}};
  auto first = wait_for<AcquisitionRecord>(
      [&](Completion<AcquisitionRecord> done) { store_->record_acquisition(r, std::move(done)); });
  ASSERT_TRUE(first) << first.error().detail;
  EXPECT_EQ(first->version, 1);
  r.failing_since = kT0 + 2s;
  r.problem = "connection refused";
  auto second = wait_for<AcquisitionRecord>(
      [&](Completion<AcquisitionRecord> done) { store_->record_acquisition(r, std::move(done)); });
  ASSERT_TRUE(second);
  EXPECT_EQ(second->version, 2);
  auto read = store_->acquisition("urn:t:a");
  ASSERT_TRUE(read && *read);
  EXPECT_EQ((*read)->values_at, kT0);
  EXPECT_EQ((*read)->values_from, r.values_from);
  EXPECT_EQ((*read)->failing_since, kT0 + 2s);
  EXPECT_EQ((*read)->problem, "connection refused");
  EXPECT_EQ((*read)->permissions_at, kT0 + 1s);
  EXPECT_EQ((*read)->permissions_from, r.permissions_from);
  EXPECT_EQ((*read)->permissions_answer, r.permissions_answer);
  EXPECT_EQ((*read)->version, 2);

  r.twin_id = "urn:t:none";
  auto missing = wait_for<AcquisitionRecord>(
      [&](Completion<AcquisitionRecord> done) { store_->record_acquisition(r, std::move(done)); });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);
  ASSERT_TRUE(wait_for<void>([&](Completion<void> done) {
    store_->delete_twin("urn:t:a", std::nullopt, make_audit("t", "urn:t:a"), std::move(done));
  }));
  EXPECT_FALSE(*store_->acquisition("urn:t:a"));
}

TEST(SqliteErrors, SqliteMessagesGoToTheLogDetailOnly) {
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("tb-sqlite-errors-{}", ::getpid());
  std::filesystem::create_directories(dir);
  auto db = sqlite::Connection::open((dir / "x.db").string(), false, "FULL");
  ASSERT_TRUE(db.has_value()) << db.error().detail;
  ASSERT_TRUE((*db)->exec("CREATE TABLE secret_table (secret_column TEXT PRIMARY KEY)").has_value());
  ASSERT_TRUE((*db)->exec("INSERT INTO secret_table VALUES ('a')").has_value());
  const auto duplicate = (*db)->exec("INSERT INTO secret_table VALUES ('a')");
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error().code, core::Errc::conflict);
  EXPECT_EQ(duplicate.error().detail.find("secret"), std::string::npos) << duplicate.error().detail;
  EXPECT_NE(duplicate.error().log_detail.find("secret_table.secret_column"), std::string::npos)
      << duplicate.error().log_detail;
  const auto broken = (*db)->exec("SELECT nonsense FROM nowhere_table");
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error().code, core::Errc::internal);
  EXPECT_EQ(broken.error().detail.find("nowhere_table"), std::string::npos) << broken.error().detail;
  EXPECT_NE(broken.error().log_detail.find("nowhere_table"), std::string::npos);
  db->reset();
  std::filesystem::remove_all(dir);
}

TEST_F(SqliteStoreTest, ADatabaseOfSchema8MovesItsTwinsToARowidTableKeepingEveryOne) {
  close_store();
  // Back to schema 8: the twins in a WITHOUT ROWID table, as that version created it.
  exec_sql(
      options().path,
      "BEGIN; DROP TABLE twins; CREATE TABLE twins (id TEXT PRIMARY KEY, system_id TEXT NOT NULL, owner TEXT "
      "NOT NULL, title TEXT NOT NULL, document TEXT NOT NULL, created INTEGER NOT NULL, modified INTEGER NOT "
      "NULL, version INTEGER NOT NULL, ttl INTEGER, expires INTEGER) WITHOUT ROWID; CREATE INDEX "
      "twins_by_system ON twins(system_id, id); CREATE INDEX twins_by_expiry ON twins(expires) WHERE "
      "expires IS NOT NULL; CREATE INDEX twins_by_owner ON twins(owner, system_id, id); " +
          twin_sql("urn:m:2") + twin_sql("urn:m:1") + twin_sql("urn:m:3") +
          "DELETE FROM schema_migrations WHERE version > 8; COMMIT;");
  ASSERT_NO_FATAL_FAILURE(open_store(options()));
  EXPECT_EQ(query_integer(options().path, "SELECT MAX(version) FROM schema_migrations"),
            SqliteStore::schema_version());
  EXPECT_EQ(
      query_integer(options().path,
                    "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'twins' AND sql LIKE '%WITHOUT ROWID%'"),
      0);
  EXPECT_EQ(query_integer(options().path,
                          "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN "
                          "('twins_by_system', 'twins_by_expiry', 'twins_by_owner')"),
            3);
  auto page = store_->twins(TwinQuery{});
  ASSERT_TRUE(page) << page.error().detail;
  std::vector<std::string> ids;
  for (const auto& t : page->items) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"urn:m:1", "urn:m:2", "urn:m:3"}));
  const auto one = store_->twin("urn:m:2");
  ASSERT_TRUE(one) << one.error().detail;
  EXPECT_EQ(one->title, "T");
  // A second twin with the same id is still refused.
  auto again = twin_record("urn:m:2", "", "p");
  const auto created = wait_for<core::TwinRecord>([&](Completion<core::TwinRecord> done) {
    store_->create_twin(std::move(again), make_audit("twin.create", "urn:m:2"), std::move(done));
  });
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, Errc::conflict);
}

// A commit settles after its writes were acknowledged: the listener's settled() comes after the completion,
// once per commit.
TEST_F(SqliteStoreTest, ACommitSettlesAfterItsWritesWereAcknowledged) {
  std::promise<std::size_t> settled_when_done;
  store_->create_principal(make_principal("p"), std::nullopt, make_audit("principal.create", "p"),
                           [&](Result<Principal> r) {
                             EXPECT_TRUE(r);
                             settled_when_done.set_value(recorder_->settled_at().size());
                           });
  EXPECT_EQ(settled_when_done.get_future().get(), 0u);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (recorder_->settled_at().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(recorder_->settled_at(), std::vector<std::size_t>{recorder_->heard().size()});
}

// The feed's memory drops its oldest changes as new ones come, but releases them (often their last
// reference, with a twin's state) only once the commit settled, after its writes were acknowledged.
TEST_F(SqliteStoreTest, TheFeedReleasesWhatItsMemoryDroppedOnceTheCommitSettled) {
  ChangeFeed feed(*store_, 1);
  const auto change = [](std::int64_t seq) {
    Change c;
    c.seq = seq;
    c.type = ChangeType::state_changed;
    c.subject = "urn:t:1";
    return std::make_shared<const Change>(std::move(c));
  };
  auto first = change(1);
  const std::weak_ptr<const Change> held = first;
  feed.committed(std::span(&first, 1));
  first.reset();
  feed.settled();
  EXPECT_FALSE(held.expired());  // still the newest
  const auto second = change(2);
  feed.committed(std::span(&second, 1));
  EXPECT_FALSE(feed.read_recent(0, 10).has_value());  // memory holds only the second
  EXPECT_FALSE(held.expired());
  feed.settled();
  EXPECT_TRUE(held.expired());
}

// WAL checkpoints run beside the writer (its WAL hook replaces SQLite's own, inside the commit): once the WAL
// holds a thousand pages they are copied into the database file, which without checkpoints would stay as
// small as it was, the data in the WAL alone.
TEST_F(SqliteStoreTest, WalPagesReachTheDatabaseFileThroughBackgroundCheckpoints) {
  const auto file = dir_ / "twinbridge.db";
  const auto before = std::filesystem::file_size(file);
  for (int i = 0; i < 400; ++i) {  // ~3 overflow pages each: beyond a thousand pages of WAL
    auto p = make_principal(fmt::format("p{}", i));
    p.properties["blob"] = std::string(10'000, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(create(std::move(p)));
  }
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (std::filesystem::file_size(file) < before + (2u << 20) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(std::filesystem::file_size(file), before + (2u << 20));
}

}  // namespace
}  // namespace twinbridge::store
