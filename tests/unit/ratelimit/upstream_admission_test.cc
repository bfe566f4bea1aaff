#include "server/ratelimit/upstream_admission.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::ratelimit {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// What a call's callback reported, and when.
struct Outcome {
  absl::StatusCode code;
  absl::Duration retry_after;
  absl::Time at;
};

// Dispatcher thread only.
class RecordingObserver final : public AdmissionObserver {
 public:
  void OnAdmitted(absl::string_view client_id, absl::Duration queue_wait) override {
    queue_waits.push_back(queue_wait);
  }
  void OnRejected(absl::string_view client_id, RejectionReason reason) override {
    rejections.push_back(reason);
  }
  void OnRateChanged(double rate) override { rates.push_back(rate); }

  std::vector<absl::Duration> queue_waits;
  std::vector<RejectionReason> rejections;
  std::vector<double> rates;
};

AdmissionRequest Call(std::string client_id, absl::Time deadline = absl::InfiniteFuture()) {
  AdmissionRequest request;
  request.client_id = std::move(client_id);
  request.deadline = deadline;
  return request;
}

class UpstreamAdmissionTest : public ::testing::Test {
 protected:
  UpstreamAdmissionTest() : dispatcher_("admission-test", clock_) { dispatcher_.Start(); }

  ~UpstreamAdmissionTest() override {
    RunOnDispatcher([&] { admission_.reset(); });
  }

  void RunOnDispatcher(absl::AnyInvocable<void()> fn) {
    testing::RunOnDispatcher(dispatcher_, std::move(fn));
  }

  void Create(double rate, double burst, size_t max_queue_depth = 10000, size_t max_in_flight = 0) {
    UpstreamAdmissionOptions options;
    options.rate = rate;
    options.burst = burst;
    options.max_queue_depth = max_queue_depth;
    options.max_in_flight = max_in_flight;
    RunOnDispatcher(
        [&] { admission_ = std::make_unique<UpstreamAdmission>(dispatcher_, options, observer_); });
  }

  // Queues `request` as the call `name`. Dispatcher thread only.
  UpstreamAdmission::Ticket Enqueue(const std::string& name, AdmissionRequest request) {
    return admission_->Enqueue(std::move(request), [this, name](AdmissionResult result) {
      outcomes_[name] = {result.status.code(), result.retry_after, clock_.Now()};
      completed_.push_back(name);
    });
  }

  // Moves time, then waits for the dispatcher to run what fell due. A timer
  // armed for the current time fires on a later loop iteration, so
  // Advance(absl::ZeroDuration()) runs it before time moves on.
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    RunOnDispatcher([] {});
  }

  // Runs what is due now, then moves time by `step` until `total` has
  // passed.
  void AdvanceInSteps(absl::Duration total, absl::Duration step) {
    Advance(absl::ZeroDuration());
    for (absl::Duration passed; passed < total; passed += step) Advance(step);
  }

  std::map<std::string, Outcome> Outcomes() {
    std::map<std::string, Outcome> outcomes;
    RunOnDispatcher([&] { outcomes = outcomes_; });
    return outcomes;
  }

  std::vector<std::string> Completed() {
    std::vector<std::string> completed;
    RunOnDispatcher([&] { completed = completed_; });
    return completed;
  }

  common::SimulatedClock clock_;
  event::DispatcherImpl dispatcher_;
  const absl::Time start_ = clock_.Now();
  // Dispatcher thread only.
  RecordingObserver observer_;
  std::unique_ptr<UpstreamAdmission> admission_;
  std::map<std::string, Outcome> outcomes_;
  std::vector<std::string> completed_;
};

