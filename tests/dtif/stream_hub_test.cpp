// StreamHub on a real store and change feed, without a server: a subscription yields every change it admits
// in sequence order (live, after falling far behind, and resumed from the store after a restart), a gap when
// the changes it asks for are no longer kept, and ends with a `closed` item when its credential expires or
// loses its rights; ended subscriptions leave the hub.

#include "dtif/stream_hub.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/ids.hpp"
#include "store/sqlite_store.hpp"
#include "support/store_writes.hpp"

namespace twinbridge::dtif {
namespace {

using namespace std::chrono_literals;
using store::ChangeType;

StreamOwner owner(std::string principal = "p", std::string credential = "api-key:k1") {
  return StreamOwner{core::PrincipalId(std::move(principal)), std::move(credential),
                     core::Permission::registry_read, std::nullopt};
}

core::Principal principal_with(std::string id, std::vector<std::string> roles, bool disabled = false) {
  core::Principal p;
  p.id = core::PrincipalId(std::move(id));
  p.kind = core::PrincipalKind::metaverse_system;
  p.name = p.id.str();
  p.roles = std::move(roles);
  p.disabled = disabled;
  return p;
}

core::AuditEntry audit(std::string action) {
  core::AuditEntry a;
  a.at = core::Timestamp(std::chrono::seconds(1'700'000'000));
  a.actor = "admin-token";
  a.action = std::move(action);
  a.target_type = "principal";
  return a;
}

class StreamHubTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tb-hub-" + core::new_uuid_v7());
    open(100'000, 10'000);
  }
  void TearDown() override {
    close();
    std::filesystem::remove_all(dir_);
  }

  // A store keeping `keep` changes, a feed holding `memory` of them, and a hub on it.
  void open(std::int64_t keep, std::size_t memory) {
    store::SqliteOptions o;
    o.path = dir_ / "db";
    o.synchronous = "NORMAL";
    o.keep_changes = keep;
    auto opened = store::SqliteStore::open(o);
    ASSERT_TRUE(opened) << opened.error().detail;
    store_ = std::move(*opened);
    feed_ = std::make_unique<store::ChangeFeed>(*store_, memory);
    store_->set_change_listener(feed_.get());
    ASSERT_TRUE(feed_->load());
    hub_ = std::make_unique<StreamHub>(*feed_, reader_.get_executor(), 1h);
    feed_->add_consumer(*hub_);
    store_->start();
  }
  void close() {
    if (!store_) return;
    store_->stop();
    feed_->remove_consumer(*hub_);
    hub_.reset();
    feed_.reset();
    store_.reset();
  }

  void create(const core::Principal& p, std::optional<std::string> key = std::nullopt) {
    std::optional<store::ApiKeyRecord> k;
    if (key) k = store::ApiKeyRecord{core::ApiKeyId(*key), p.id, "00", "", {}, std::nullopt};
    ASSERT_TRUE(testing::wait_for<core::Principal>(
        [&](auto done) { store_->create_principal(p, k, audit("principal.create"), std::move(done)); }));
  }

  // Runs `io` until `sub` yielded `count` items or ended (or 20 s passed).
  std::vector<StreamItem> take(const std::shared_ptr<StreamSubscription>& sub, std::size_t count) {
    std::vector<StreamItem> out;
    bool done = false;
    boost::asio::co_spawn(
        io_,
        [&]() -> boost::asio::awaitable<void> {
          while (out.size() < count) {
            auto item = co_await sub->next();
            if (!item) break;
            out.push_back(std::move(*item));
          }
          done = true;
        },
        boost::asio::detached);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!done && std::chrono::steady_clock::now() < deadline) io_.run_one_for(50ms);
    EXPECT_TRUE(done) << "got " << out.size() << " of " << count << " items";
    if (!done) {
      sub->cancel();
      while (!done) io_.run_one_for(50ms);
    }
    io_.restart();
    return out;
  }

