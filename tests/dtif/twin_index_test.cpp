// TwinIndex against a real SqliteStore: the index follows every committed twin write (create, update,
// delete, a twin system registered with twins, a twin system deregistered), never sees a write that failed,
// is rebuilt from the store by load(), and answers discovery (by system, all, cursor, offset, expiry,
// JSONPath filter).

#include "dtif/twin_index.hpp"

#include <gtest/gtest.h>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

#include "store/sqlite_store.hpp"
#include "support/server_process.hpp"
#include "support/store_writes.hpp"

namespace twinbridge::dtif {
namespace {

using namespace std::chrono_literals;
using testing::wait_for;

const core::Timestamp kT0 = core::from_unix_micros(1'780'000'000'000'000);

core::AuditEntry audit(std::string action, std::string id, core::Timestamp at = kT0) {
  core::AuditEntry a;
  a.at = at;
  a.actor = "tester";
  a.actor_kind = "operator";
  a.action = std::move(action);
  a.target_type = "twin";
  a.target_id = std::move(id);
  return a;
}

core::TwinRecord twin(const std::string& id, const std::string& system, const std::string& title) {
  core::TwinRecord t;
  t.id = id;
  t.system_id = system;
  t.owner = core::PrincipalId("tester");
  t.title = title;
  t.document = boost::json::parse(R"({"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": ")" + id +
                                  R"(", "title": ")" + title + R"(", "security": "nosec_sc",
      "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}}})")
                   .as_object();
  return t;
}

std::vector<std::string> ids(const store::Page<std::shared_ptr<const core::TwinView>>& page) {
  std::vector<std::string> out;
  for (const auto& v : page.items) out.push_back(v->id());
  return out;
}

class TwinIndexTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void TearDown() override {
    if (store_) store_->stop();
  }
  void open() {
    store::SqliteOptions o;
    o.path = dir_.path() / "twins.db";
    auto opened = store::SqliteStore::open(o);
    ASSERT_TRUE(opened) << opened.error().detail;
    store_ = std::move(*opened);
    store_->set_change_listener(&relay_);
    store_->start();
  }
  // Registers the twin system `id` (without twins) once.
  void system(const std::string& id, std::vector<core::TwinRecord> twins = {}) {
    if (!systems_.insert(id).second && twins.empty()) return;
    core::SystemRecord r;
    r.kind = core::SystemKind::twin;
    r.id = id;
    r.type = "factory";
    r.name = id;
    r.owner = core::PrincipalId("tester");
    auto registered = wait_for<core::SystemRecord>([&](auto done) {
      store_->register_twin_system(r, twins, audit("twin-system.register", id), std::move(done));
    });
    ASSERT_TRUE(registered) << registered.error().detail;
  }
  void create(const core::TwinRecord& t) {
    system(t.system_id);
    auto r = wait_for<core::TwinRecord>(
        [&](auto done) { store_->create_twin(t, audit("twin.create", t.id), std::move(done)); });
    ASSERT_TRUE(r) << r.error().detail;
  }
  store::Page<std::shared_ptr<const core::TwinView>> find(TwinIndexQuery q) const {
    q.alive_at = kT0;
    return index_.find(q);
  }

