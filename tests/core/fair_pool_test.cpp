// FairPool: one key cannot occupy every worker, keys take turns, every job learns its fate exactly once.
#include "core/fair_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace twinbridge::core {
namespace {

// A gate jobs wait at until the test opens it.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  // Polls with a deadline until `n` jobs wait at the gate.
  bool waiting(int n) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return waiting_ >= n; });
  }
  int waiting_now() {
    std::lock_guard lock(mutex_);
    return waiting_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int waiting_ = 0;
  bool open_ = false;
};

// Polls `condition` until it holds or 10 s pass.
template <class F>
bool eventually(F condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST(FairPool, OneKeyNeverHoldsEveryWorker) {
  Gate gate;
  FairPool pool({.threads = 2, .max_running_per_key = 0, .max_queued_per_key = 16});
  std::atomic<int> greedy_started{0};
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(pool.post("greedy", [&](JobFate fate) {
      ASSERT_EQ(fate, JobFate::run);
      ++greedy_started;
      gate.wait();
    }));
  }
  ASSERT_TRUE(gate.waiting(1));
  // The other client's job runs although eight greedy jobs are queued before it.
  std::atomic<bool> polite_ran{false};
  ASSERT_TRUE(pool.post("polite", [&](JobFate) { polite_ran = true; }));
  EXPECT_TRUE(eventually([&] { return polite_ran.load(); }));
  EXPECT_EQ(greedy_started.load(), 1);  // the greedy key runs one job at a time on two workers
  gate.open();
  EXPECT_TRUE(eventually([&] { return greedy_started.load() == 8; }));
}

TEST(FairPool, KeysTakeTurns) {
  Gate gate;
  FairPool pool({.threads = 1, .max_running_per_key = 1, .max_queued_per_key = 16});
  ASSERT_TRUE(pool.post("a", [&](JobFate) { gate.wait(); }));
  ASSERT_TRUE(gate.waiting(1));
  std::mutex mutex;
  std::vector<char> order;
  auto record = [&](char c) {
    return [&, c](JobFate) {
      std::lock_guard lock(mutex);
      order.push_back(c);
    };
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.post("a", record('a')));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.post("b", record('b')));
  gate.open();
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return order.size() == 6;
  }));
  std::lock_guard lock(mutex);
  EXPECT_EQ(std::string(order.begin(), order.end()), "ababab");
}

TEST(FairPool, AFullQueueRefusesTheNextJobOfThatKeyOnly) {
  Gate gate;
  FairPool pool({.threads = 1, .max_running_per_key = 1, .max_queued_per_key = 2});
  ASSERT_TRUE(pool.post("a", [&](JobFate) { gate.wait(); }));
  ASSERT_TRUE(gate.waiting(1));
  ASSERT_TRUE(pool.post("a", [](JobFate) {}));
  ASSERT_TRUE(pool.post("a", [](JobFate) {}));
  JobFate fate = JobFate::run;
  EXPECT_FALSE(pool.post("a", [&](JobFate f) { fate = f; }));
  EXPECT_EQ(fate, JobFate::queue_full);  // called at once, on this thread
  std::atomic<bool> other{false};
  EXPECT_TRUE(pool.post("b", [&](JobFate f) { other = f == JobFate::run; }));
  gate.open();
  EXPECT_TRUE(eventually([&] { return other.load(); }));
}

TEST(FairPool, StopCallsQueuedJobsWithStoppedAndRefusesNewOnes) {
  Gate gate;
  FairPool pool({.threads = 1, .max_running_per_key = 1, .max_queued_per_key = 4});
  ASSERT_TRUE(pool.post("a", [&](JobFate) { gate.wait(); }));
  ASSERT_TRUE(gate.waiting(1));
  std::atomic<int> stopped{0};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool.post("a", [&](JobFate f) { stopped += f == JobFate::stopped ? 1 : 0; }));
  }
  std::thread stopper([&] { pool.stop(); });
  // Once stop() has begun, post() refuses (each probe has its own key, so a refusal means stopped).
  for (int i = 0; pool.post("probe-" + std::to_string(i), [](JobFate) {}); ++i) {
  }
  gate.open();  // the running job finishes; the queued ones never run
  stopper.join();
  EXPECT_EQ(stopped.load(), 3);
  JobFate fate = JobFate::run;
  EXPECT_FALSE(pool.post("a", [&](JobFate f) { fate = f; }));
  EXPECT_EQ(fate, JobFate::stopped);
}

TEST(FairPool, AThrowingJobDoesNotTakeAWorkerDown) {
  FairPool pool({.threads = 1, .max_running_per_key = 1, .max_queued_per_key = 4});
  ASSERT_TRUE(pool.post("a", [](JobFate) { throw std::runtime_error("bug"); }));
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool.post("a", [&](JobFate) { ran = true; }));
  EXPECT_TRUE(eventually([&] { return ran.load(); }));
}

}  // namespace
}  // namespace twinbridge::core
