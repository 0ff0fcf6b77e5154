// SystemMonitor's heartbeat TTLs driven by a fake clock: the TTL runs on the clock the monitor is given, so a
// lapse is tested at its exact boundary without waiting for it (the monitor's own tick still runs on a real
// timer, so the test polls for the tick's result with a deadline).

#include "registry/system_monitor.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/ids.hpp"
#include "store/sqlite_store.hpp"
#include "support/fake_clock.hpp"
#include "support/store_writes.hpp"

namespace twinbridge::registry {
namespace {

using namespace std::chrono_literals;
using core::SystemKind;
using core::SystemStatus;

class SystemMonitorTest : public ::testing::Test, public store::ChangeListener {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() / ("tb-monitor-" + core::new_uuid_v7());
    auto s = store::SqliteStore::open({path_ / "db", "NORMAL"});
    ASSERT_TRUE(s) << s.error().detail;
    store_ = std::move(*s);
    store_->set_change_listener(this);
    store_->start();
  }

  // The change feed: the durable status changes, and the monitor hears of systems as in twinbridge.
  void committed(std::span<const store::ChangePtr> changes) override {
    {
      std::lock_guard lock(mutex_);
      for (const auto& c : changes) {
        if (c->status) changes_.push_back(*c->status);
      }
    }
    if (auto* monitor = following_.load()) monitor->apply(changes);
  }
  void TearDown() override {
    following_ = nullptr;
    if (monitor_) monitor_->stop();
    monitor_.reset();
    store_->stop();
    store_.reset();
    std::filesystem::remove_all(path_);
  }

  // Registers a 3rd-party system that beats with the given TTL, then starts a monitor that looks every 5 ms.
  void start_with_system(const std::string& id, int ttl_s) {
    core::SystemRecord r;
    r.kind = SystemKind::third_party;
    r.id = id;
    r.type = "test";
    r.name = id;
    r.owner = core::PrincipalId("owner");
    r.body = {{"monitoring", {{"heartbeat_ttl_s", ttl_s}}}};
    r.status_since = clock_.now();
    core::AuditEntry audit;
    audit.at = clock_.now();
    audit.actor = "admin-token";
    audit.action = "system.create";
    audit.target_type = "third-party-system";
    audit.target_id = id;
    const auto created =
        testing::wait_for<core::SystemRecord>([&](store::Completion<core::SystemRecord> done) {
          store_->create_system(r, audit, std::move(done));
        });
    ASSERT_TRUE(created) << created.error().detail;

    MonitorSettings settings;
    settings.tick = 5ms;
    monitor_ = std::make_unique<SystemMonitor>(*store_, clock_, settings);
    following_ = monitor_.get();
    ASSERT_TRUE(monitor_->start());
  }

  MonitoredSystem beat(const std::string& id) {
    auto state = testing::wait_for<MonitoredSystem>([&](store::Completion<MonitoredSystem> done) {
      monitor_->heartbeat(SystemKind::third_party, id, std::nullopt, "", std::move(done));
    });
    EXPECT_TRUE(state) << state.error().detail;
    return state ? *state : MonitoredSystem{};
  }

  // Polls (real time, with a deadline) until the listener has heard `count` durable changes.
  std::vector<core::StatusChange> wait_for_changes(std::size_t count) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mutex_);
        if (changes_.size() >= count) return changes_;
      }
      std::this_thread::sleep_for(1ms);
    }
    ADD_FAILURE() << "fewer than " << count << " status changes were published";
    std::lock_guard lock(mutex_);
    return changes_;
  }

  std::filesystem::path path_;
  testing::FakeClock clock_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<SystemMonitor> monitor_;
  std::atomic<SystemMonitor*> following_{nullptr};
  std::mutex mutex_;
  std::vector<core::StatusChange> changes_;
};

TEST_F(SystemMonitorTest, AHeartbeatTtlLapsesOnTheClockItRunsOn) {
  start_with_system("beating", 60);
  const auto t0 = clock_.now();
  const auto up = beat("beating");
  EXPECT_EQ(up.status, SystemStatus::up);
  ASSERT_TRUE(up.heartbeat_expires);
  EXPECT_EQ(*up.heartbeat_expires, t0 + 60s);
  ASSERT_EQ(wait_for_changes(1).back().to, SystemStatus::up);

  // Up to the last microsecond of the TTL nothing changes, however many ticks pass.
  clock_.advance(60s - 1us);
  const auto polls_until = std::chrono::steady_clock::now() + 100ms;
  while (std::chrono::steady_clock::now() < polls_until) {
    ASSERT_EQ(monitor_->status(SystemKind::third_party, "beating")->status, SystemStatus::up);
    std::this_thread::sleep_for(5ms);
  }

  // At the TTL the next tick marks it down, at the fake time, and the change is stored.
  clock_.advance(1us);
  const auto lapsed = wait_for_changes(2).back();
  EXPECT_EQ(lapsed.from, SystemStatus::up);
  EXPECT_EQ(lapsed.to, SystemStatus::down);
  EXPECT_EQ(lapsed.at, t0 + 60s);
  EXPECT_TRUE(lapsed.reason.starts_with("heartbeat: none since ")) << lapsed.reason;
  const auto stored = store_->system(SystemKind::third_party, "beating");
  ASSERT_TRUE(stored) << stored.error().detail;
  EXPECT_EQ(stored->status, SystemStatus::down);
  EXPECT_EQ(stored->status_since, t0 + 60s);

  // A heartbeat brings it back and starts a new TTL from the fake now.
  clock_.advance(5min);
  const auto back = beat("beating");
  EXPECT_EQ(back.status, SystemStatus::up);
  EXPECT_EQ(*back.heartbeat_expires, clock_.now() + 60s);
}

}  // namespace
}  // namespace twinbridge::registry
