#include "server/flow/sink_guard.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace switchboard::flow {
namespace {

struct CountingSink {
  int calls = 0;
};

TEST(SinkGuardTest, InvokesUntilDetached) {
  CountingSink sink;
  SinkGuard<CountingSink> guard(sink);
  EXPECT_TRUE(guard.Invoke([](CountingSink& s) { ++s.calls; }));
  EXPECT_TRUE(guard.Invoke([](CountingSink& s) { ++s.calls; }));
  guard.Detach();
  EXPECT_FALSE(guard.Invoke([](CountingSink& s) { ++s.calls; }));
  guard.Detach();  // Idempotent.
  EXPECT_EQ(sink.calls, 2);
}

TEST(SinkGuardTest, DetachWaitsForTheRunningCallback) {
  CountingSink sink;
  SinkGuard<CountingSink> guard(sink);
  absl::Notification in_callback;
  absl::Notification detaching;
  std::atomic<bool> callback_finished{false};

  std::thread invoker([&] {
    guard.Invoke([&](CountingSink&) {
      in_callback.Notify();
      detaching.WaitForNotification();
      callback_finished = true;
    });
  });
  in_callback.WaitForNotification();
  bool finished_when_detached = false;
  std::thread detacher([&] {
    detaching.Notify();
    guard.Detach();
    finished_when_detached = callback_finished;
  });
  detacher.join();
  invoker.join();
  EXPECT_TRUE(finished_when_detached);
}

}  // namespace
}  // namespace switchboard::flow
