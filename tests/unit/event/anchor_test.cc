#include "server/event/anchor.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::event {
namespace {

struct Counter {
  int value = 0;
};

class AnchorTest : public ::testing::Test {
 protected:
  AnchorTest() : dispatcher_("anchor", clock_) { dispatcher_.Start(); }

  void OnDispatcher(absl::AnyInvocable<void()> fn) {
    testing::RunOnDispatcher(dispatcher_, std::move(fn));
  }

  common::SimulatedClock clock_;
  DispatcherImpl dispatcher_;
  Counter counter_;
};

TEST_F(AnchorTest, RunPostsFromOtherThreadsAndRunsInlineOnItsOwn) {
  Anchor<Counter> anchor(dispatcher_, &counter_);
  bool on_dispatcher = false;
  EXPECT_TRUE(anchor.Run([&](Counter* counter) {
    on_dispatcher = dispatcher_.IsDispatcherThread();
    ++counter->value;
  }));
  OnDispatcher([&] {
    // Inline: done by the time Run returns.
    anchor.Run([](Counter* counter) { ++counter->value; });
    EXPECT_EQ(counter_.value, 2);
    // Post never runs inline.
    anchor.Post([](Counter* counter) { ++counter->value; });
    EXPECT_EQ(counter_.value, 2);
  });
  OnDispatcher([] {});
  EXPECT_TRUE(on_dispatcher);
  EXPECT_EQ(counter_.value, 3);
}

TEST_F(AnchorTest, ClosedAnchorGivesLaterClosuresNullButEarlierOnesTheObject) {
  Anchor<Counter> anchor(dispatcher_, &counter_);
  absl::Notification release;
  dispatcher_.Post([&] { release.WaitForNotification(); });  // Holds the queue.
  Counter* seen_before = nullptr;
  Counter* seen_after = &counter_;
  EXPECT_TRUE(anchor.Post([&](Counter* counter) { seen_before = counter; }));
  EXPECT_TRUE(anchor.Close());
  EXPECT_FALSE(anchor.Close());
  EXPECT_FALSE(anchor.Post([&](Counter* counter) { seen_after = counter; }));
  release.Notify();
  OnDispatcher([] {});
  EXPECT_EQ(seen_before, &counter_);
  EXPECT_EQ(seen_after, nullptr);
  // Inline runs on a closed anchor get null too.
  OnDispatcher(
      [&] { EXPECT_FALSE(anchor.Run([](Counter* counter) { EXPECT_EQ(counter, nullptr); })); });
}

TEST_F(AnchorTest, CopiesShareTheTarget) {
  Anchor<Counter> anchor(dispatcher_, &counter_);
  Anchor<Counter> copy = anchor;
  OnDispatcher([&] { anchor.Clear(); });
  Counter* seen = &counter_;
  copy.Run([&](Counter* counter) { seen = counter; });
  OnDispatcher([] {});
  EXPECT_EQ(seen, nullptr);
  EXPECT_TRUE(copy.Close());
  EXPECT_FALSE(anchor.Close());
}

TEST_F(AnchorTest, AClearWhileClosuresAreQueuedReachesThem) {
  Anchor<Counter> anchor(dispatcher_, &counter_);
  absl::Notification release;
  std::vector<Counter*> seen;
  dispatcher_.Post([&] {
    release.WaitForNotification();
    anchor.Clear();  // The object goes away with closures still queued.
  });
  std::thread poster([&] {
    for (int i = 0; i < 3; ++i) anchor.Run([&](Counter* counter) { seen.push_back(counter); });
  });
  poster.join();
  release.Notify();
  OnDispatcher([] {});
  EXPECT_EQ(seen, std::vector<Counter*>(3, nullptr));
}

}  // namespace
}  // namespace switchboard::event