  testing::TempDir dir_;
  std::set<std::string> systems_;
  TwinIndex index_;
  // The store's changes go straight to the index, as the change feed passes them on in twinbridge.
  struct Relay final : store::ChangeListener {
    explicit Relay(TwinIndex& to) : index(to) {}
    void committed(std::span<const store::ChangePtr> changes) override { index.apply(changes); }
    TwinIndex& index;
  } relay_{index_};
  std::unique_ptr<store::SqliteStore> store_;
};

TEST_F(TwinIndexTest, FollowsCommittedWrites) {
  create(twin("urn:t:1", "plant-a", "Lamp"));
  create(twin("urn:t:2", "plant-b", "Pump"));
  create(twin("urn:t:3", "plant-a", "Valve"));
  EXPECT_EQ(index_.size(), 3u);
  EXPECT_EQ(ids(find({})), (std::vector<std::string>{"urn:t:1", "urn:t:2", "urn:t:3"}));
  TwinIndexQuery by_system;
  by_system.system_id = "plant-a";
  EXPECT_EQ(ids(find(by_system)), (std::vector<std::string>{"urn:t:1", "urn:t:3"}));

  // An update replaces the view; the served TD carries the new version.
  auto changed = twin("urn:t:1", "plant-a", "Bright lamp");
  auto updated = wait_for<core::TwinRecord>(
      [&](auto done) { store_->update_twin(changed, 1, audit("twin.replace", "urn:t:1"), std::move(done)); });
  ASSERT_TRUE(updated);
  auto page = find(by_system);
  ASSERT_EQ(page.items.size(), 2u);
  EXPECT_EQ(page.items[0]->td_json().at("title"), "Bright lamp");
  EXPECT_EQ(page.items[0]->td_json().at("twinbridge:version"), 2);
  EXPECT_EQ(page.items[0]->version(), 2);

  // A failed write (stale version) changes nothing.
  auto stale = wait_for<core::TwinRecord>([&](auto done) {
    store_->update_twin(twin("urn:t:2", "plant-b", "Hijacked"), 7, audit("twin.replace", "urn:t:2"),
                        std::move(done));
  });
  EXPECT_FALSE(stale);
  by_system.system_id = "plant-b";
  EXPECT_EQ(find(by_system).items.at(0)->td_json().at("title"), "Pump");

  auto removed = wait_for<void>([&](auto done) {
    store_->delete_twin("urn:t:2", std::nullopt, audit("twin.delete", "urn:t:2"), std::move(done));
  });
  ASSERT_TRUE(removed);
  EXPECT_TRUE(find(by_system).items.empty());
  EXPECT_EQ(index_.size(), 2u);
}

TEST_F(TwinIndexTest, FollowsTwinSystemsRegisteredAndDeregistered) {
  system("plant-c", {twin("urn:c:1", "plant-c", "One"), twin("urn:c:2", "plant-c", "Two")});
  create(twin("urn:other", "plant-d", "Elsewhere"));
  TwinIndexQuery q;
  q.system_id = "plant-c";
  auto page = find(q);
  EXPECT_EQ(ids(page), (std::vector<std::string>{"urn:c:1", "urn:c:2"}));
  EXPECT_EQ(page.items[0]->td_json().at("twinbridge:version"), 1);

  auto gone = wait_for<std::vector<std::string>>([&](auto done) {
    store_->delete_system(core::SystemKind::twin, "plant-c", std::nullopt,
                          audit("twin-system.deregister", "plant-c"), std::move(done));
  });
  ASSERT_TRUE(gone);
  EXPECT_EQ(*gone, (std::vector<std::string>{"urn:c:1", "urn:c:2"}));  // the twins it took with it
  EXPECT_TRUE(find(q).items.empty());
  EXPECT_EQ(ids(find({})), (std::vector<std::string>{"urn:other"}));
}

TEST_F(TwinIndexTest, ATwinWhoseSystemWasDeregisteredIsRefused) {
  create(twin("urn:r:1", "plant-r", "First"));
  ASSERT_TRUE(wait_for<std::vector<std::string>>([&](auto done) {
    store_->delete_system(core::SystemKind::twin, "plant-r", std::nullopt,
                          audit("twin-system.deregister", "plant-r"), std::move(done));
  }));
  // A request that checked the system before the deregistration committed, and writes after it.
  auto late = wait_for<core::TwinRecord>([&](auto done) {
    store_->create_twin(twin("urn:r:2", "plant-r", "Late"), audit("twin.create", "urn:r:2"), std::move(done));
  });
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, core::Errc::not_found);
  EXPECT_EQ(index_.size(), 0u);
  EXPECT_FALSE(store_->twin("urn:r:2"));
}

