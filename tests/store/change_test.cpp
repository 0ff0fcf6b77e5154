// store::DerivedText: the text made from a change once and shared by every consumer, whatever threads ask.

#include "store/change.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace twinbridge::store {
namespace {

TEST(DerivedTextTest, ConcurrentReadersGetTheSameTextAndLaterOnesTheKeptCopy) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 50; ++round) {
    Change change;
    std::atomic<int> made{0};
    std::atomic<bool> go{false};
    std::vector<std::shared_ptr<const std::string>> got(kThreads);
    std::vector<std::thread> readers;
    for (int t = 0; t < kThreads; ++t) {
      readers.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        got[t] = change.stream_message.get([&] {
          ++made;
          return std::string("{\"type\":\"change\"}");
        });
      });
    }
    go = true;
    for (auto& r : readers) r.join();
    for (const auto& text : got) {
      ASSERT_NE(text, nullptr);
      EXPECT_EQ(*text, "{\"type\":\"change\"}");
    }
    // Made by those who came before it was kept, at least once; from then on never again.
    const int before = made.load();
    EXPECT_GE(before, 1);
    const auto kept = change.stream_message.get([&] {
      ++made;
      return std::string("other");
    });
    EXPECT_EQ(*kept, "{\"type\":\"change\"}");
    EXPECT_EQ(change.stream_message.get([] { return std::string("other"); }), kept);
    EXPECT_EQ(made.load(), before);
  }
}

TEST(DerivedTextTest, ACopyOfAChangeStartsWithoutTheText) {
  Change change;
  change.stream_message.get([] { return std::string("first"); });
  const Change copy = change;  // NOLINT(performance-unnecessary-copy-initialization): the copy is the test
  EXPECT_EQ(*copy.stream_message.get([] { return std::string("second"); }), "second");
  EXPECT_EQ(*change.stream_message.get([] { return std::string("third"); }), "first");
}

}  // namespace
}  // namespace twinbridge::store