  std::filesystem::path dir_;
  boost::asio::io_context io_;
  boost::asio::thread_pool reader_{1};
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<store::ChangeFeed> feed_;
  std::unique_ptr<StreamHub> hub_;
};

TEST_F(StreamHubTest, AnEndedSubscriptionLeavesAQuietHub) {
  auto a = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner());
  auto b = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner());
  EXPECT_EQ(hub_->subscriber_count(), 2u);
  a->cancel();
  a.reset();
  io_.run();  // the cancel's wake-up, which held the last reference
  io_.restart();
  EXPECT_EQ(hub_->subscriber_count(), 1u);  // nothing was committed
  b.reset();
  EXPECT_EQ(hub_->subscriber_count(), 0u);
}

TEST(StreamEndTest, FollowsTheChangeOfTheOwnersPrincipal) {
  const auto mine = owner("p", "api-key:k1");
  store::PrincipalChange change;
  change.id = core::PrincipalId("p");
  EXPECT_FALSE(stream_end(mine, change));

  change.deleted = true;
  EXPECT_EQ(stream_end(mine, change)->reason, "principal_deleted");
  EXPECT_FALSE(stream_end(owner("q"), change));  // another principal's stream

  change = {};
  change.id = core::PrincipalId("p");
  change.revoked_key = core::ApiKeyId("k2");
  EXPECT_FALSE(stream_end(mine, change));  // another key of the same principal
  change.revoked_key = core::ApiKeyId("k1");
  EXPECT_EQ(stream_end(mine, change)->reason, "credential_revoked");
  EXPECT_FALSE(stream_end(owner("p", "jwt:k1"), change));  // a JWT is no API key

  change.revoked_key.reset();
  change.principal = principal_with("p", {"registry-reader"}, true);
  EXPECT_EQ(stream_end(mine, change)->reason, "principal_disabled");
  change.principal = principal_with("p", {"twin-reader"});
  EXPECT_EQ(stream_end(mine, change)->reason, "permission_revoked");
  change.principal = principal_with("p", {"registry-reader", "twin-reader"});
  EXPECT_FALSE(stream_end(mine, change));
}

TEST_F(StreamHubTest, ARevokedKeyEndsItsStreamsAndDropsWhatWasQueued) {
  create(principal_with("p", {"registry-reader"}), "k1");
  auto sub = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner("p", "api-key:k1"));
  auto other = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner("q", "api-key:k9"));
  create(principal_with("a", {}));
  ASSERT_TRUE(testing::wait_for<void>([&](auto done) {
    store_->revoke_api_key(core::PrincipalId("p"), core::ApiKeyId("k1"), audit("api-key.revoke"),
                           std::move(done));
  }));
  create(principal_with("b", {}));

  const auto items = take(sub, 10);
  ASSERT_FALSE(items.empty());
  EXPECT_EQ(items.back().kind, StreamItem::Kind::closed);
  EXPECT_EQ(items.back().end.reason, "credential_revoked");
  for (const auto& i : items) {
    if (i.kind == StreamItem::Kind::change) {
      EXPECT_NE(i.change->subject, "b");  // nothing after the end
    }
  }
  // The other principal's stream got every change, in order.
  const auto others = take(other, 3);
  ASSERT_EQ(others.size(), 3u);
  EXPECT_EQ(others[0].change->subject, "a");
  EXPECT_EQ(others[1].change->type, ChangeType::key_revoked);
  EXPECT_EQ(others[2].change->subject, "b");
}

TEST_F(StreamHubTest, AStreamEndsWhenItsCredentialExpiresWithNothingCommitted) {
  auto o = owner();
  o.expires = std::chrono::steady_clock::now() + 50ms;
  auto sub = hub_->subscribe(io_.get_executor(), {}, std::nullopt, o);
  const auto items = take(sub, 5);
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].kind, StreamItem::Kind::closed);
  EXPECT_EQ(items[0].end.reason, "credential_expired");
  sub.reset();
  EXPECT_EQ(hub_->subscriber_count(), 0u);
}