TEST_F(TwinIndexTest, LoadRebuildsItFromTheStore) {
  create(twin("urn:l:1", "p", "A"));
  create(twin("urn:l:2", "p", "B"));
  store_->stop();
  store_.reset();
  TwinIndex fresh;
  open();
  ASSERT_TRUE(fresh.load(*store_));
  EXPECT_EQ(fresh.size(), 2u);
  EXPECT_GT(fresh.bytes(), 0u);
  TwinIndexQuery q;
  q.alive_at = kT0;
  EXPECT_EQ(ids(fresh.find(q)), (std::vector<std::string>{"urn:l:1", "urn:l:2"}));
}

TEST_F(TwinIndexTest, LoadReadsEveryTwinOnSeveralBuildersAcrossBatches) {
  std::vector<core::TwinRecord> many;
  for (int i = 0; i < 1100; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "urn:m:%05d", i);
    many.push_back(twin(id, "m", "T" + std::to_string(i)));
  }
  system("m", many);
  create(twin("urn:a:late", "", "Late"));  // another system, registered after
  store_->stop();
  store_.reset();
  open();
  for (const unsigned builders : {1u, 3u}) {
    TwinIndex fresh;
    ASSERT_TRUE(fresh.load(*store_, builders));
    ASSERT_EQ(fresh.size(), 1101u) << builders;
    TwinIndexQuery q;
    q.alive_at = kT0;
    q.limit = 2000;
    const auto all = ids(fresh.find(q));
    ASSERT_EQ(all.size(), 1101u);
    EXPECT_EQ(all.front(), "urn:a:late");
    EXPECT_EQ(all.back(), "urn:m:01099");
    EXPECT_TRUE(std::is_sorted(all.begin(), all.end()));
    const auto one = fresh.get("urn:m:00512");
    ASSERT_TRUE(one);
    EXPECT_EQ(one->td_json().at("title").as_string(), "T512");
    EXPECT_EQ(one->td_json().at("twinbridge:system").as_string(), "m");
    q.system_id = "m";
    EXPECT_EQ(fresh.find(q).items.size(), 1100u);
  }
}

// Views live in a slab; replaced views leave their blocks sparse, and the index moves the survivors out so
// that those blocks are freed, with every twin still served as it is.
TEST_F(TwinIndexTest, ViewsOfSparseBlocksAreMovedAndTheirBlocksFreed) {
  const auto& slab = core::TwinView::memory();
  const std::string description(3000, 'd');
  auto record = [&](int i, std::int64_t version) {
    char id[32];
    std::snprintf(id, sizeof id, "urn:c:%05d", i);
    auto t = twin(id, "c", "T" + std::to_string(version));
    t.document["description"] = description;
    t.version = version;
    return t;
  };
  constexpr int kTwins = 6000;
  for (int i = 0; i < kTwins; ++i) index_.twin_stored(record(i, 1));
  const auto mapped_before = slab.mapped_bytes();
  // Two of every three replaced: each of the first views' blocks keeps a third of its bytes alive.
  for (int i = 0; i < kTwins; ++i) {
    if (i % 3 != 0) index_.twin_stored(record(i, 2));
  }
  // Each change also compacts; a few more changes finish the pass over every twin.
  for (int round = 0; round < 2 * kTwins / static_cast<int>(TwinIndex::kCompactStep) + 2; ++round) {
    index_.twin_stored(record(1, 3));
  }
  EXPECT_LT(slab.dead_bytes(), std::max(TwinIndex::kCompactMinDead, slab.live_bytes() / 4));
  EXPECT_LT(slab.mapped_bytes(), mapped_before + mapped_before / 2)
      << "the replaced views' blocks are freed once their survivors moved";
  ASSERT_EQ(index_.size(), static_cast<std::size_t>(kTwins));
  for (int i = 0; i < kTwins; i += 7) {
    const auto view = index_.get(record(i, 0).id);
    ASSERT_TRUE(view) << i;
    const std::int64_t expected = i == 1 ? 3 : i % 3 != 0 ? 2 : 1;
    EXPECT_EQ(view->version(), expected) << i;
    EXPECT_EQ(view->td_json().at("title").as_string(), "T" + std::to_string(expected)) << i;
    EXPECT_EQ(view->td_json().at("description").as_string().size(), description.size());
    EXPECT_EQ(view->system_id(), "c");
  }
  TwinIndexQuery q;
  q.alive_at = kT0;
  q.system_id = "c";
  q.limit = kTwins;
  EXPECT_EQ(find(q).items.size(), static_cast<std::size_t>(kTwins));
}