TEST_F(UpstreamAdmissionTest, AdmitsEachCallWhenTheLimiterAllowsItNeverEarlierOrLater) {
  Create(/*rate=*/10, /*burst=*/2);
  RunOnDispatcher([&] {
    for (int i = 0; i < 6; ++i) Enqueue(absl::StrCat("call", i), Call("a"));
  });
  AdvanceInSteps(absl::Milliseconds(600), absl::Milliseconds(1));
  const std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.size(), 6u);
  // The burst of 2 at once, then one every 100 ms.
  const absl::Duration expected[] = {absl::ZeroDuration(),    absl::ZeroDuration(),
                                     absl::Milliseconds(100), absl::Milliseconds(200),
                                     absl::Milliseconds(300), absl::Milliseconds(400)};
  for (int i = 0; i < 6; ++i) {
    const Outcome& outcome = outcomes.at(absl::StrCat("call", i));
    EXPECT_EQ(outcome.code, absl::StatusCode::kOk) << i;
    EXPECT_EQ(outcome.at - start_, expected[i]) << i;
  }
  RunOnDispatcher([&] {
    EXPECT_THAT(observer_.queue_waits, ElementsAre(expected[0], expected[1], expected[2],
                                                   expected[3], expected[4], expected[5]));
    EXPECT_EQ(admission_->queue_depth(), 0u);
  });
}

TEST_F(UpstreamAdmissionTest, AdmittedCallsWaitForAFreePlaceInFlightAndThenForTheLimiter) {
  // Two connections' worth in flight; a provider that stalls for 500 ms.
  Create(/*rate=*/10, /*burst=*/2, /*max_queue_depth=*/100, /*max_in_flight=*/2);
  RunOnDispatcher([&] {
    for (int i = 0; i < 6; ++i) Enqueue(absl::StrCat("call", i), Call("a"));
  });
  AdvanceInSteps(absl::Milliseconds(500), absl::Milliseconds(1));
  // The limiter would have let four through by now; two places were free.
  EXPECT_THAT(Completed(), ElementsAre("call0", "call1"));
  RunOnDispatcher([&] {
    EXPECT_EQ(admission_->in_flight(), 2u);
    EXPECT_EQ(admission_->queue_depth(), 4u);
    // The provider answers both: the waiting calls go as the limiter spaces
    // them from now, a burst of 2 and then one per 100 ms, not four at once.
    admission_->OnRequestDone();
    admission_->OnRequestDone();
    EXPECT_EQ(completed_.size(), 2u);  // Never inside OnRequestDone.
  });
  Advance(absl::ZeroDuration());
  EXPECT_THAT(Completed(), ElementsAre("call0", "call1", "call2", "call3"));
  RunOnDispatcher([&] {
    admission_->OnRequestDone();
    admission_->OnRequestDone();
  });
  AdvanceInSteps(absl::Milliseconds(200), absl::Milliseconds(1));
  const std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.size(), 6u);
  EXPECT_EQ(outcomes.at("call2").at - start_, absl::Milliseconds(500));
  EXPECT_EQ(outcomes.at("call3").at - start_, absl::Milliseconds(500));
  EXPECT_EQ(outcomes.at("call4").at - start_, absl::Milliseconds(600));
  EXPECT_EQ(outcomes.at("call5").at - start_, absl::Milliseconds(700));
  RunOnDispatcher([&] { EXPECT_EQ(admission_->in_flight(), 2u); });
}

TEST_F(UpstreamAdmissionTest, CallbacksNeverRunInsideEnqueue) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] {
    Enqueue("admitted", Call("a"));
    Enqueue("refused", Call("a", start_));  // Behind "admitted": too late.
    EXPECT_THAT(completed_, IsEmpty());
    EXPECT_EQ(admission_->queue_depth(), 1u);
  });
  Advance(absl::ZeroDuration());
  EXPECT_THAT(Completed(), ElementsAre("refused", "admitted"));
}