TEST_F(StreamHubTest, TryNextTakesQueuedChangesInOrderAndLeavesWhatComesFirstToNext) {
  auto sub = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner());
  EXPECT_FALSE(sub->try_next());  // a new subscription reads the feed first (next())
  create(principal_with("a", {}));
  ASSERT_EQ(take(sub, 1).at(0).change->subject, "a");  // live from here on
  create(principal_with("b", {}));
  create(principal_with("c", {}));
  // The hub queued both on the writer's thread (the commits were acknowledged after it did).
  std::vector<std::string> taken;
  while (auto item = sub->try_next()) taken.push_back(item->change->subject);
  EXPECT_EQ(taken, (std::vector<std::string>{"b", "c"}));
  EXPECT_FALSE(sub->try_next());
  // A poke comes before what is queued: try_next() leaves both to next().
  create(principal_with("d", {}));
  sub->poke();
  EXPECT_FALSE(sub->try_next());
  const auto items = take(sub, 2);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].kind, StreamItem::Kind::woken);
  EXPECT_EQ(items[1].change->subject, "d");
  // So does the end: nothing queued is taken after it.
  create(principal_with("e", {}));
  sub->close({"permission_revoked", "gone"});
  EXPECT_FALSE(sub->try_next());
  const auto last = take(sub, 1);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].kind, StreamItem::Kind::closed);
}

TEST_F(StreamHubTest, ASubscriberFarBehindStillGetsEveryChangeInOrder) {
  auto sub = hub_->subscribe(io_.get_executor(), {ChangeType::principal_created}, std::nullopt, owner());
  const int n = static_cast<int>(StreamSubscription::kMaxPending) + 2'000;
  std::vector<std::future<core::Result<core::Principal>>> pending;
  for (int i = 0; i < n; ++i) {
    auto [done, fut] = testing::completion<core::Principal>();
    store_->create_principal(principal_with("p" + std::to_string(i), {}), std::nullopt,
                             audit("principal.create"), std::move(done));
    pending.push_back(std::move(fut));
  }
  for (auto& f : pending) ASSERT_TRUE(f.get());
  // Nothing was read while the changes were committed: the queue overflowed, and the rest comes from the
  // feed.
  const auto items = take(sub, static_cast<std::size_t>(n));
  ASSERT_EQ(items.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    ASSERT_EQ(items[i].kind, StreamItem::Kind::change);
    EXPECT_EQ(items[i].change->seq, i + 1);
    EXPECT_EQ(items[i].change->subject, "p" + std::to_string(i));
  }
}

TEST_F(StreamHubTest, AResumeAfterARestartReadsTheStoreBeyondMemory) {
  for (int i = 0; i < 50; ++i) create(principal_with("p" + std::to_string(i), {}));
  close();
  open(100'000, 5);  // memory holds the newest 5 changes only
  auto sub = hub_->subscribe(io_.get_executor(), {}, 10, owner());
  create(principal_with("live", {}));
  const auto items = take(sub, 41);
  ASSERT_EQ(items.size(), 41u);
  for (std::size_t i = 0; i < 40; ++i) EXPECT_EQ(items[i].change->seq, static_cast<std::int64_t>(i + 11));
  EXPECT_EQ(items[40].change->subject, "live");
  EXPECT_EQ(boost::json::parse(items[39].change->data).at("id").as_string(), "p49");
}

TEST_F(StreamHubTest, AResumeFromBeforeTheKeptWindowYieldsAGapFirst) {
  close();
  open(10, 5);
  std::vector<std::future<core::Result<core::Principal>>> pending;
  for (int i = 0; i < 4200; ++i) {
    auto [done, fut] = testing::completion<core::Principal>();
    store_->create_principal(principal_with("p" + std::to_string(i), {}), std::nullopt,
                             audit("principal.create"), std::move(done));
    pending.push_back(std::move(fut));
  }
  for (auto& f : pending) ASSERT_TRUE(f.get());
  const auto window = store_->change_window();
  ASSERT_TRUE(window);
  ASSERT_GT(window->first, 3);
  auto sub = hub_->subscribe(io_.get_executor(), {}, 2, owner());
  const auto items = take(sub, 2);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].kind, StreamItem::Kind::gap);
  EXPECT_EQ(items[0].gap_from, 3);
  EXPECT_EQ(items[0].gap_until, window->first);
  EXPECT_EQ(items[1].change->seq, window->first);
}