TEST_F(TwinIndexTest, PagesFiltersAndExpiry) {
  for (int i = 0; i < 5; ++i) create(twin("urn:p:" + std::to_string(i), "p", i % 2 == 0 ? "even" : "odd"));
  auto expiring = twin("urn:p:9", "p", "even");
  expiring.ttl_seconds = 10;
  expiring.expires = kT0 + 10s;
  create(expiring);

  TwinIndexQuery q;
  q.limit = 2;
  auto first = find(q);
  EXPECT_EQ(ids(first), (std::vector<std::string>{"urn:p:0", "urn:p:1"}));
  ASSERT_TRUE(first.next_after);
  q.after = *first.next_after;
  EXPECT_EQ(ids(find(q)), (std::vector<std::string>{"urn:p:2", "urn:p:3"}));

  TwinIndexQuery offset;
  offset.offset = 4;
  EXPECT_EQ(ids(find(offset)), (std::vector<std::string>{"urn:p:4", "urn:p:9"}));

  auto filter = query::JsonPath::parse("$[?@.title == 'even']");
  ASSERT_TRUE(filter);
  TwinIndexQuery filtered;
  filtered.filter = &*filter;
  EXPECT_EQ(ids(find(filtered)), (std::vector<std::string>{"urn:p:0", "urn:p:2", "urn:p:4", "urn:p:9"}));
  filtered.alive_at = kT0 + 10s;  // the expiring twin is gone at its expiry
  EXPECT_EQ(ids(index_.find(filtered)), (std::vector<std::string>{"urn:p:0", "urn:p:2", "urn:p:4"}));
  filtered.limit = 1;
  filtered.system_id = "p";
  filtered.alive_at = kT0;
  auto one = find(filtered);
  EXPECT_EQ(ids(one), (std::vector<std::string>{"urn:p:0"}));
  EXPECT_EQ(one.next_after, std::optional<std::string>("urn:p:0"));
}

// Scans of every twin read a snapshot of the index: each one must still see every change made before it.
TEST_F(TwinIndexTest, AScanOfEveryTwinSeesEachChangeMadeBeforeIt) {
  auto record = [](int i, const std::string& title) {
    char id[32];
    std::snprintf(id, sizeof id, "urn:s:%04d", i);
    return twin(id, "s", title);
  };
  constexpr int kTwins = 300;
  for (int i = 0; i < kTwins; ++i) index_.twin_stored(record(i, "old"));
  auto filter = query::JsonPath::parse("$[?@.title == 'new']");
  ASSERT_TRUE(filter);
  TwinIndexQuery all;
  all.limit = 10'000;
  TwinIndexQuery renamed = all;
  renamed.filter = &*filter;
  ASSERT_EQ(find(all).items.size(), static_cast<std::size_t>(kTwins));
  ASSERT_TRUE(find(renamed).items.empty());
  // Fewer changes than drop the snapshot, then many more: after each, a scan sees exactly what is there.
  std::vector<std::string> expected;
  for (int i = 0; i < kTwins; ++i) {
    if (i % 3 == 0) {
      index_.twin_stored(record(i, "new"));
      expected.push_back(record(i, "").id);
    } else if (i % 3 == 1) {
      index_.twin_removed(record(i, "").id);
    }
    if (i % 10 == 0 || i == kTwins - 1) {
      EXPECT_EQ(ids(find(renamed)), expected) << i;
      EXPECT_EQ(find(all).items.size(), static_cast<std::size_t>(kTwins - (i + 2) / 3)) << i;
    }
  }
  // Pages of the snapshot follow the cursor.
  TwinIndexQuery page = renamed;
  page.limit = 7;
  std::vector<std::string> paged;
  for (;;) {
    const auto p = find(page);
    for (const auto& v : p.items) paged.push_back(v->id());
    if (!p.next_after) break;
    page.after = *p.next_after;
  }
  EXPECT_EQ(paged, expected);
}