TEST_F(UpstreamAdmissionTest, ACallThatCannotMeetItsDeadlineIsRefusedAtOnceWithTheWait) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] {
    for (int i = 0; i < 4; ++i) Enqueue(absl::StrCat("ahead", i), Call("a"));
    // Four calls ahead: the fifth can go at 400 ms.
    Enqueue("late", Call("a", start_ + absl::Milliseconds(399)));
    Enqueue("in time", Call("a", start_ + absl::Milliseconds(400)));
  });
  Advance(absl::ZeroDuration());
  std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.count("late"), 1u);
  EXPECT_EQ(outcomes["late"].code, absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(outcomes["late"].retry_after, absl::Milliseconds(400));
  EXPECT_EQ(outcomes["late"].at, start_);
  EXPECT_EQ(outcomes.count("in time"), 0u);
  AdvanceInSteps(absl::Milliseconds(399), absl::Milliseconds(1));
  EXPECT_EQ(Outcomes().count("in time"), 0u);
  Advance(absl::Milliseconds(1));
  outcomes = Outcomes();
  ASSERT_EQ(outcomes.count("in time"), 1u);
  EXPECT_EQ(outcomes["in time"].code, absl::StatusCode::kOk);
  EXPECT_EQ(outcomes["in time"].at, start_ + absl::Milliseconds(400));
  RunOnDispatcher(
      [&] { EXPECT_THAT(observer_.rejections, ElementsAre(RejectionReason::kDeadline)); });
}

TEST_F(UpstreamAdmissionTest, TheDeadlineEstimateFollowsTheFairOrder) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] {
    for (int i = 0; i < 10; ++i) Enqueue(absl::StrCat("a", i), Call("a"));
    // b's first call is served after a's first, not after all ten.
    Enqueue("b0", Call("b", start_ + absl::Milliseconds(100)));
    // b's second after a0, b0, a1: at 300 ms.
    Enqueue("b1", Call("b", start_ + absl::Milliseconds(299)));
  });
  AdvanceInSteps(absl::Milliseconds(300), absl::Milliseconds(50));
  const std::map<std::string, Outcome> outcomes = Outcomes();
  EXPECT_EQ(outcomes.at("b0").code, absl::StatusCode::kOk);
  EXPECT_EQ(outcomes.at("b0").at, start_ + absl::Milliseconds(100));
  EXPECT_EQ(outcomes.at("b1").code, absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(outcomes.at("b1").retry_after, absl::Milliseconds(300));
  EXPECT_EQ(outcomes.at("b1").at, start_);
  EXPECT_EQ(outcomes.at("a1").at, start_ + absl::Milliseconds(200));
}

TEST_F(UpstreamAdmissionTest, AFullQueueRefusesAtOnce) {
  Create(/*rate=*/1, /*burst=*/1, /*max_queue_depth=*/3);
  RunOnDispatcher([&] {
    for (int i = 0; i < 3; ++i) Enqueue(absl::StrCat("queued", i), Call("a"));
    Enqueue("refused", Call("b"));
    EXPECT_EQ(admission_->queue_depth(), 3u);
  });
  Advance(absl::ZeroDuration());
  const std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.count("refused"), 1u);
  EXPECT_EQ(outcomes.at("refused").code, absl::StatusCode::kResourceExhausted);
  // b would have gone second in the fair order: after 1 s.
  EXPECT_EQ(outcomes.at("refused").retry_after, absl::Seconds(1));
  EXPECT_EQ(outcomes.at("refused").at, start_);
  RunOnDispatcher([&] {
    EXPECT_THAT(observer_.rejections, ElementsAre(RejectionReason::kQueueFull));
    EXPECT_EQ(admission_->queue_depth(), 2u);  // queued0 went at once.
  });
}

TEST_F(UpstreamAdmissionTest, ACancelledCallLeavesTheQueueAndIsNeverCalledBack) {
  Create(/*rate=*/10, /*burst=*/1);
  UpstreamAdmission::Ticket first = 0;
  UpstreamAdmission::Ticket second = 0;
  RunOnDispatcher([&] {
    first = Enqueue("first", Call("a"));
    second = Enqueue("second", Call("a"));
    Enqueue("third", Call("a"));
    const UpstreamAdmission::Ticket refused = Enqueue("refused", Call("a", start_));
    EXPECT_TRUE(admission_->Cancel(second));
    EXPECT_FALSE(admission_->Cancel(second));
    EXPECT_TRUE(admission_->Cancel(refused));  // Before its refusal is delivered.
    EXPECT_EQ(admission_->queue_depth(), 2u);
  });
  AdvanceInSteps(absl::Milliseconds(500), absl::Milliseconds(1));
  EXPECT_THAT(Completed(), ElementsAre("first", "third"));
  // The cancelled call's slot went to the next one.
  EXPECT_EQ(Outcomes().at("third").at, start_ + absl::Milliseconds(100));
  RunOnDispatcher([&] { EXPECT_FALSE(admission_->Cancel(first)); });
}