// Commits `changes` (type, subject) to the feed as one commit, numbered after its last change, as the store
// would after its transaction; returns their sequence numbers.
std::vector<std::int64_t> commit(store::ChangeFeed& feed,
                                 const std::vector<std::pair<ChangeType, std::string>>& changes) {
  std::vector<store::ChangePtr> made;
  std::vector<std::int64_t> seqs;
  auto seq = feed.last_seq();
  for (const auto& [type, subject] : changes) {
    auto c = std::make_shared<store::Change>();
    c->seq = ++seq;
    c->at = core::Timestamp(std::chrono::seconds(1'700'000'000));
    c->type = type;
    c->subject = subject;
    c->data = "{}";
    if (type == ChangeType::principal_updated) {
      c->principal = store::PrincipalChange{core::PrincipalId(subject), principal_with(subject, {"admin"}),
                                            false, std::nullopt};
    }
    seqs.push_back(c->seq);
    made.push_back(std::move(c));
  }
  feed.committed(made);
  return seqs;
}

std::shared_ptr<const std::unordered_set<std::string>> subjects(std::initializer_list<std::string> ids) {
  return std::make_shared<const std::unordered_set<std::string>>(ids);
}

// What a list of items is, as "type subject" strings.
std::vector<std::string> described(const std::vector<StreamItem>& items) {
  std::vector<std::string> out;
  for (const auto& item : items) {
    out.push_back(item.change ? std::string(store::to_string(item.change->type)) + " " + item.change->subject
                              : "not a change");
  }
  return out;
}

// The hub routes by the subscription's subjects: only their changes, besides every twin's thing_created and
// thing_updated when asked, and principal changes; set_subjects answers the cursor from which the new set
// decides; without subjects, everything.
TEST_F(StreamHubTest, SubjectsDecideWhatIsDeliveredFromTheCursorSetSubjectsAnswers) {
  auto sub = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner());
  auto other = hub_->subscribe(io_.get_executor(), {ChangeType::state_changed, ChangeType::principal_updated},
                               std::nullopt, owner());
  // Both live (no longer reading the feed themselves): what follows is routed by the hub's index.
  commit(*feed_, {{ChangeType::principal_updated, "start"}});
  ASSERT_EQ(take(sub, 1).size(), 1u);
  ASSERT_EQ(take(other, 1).size(), 1u);
  EXPECT_EQ(sub->set_subjects(subjects({"a", "b"}), false), feed_->last_seq());
  other->set_subjects(subjects({"b", "c"}), false);
  commit(*feed_, {{ChangeType::state_changed, "a"},
                  {ChangeType::state_changed, "c"},
                  {ChangeType::thing_created, "c"},
                  {ChangeType::thing_updated, "b"},
                  {ChangeType::principal_updated, "q"}});
  const auto before = feed_->last_seq();
  EXPECT_EQ(sub->set_subjects(subjects({"c"}), true), before);
  commit(*feed_, {{ChangeType::state_changed, "a"},
                  {ChangeType::state_changed, "c"},
                  {ChangeType::thing_created, "d"},
                  {ChangeType::state_changed, "d"},
                  {ChangeType::thing_deleted, "d"}});
  sub->set_subjects(nullptr, false);
  commit(*feed_, {{ChangeType::state_changed, "e"}});
  EXPECT_EQ(described(take(sub, 6)),
            (std::vector<std::string>{"state_changed a", "thing_updated b", "principal_updated q",
                                      "state_changed c", "thing_created d", "state_changed e"}));
  EXPECT_EQ(described(take(other, 3)),
            (std::vector<std::string>{"state_changed c", "principal_updated q", "state_changed c"}));
}

// While one thread commits changes of twins a and b and another switches a subscription between {a} and
// {b}, every change is decided by the set in force at its sequence number (the set whose set_subjects
// answered the last cursor before it): none is missed, none comes that the set did not admit.
TEST_F(StreamHubTest, SubjectsChangedDuringCommitsDecideExactlyFromTheirCursor) {
  auto sub = hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner());
  commit(*feed_, {{ChangeType::principal_updated, "start"}});
  ASSERT_EQ(take(sub, 1).size(), 1u);  // live from here on: routed by the hub's index
  std::vector<std::pair<std::int64_t, std::string>> sets{{sub->set_subjects(subjects({"a"}), false), "a"}};
  constexpr int kCommits = 400;
  std::atomic<bool> committing{true};
  std::atomic<int> switches{0};
  std::thread switcher([&] {
    for (int i = 0; committing.load(); ++i) {
      const std::string id = i % 2 == 0 ? "b" : "a";
      sets.emplace_back(sub->set_subjects(subjects({id}), false), id);
      ++switches;
    }
  });
  std::vector<std::pair<std::int64_t, std::string>> committed;
  for (int i = 0; i < kCommits; ++i) {
    // Every tenth commit waits for a switch, so that the two threads always overlap.
    while (i % 10 == 0 && switches.load() < i / 10) std::this_thread::yield();
    const std::string first = i % 2 == 0 ? "a" : "b";
    const std::string second = i % 2 == 0 ? "b" : "a";
    const auto seqs =
        commit(*feed_, {{ChangeType::state_changed, first}, {ChangeType::state_changed, second}});
    committed.emplace_back(seqs[0], first);
    committed.emplace_back(seqs[1], second);
  }
  committing = false;
  switcher.join();
  commit(*feed_, {{ChangeType::principal_updated, "end"}});
  std::vector<std::string> expected;
  for (const auto& [seq, subject] : committed) {
    const auto in_force = std::prev(std::upper_bound(
        sets.begin(), sets.end(), seq - 1, [](std::int64_t s, const auto& set) { return s < set.first; }));
    if (in_force->second == subject)
      expected.push_back("state_changed " + subject + " " + std::to_string(seq));
  }
  expected.push_back("principal_updated end");
  std::vector<std::string> got;
  for (const auto& item : take(sub, expected.size())) {
    got.push_back(
        std::string(store::to_string(item.change->type)) + " " + item.change->subject +
        (item.change->type == ChangeType::state_changed ? " " + std::to_string(item.change->seq) : ""));
  }
  EXPECT_EQ(got, expected);
  EXPECT_GE(sets.size(), static_cast<std::size_t>(kCommits / 10));
}

TEST_F(StreamHubTest, ConcurrentCommitsReachEverySubscriberInSequenceOrder) {
  std::vector<std::shared_ptr<StreamSubscription>> subs;
  for (int i = 0; i < 4; ++i) subs.push_back(hub_->subscribe(io_.get_executor(), {}, std::nullopt, owner()));
  constexpr int kThreads = 4;
  constexpr int kEach = 300;
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) create(principal_with(fmt::format("w{}-{}", t, i), {}));
    });
  }
  // Read while the writers commit.
  std::vector<std::vector<StreamItem>> got(subs.size());
  for (std::size_t s = 0; s < subs.size(); ++s) got[s] = take(subs[s], kThreads * kEach);
  for (auto& w : writers) w.join();
  for (const auto& items : got) {
    ASSERT_EQ(items.size(), static_cast<std::size_t>(kThreads * kEach));
    for (std::size_t i = 0; i < items.size(); ++i)
      EXPECT_EQ(items[i].change->seq, static_cast<std::int64_t>(i + 1));
  }
}

}  // namespace
}  // namespace twinbridge::dtif
