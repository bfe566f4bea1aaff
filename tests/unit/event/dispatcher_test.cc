#include <atomic>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::event {
namespace {

class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : dispatcher_("test", clock_) { dispatcher_.Start(); }

  void RunOnDispatcher(absl::AnyInvocable<void()> fn) {
    testing::RunOnDispatcher(dispatcher_, std::move(fn));
  }

  common::SimulatedClock clock_;
  DispatcherImpl dispatcher_;
};

TEST_F(DispatcherTest, RunsPostedClosuresInOrderOnItsThread) {
  std::vector<int> order;
  bool on_dispatcher = true;
  for (int i = 0; i < 100; ++i) {
    dispatcher_.Post([&, i] {
      on_dispatcher = on_dispatcher && dispatcher_.IsDispatcherThread();
      order.push_back(i);
    });
  }
  RunOnDispatcher([] {});
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  EXPECT_TRUE(on_dispatcher);
  EXPECT_FALSE(dispatcher_.IsDispatcherThread());
}

TEST_F(DispatcherTest, TimerFiresOnlyWhenSimulatedTimeReachesDeadline) {
  std::unique_ptr<Timer> timer;
  absl::Notification fired;
  RunOnDispatcher([&] {
    timer = dispatcher_.CreateTimer([&] { fired.Notify(); });
    timer->Enable(absl::Seconds(30));
  });
  clock_.Advance(absl::Seconds(29));
  RunOnDispatcher([] {});  // Let the jump observer's re-check run.
  EXPECT_FALSE(fired.HasBeenNotified());
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(10)));
  RunOnDispatcher([&] {
    EXPECT_FALSE(timer->Enabled());
    timer.reset();
  });
}

TEST_F(DispatcherTest, DisabledTimerNeverFires) {
  std::unique_ptr<Timer> timer;
  int fired = 0;
  RunOnDispatcher([&] {
    timer = dispatcher_.CreateTimer([&] { ++fired; });
    timer->Enable(absl::Seconds(1));
    timer->Disable();
  });
  clock_.Advance(absl::Seconds(5));
  RunOnDispatcher([] {});
  RunOnDispatcher([&] { timer.reset(); });
  EXPECT_EQ(fired, 0);
}

TEST_F(DispatcherTest, TimersFireInDeadlineOrder) {
  std::vector<int> order;
  std::vector<std::unique_ptr<Timer>> timers;
  RunOnDispatcher([&] {
    for (int i : {3, 1, 2}) {
      timers.push_back(dispatcher_.CreateTimer([&order, i] { order.push_back(i); }));
      timers.back()->Enable(absl::Seconds(i));
    }
  });
  clock_.Advance(absl::Seconds(10));
  RunOnDispatcher([] {});
  RunOnDispatcher([&] { timers.clear(); });
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(DispatcherShutdownTest, RunsAlreadyPostedClosuresThenDropsLaterOnes) {
  common::SimulatedClock clock;
  DispatcherImpl dispatcher("test", clock);
  dispatcher.Start();
  std::atomic<int> ran{0};
  for (int i = 0; i < 10; ++i) dispatcher.Post([&] { ++ran; });
  dispatcher.Shutdown();
  dispatcher.Post([&] { ++ran; });
  EXPECT_EQ(ran.load(), 10);
}

}  // namespace
}  // namespace switchboard::event