TEST_F(UpstreamAdmissionTest, CancellingTheHeadLetsACheaperCallGoWhenItConforms) {
  Create(/*rate=*/10, /*burst=*/5);
  UpstreamAdmission::Ticket expensive = 0;
  RunOnDispatcher([&] {
    AdmissionRequest request = Call("a");
    request.cost = 5;
    Enqueue("burst", request);                  // Empties the bucket.
    expensive = Enqueue("expensive", request);  // Room for 5 at 500 ms.
    Enqueue("cheap", Call("a"));                // Room for 1 at 100 ms.
  });
  Advance(absl::ZeroDuration());
  RunOnDispatcher([&] { EXPECT_TRUE(admission_->Cancel(expensive)); });
  AdvanceInSteps(absl::Milliseconds(500), absl::Milliseconds(1));
  EXPECT_THAT(Completed(), ElementsAre("burst", "cheap"));
  EXPECT_EQ(Outcomes().at("cheap").at, start_ + absl::Milliseconds(100));
}

TEST_F(UpstreamAdmissionTest, HigherPriorityCallsOfAClientGoFirst) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] {
    int n = 0;
    for (uint32_t priority : {0, 5, 0, 5, 1}) {
      AdmissionRequest request = Call("a");
      request.priority = priority;
      Enqueue(absl::StrCat("p", priority, "#", n++), std::move(request));
    }
  });
  AdvanceInSteps(absl::Milliseconds(500), absl::Milliseconds(10));
  EXPECT_THAT(Completed(), ElementsAre("p5#1", "p5#3", "p1#4", "p0#0", "p0#2"));
}

TEST_F(UpstreamAdmissionTest, AThrottlePausesAdmissionAndHalvesTheRate) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] {
    for (int i = 0; i < 4; ++i) Enqueue(absl::StrCat("call", i), Call("a"));
    admission_->OnThrottled(absl::Seconds(2));
    EXPECT_EQ(admission_->rate(), 5);
  });
  AdvanceInSteps(absl::Milliseconds(1999), absl::Milliseconds(1));
  EXPECT_THAT(Completed(), IsEmpty());
  AdvanceInSteps(absl::Milliseconds(601), absl::Milliseconds(1));
  const std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(outcomes.at(absl::StrCat("call", i)).at,
              start_ + absl::Seconds(2) + i * absl::Milliseconds(200))
        << i;
  }
  RunOnDispatcher([&] { EXPECT_THAT(observer_.rates, ElementsAre(5)); });
}

TEST_F(UpstreamAdmissionTest, SuccessesBringTheRateBackAndAdmissionSpeedsUp) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] { admission_->OnThrottled(absl::Seconds(1)); });
  Advance(absl::Seconds(1));
  RunOnDispatcher([&] {
    Enqueue("first", Call("a"));
    Enqueue("second", Call("a"));
  });
  Advance(absl::ZeroDuration());
  ASSERT_EQ(Outcomes().count("first"), 1u);
  // "second" is due 200 ms after "first" at the halved rate. Recovery time
  // 2 s: 10 cost units of success add 5 per second, and it is due after 100.
  RunOnDispatcher([&] {
    admission_->OnSucceeded(10);
    EXPECT_EQ(admission_->rate(), 10);
  });
  AdvanceInSteps(absl::Milliseconds(200), absl::Milliseconds(1));
  const std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.size(), 2u);
  EXPECT_EQ(outcomes.at("first").at, start_ + absl::Seconds(1));
  EXPECT_EQ(outcomes.at("second").at, start_ + absl::Milliseconds(1100));
  RunOnDispatcher([&] { EXPECT_THAT(observer_.rates, ElementsAre(5, 10)); });
}