// Scans of every twin while another thread changes them (labelled for ThreadSanitizer): a scan never sees a
// twin twice or out of order, and never misses one that was there all along.
TEST_F(TwinIndexTest, ScansOfEveryTwinAreWholeWhileTwinsChange) {
  auto record = [](int i, int version) {
    char id[32];
    std::snprintf(id, sizeof id, "urn:w:%04d", i);
    auto t = twin(id, "w", "T" + std::to_string(version));
    t.version = version;
    return t;
  };
  constexpr int kStable = 500;  // never change
  constexpr int kChanging = 100;
  for (int i = 0; i < kStable + kChanging; ++i) index_.twin_stored(record(i, 1));
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int round = 2; !stop.load(); ++round) {
      for (int i = kStable; i < kStable + kChanging; ++i) {
        if (round % 5 == 0) {
          index_.twin_removed(record(i, 0).id);
        } else {
          index_.twin_stored(record(i, round));
        }
      }
    }
  });
  auto scan = [&] {
    TwinIndexQuery all;
    all.limit = 10'000;
    for (int n = 0; n < 200; ++n) {
      const auto page = find(all);
      const auto got = ids(page);
      ASSERT_TRUE(std::is_sorted(got.begin(), got.end()));
      ASSERT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a twin seen twice";
      ASSERT_GE(got.size(), static_cast<std::size_t>(kStable));
      ASSERT_LE(got.size(), static_cast<std::size_t>(kStable + kChanging));
    }
  };
  std::thread reader(scan);
  scan();
  reader.join();
  stop = true;
  writer.join();
}

TEST(TwinViewTest, ServesTheTdAsToJsonDoesInOneAllocation) {
  auto t = twin("urn:v:1", "sys", "Viewed");
  t.version = 3;
  t.created = t.modified = kT0;
  const auto view = core::TwinView::make(t);
  EXPECT_EQ(boost::json::value(view->td_json()), boost::json::value(core::to_json(t)));
  std::string text;
  view->append_json(text);
  EXPECT_EQ(text, boost::json::serialize(core::to_json(t)));  // byte for byte, as served before
  EXPECT_EQ(view->wrapped().size(), 1u);
  EXPECT_EQ(view->wrapped().at(0), view->td());
  EXPECT_EQ(view->id(), "urn:v:1");
  EXPECT_EQ(view->system_id(), "sys");
  EXPECT_GT(view->bytes(), 0u);
  EXPECT_LT(view->bytes(), 8u * 1024u);
  view->prefetch_outer();
  view->prefetch_inner();
}

// Views of TDs of every size, larger than the scratch memory they are built in, with a ttl and an expiry:
// each is the TD as served, packed in about the size of its text.
TEST(TwinViewTest, ViewsOfEverySizeServeTheTdInAnArenaOfItsSize) {
  for (std::size_t size : {10u, 100'000u, 50u, 300'000u, 0u}) {
    auto t = twin("urn:v:" + std::to_string(size), "sys", "Sized");
    t.document["description"] = std::string(size, 'd');
    t.document["registration"] = "replaced by the registration";
    t.version = 2;
    t.created = kT0;
    t.modified = kT0 + 5s;
    t.ttl_seconds = 60;
    t.expires = kT0 + 65s;
    const auto view = core::TwinView::make(t);
    EXPECT_EQ(boost::json::value(view->td_json()), boost::json::value(core::to_json(t))) << size;
    EXPECT_EQ(view->td().find("registration").find("ttl").get_int64(), 60);
    EXPECT_GT(view->bytes(), size);
    EXPECT_LT(view->bytes(), size + 8u * 1024u);
  }
}

}  // namespace
}  // namespace twinbridge::dtif