TEST_F(UpstreamAdmissionTest, ACallWhoseDeadlinePassesInTheQueueIsDroppedWithoutUsingCapacity) {
  Create(/*rate=*/10, /*burst=*/1);
  RunOnDispatcher([&] {
    Enqueue("first", Call("a"));
    Enqueue("expires", Call("a", start_ + absl::Milliseconds(100)));
    Enqueue("last", Call("a"));
    admission_->OnThrottled(absl::Seconds(1));  // Rate 5: 200 ms per call.
  });
  AdvanceInSteps(absl::Milliseconds(1300), absl::Milliseconds(1));
  const std::map<std::string, Outcome> outcomes = Outcomes();
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes.at("first").at, start_ + absl::Seconds(1));
  // Dropped as soon as it reaches the head of the queue.
  EXPECT_EQ(outcomes.at("expires").code, absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(outcomes.at("expires").at, start_ + absl::Seconds(1));
  // In the slot after "first": the dropped call took none.
  EXPECT_EQ(outcomes.at("last").code, absl::StatusCode::kOk);
  EXPECT_EQ(outcomes.at("last").at, start_ + absl::Milliseconds(1200));
  RunOnDispatcher(
      [&] { EXPECT_THAT(observer_.rejections, ElementsAre(RejectionReason::kDeadlinePassed)); });
}

// Clients that keep calls queued: each admission queues the client's next
// call. Returns the calls admitted per client over a simulated minute.
class FairnessTest : public UpstreamAdmissionTest {
 protected:
  struct Demand {
    std::string client;
    uint32_t weight;
    uint32_t cost;
    int queued;  // Calls it keeps waiting.
  };

  std::map<std::string, int> AdmittedOverAMinute(const std::vector<Demand>& demands) {
    Create(/*rate=*/100, /*burst=*/1);
    RunOnDispatcher([&] {
      for (const Demand& demand : demands) {
        for (int i = 0; i < demand.queued; ++i) KeepQueued(demand);
      }
    });
    // One step per admission at 100 cost units per second.
    AdvanceInSteps(absl::Minutes(1), absl::Milliseconds(10));
    std::map<std::string, int> admitted;
    RunOnDispatcher([&] { admitted = admitted_; });
    return admitted;
  }

 private:
  // Dispatcher thread only.
  void KeepQueued(const Demand& demand) {
    AdmissionRequest request = Call(demand.client);
    request.weight = demand.weight;
    request.cost = demand.cost;
    admission_->Enqueue(std::move(request), [this, demand](AdmissionResult result) {
      ASSERT_TRUE(result.status.ok()) << result.status;
      ++admitted_[demand.client];
      KeepQueued(demand);
    });
  }

  std::map<std::string, int> admitted_;
};

double Share(const std::map<std::string, int>& admitted, const std::string& client) {
  int total = 0;
  for (const auto& [id, count] : admitted) total += count;
  return static_cast<double>(admitted.at(client)) / total;
}

TEST_F(FairnessTest, EqualWeightsShareTheUpstreamEqually) {
  const std::map<std::string, int> admitted =
      AdmittedOverAMinute({{"a", 1, 1, 10}, {"b", 1, 1, 10}});
  // One at once, then one per 10 ms.
  EXPECT_EQ(admitted.at("a") + admitted.at("b"), 6001);
  EXPECT_NEAR(Share(admitted, "a"), 0.5, 0.01);
}

TEST_F(FairnessTest, AClientWithMoreCallsQueuedGetsNoMore) {
  const std::map<std::string, int> admitted =
      AdmittedOverAMinute({{"a", 1, 1, 1}, {"b", 1, 1, 50}});
  EXPECT_NEAR(Share(admitted, "a"), 0.5, 0.01);
}

TEST_F(FairnessTest, WeightsTwoToOneShareTheUpstreamTwoToOne) {
  const std::map<std::string, int> admitted =
      AdmittedOverAMinute({{"heavy", 2, 1, 10}, {"light", 1, 1, 10}});
  EXPECT_NEAR(Share(admitted, "heavy"), 2.0 / 3, 0.01);
}

TEST_F(FairnessTest, EqualWeightsShareCostNotCalls) {
  const std::map<std::string, int> admitted =
      AdmittedOverAMinute({{"expensive", 1, 2, 10}, {"cheap", 1, 1, 10}});
  // About 6000 cost units: 3000 each, in 1500 calls of 2 and 3000 of 1.
  EXPECT_NEAR(admitted.at("expensive"), 1500, 30);
  EXPECT_NEAR(admitted.at("cheap"), 3000, 60);
}

// The same path on a real clock: the dispatcher's timer, not a test, moves
// admission along.
TEST(UpstreamAdmissionRealClockTest, AdmitsOnTheDispatchersTimer) {
  event::DispatcherImpl dispatcher("admission-real", common::RealClock::Get());
  dispatcher.Start();
  RecordingObserver observer;
  std::unique_ptr<UpstreamAdmission> admission;
  constexpr int kCalls = 10;
  absl::Mutex mu;
  std::vector<absl::Time> admitted_at;  // Guarded by mu.
  absl::Notification all_admitted;
  absl::Time enqueued_at;
  dispatcher.Post([&] {
    UpstreamAdmissionOptions options;
    options.rate = 20;  // One call every 50 ms: the last at 450 ms.
    options.burst = 1;
    admission = std::make_unique<UpstreamAdmission>(dispatcher, options, observer);
    enqueued_at = absl::Now();
    for (int i = 0; i < kCalls; ++i) {
      admission->Enqueue(Call("a"), [&](AdmissionResult result) {
        absl::MutexLock lock(&mu);
        if (result.status.ok()) admitted_at.push_back(absl::Now());
        if (admitted_at.size() == static_cast<size_t>(kCalls)) all_admitted.Notify();
      });
    }
  });
  ASSERT_TRUE(all_admitted.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::Notification destroyed;
  dispatcher.Post([&] {
    admission.reset();
    destroyed.Notify();
  });
  destroyed.WaitForNotification();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(admitted_at.size(), static_cast<size_t>(kCalls));
  // Never early: call i goes no sooner than i intervals after the calls
  // were queued, and never sooner than half an interval after the call
  // before it (a call whose timer fired late is counted from when it was
  // due, so the next may follow it that much sooner).
  for (int i = 1; i < kCalls; ++i) {
    EXPECT_GE(admitted_at[i] - enqueued_at, i * absl::Milliseconds(50)) << i;
    EXPECT_GE(admitted_at[i] - admitted_at[i - 1], absl::Milliseconds(25)) << i;
  }
  EXPECT_GE(admitted_at.back() - enqueued_at, absl::Milliseconds(450));
}

}  // namespace
}  // namespace switchboard::ratelimit

namespace switchboard::ratelimit {
namespace {

TEST_F(UpstreamAdmissionTest, LateTimersDoNotLowerTheLongRunRateAtBurstOne) {
  // The dispatcher wakes up to 3 ms after each call was due (the clock
  // moves in 4 ms steps against a 10 ms interval). Counting each call from
  // when it was due, not from the late wake-up, keeps the rate at 100/s;
  // counting from the wake-up gives 1000 / 12 = 83/s (what issue 11 saw
  // against nginx: 83-86/s).
  Create(/*rate=*/100, /*burst=*/1);
  RunOnDispatcher([&] {
    for (int i = 0; i < 2000; ++i) Enqueue(absl::StrCat("call", i), Call("a"));
  });
  AdvanceInSteps(absl::Seconds(10), absl::Milliseconds(4));
  const size_t admitted = Completed().size();
  EXPECT_GE(admitted, 980u);
  // Never faster than the limit allows over the run: 1 + 10 s x 100/s, plus
  // the time the last step overshoots.
  EXPECT_LE(admitted, 1003u);
}

}  // namespace
}  // namespace switchboard::ratelimit
