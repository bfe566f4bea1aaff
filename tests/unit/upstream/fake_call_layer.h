// The layer tests' shared parts: a fake next layer whose calls the test
// ends, call and outcome builders, and a simulated-time dispatcher fixture.
// Shared by the *_layer_test.cc files and transport_test.cc.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "server/upstream/call_layer.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::upstream {

// A CallLayer that records the calls started on it and the ids cancelled;
// the test ends the calls.
class FakeCallLayer final : public CallLayer {
 public:
  struct Started {
    CallId id;
    LayerCall call;
    OutcomeCallback done;
  };

  void Start(CallId id, LayerCall call, OutcomeCallback done) override {
    started.push_back({id, std::move(call), std::move(done)});
  }
  void Cancel(CallId id) override { cancelled.push_back(id); }

  // Ends started call `index` (0-based) with `outcome`.
  void End(size_t index, CallOutcome outcome) {
    OutcomeCallback done = std::move(started.at(index).done);
    ASSERT_TRUE(done != nullptr) << "call " << index << " has ended";
    done(std::move(outcome));
  }

  std::vector<Started> started;
  std::vector<CallId> cancelled;
};

inline LayerCall CallOf(std::string method, std::string params = "[]",
                        absl::Time deadline = absl::InfiniteFuture()) {
  LayerCall call;
  call.call.client_id = "worker";
  call.call.method = std::move(method);
  call.call.params_json = std::move(params);
  call.call.deadline = deadline;
  return call;
}

inline CallOutcome ResultOutcome(std::string json) {
  Answer answer;
  answer.json = std::move(json);
  return CallOutcome(std::move(answer));
}

// Records the outcomes a layer gives, by call.
struct Outcomes {
  // A callback that stores its outcome in slot `index`.
  OutcomeCallback Slot(size_t index) {
    if (outcomes.size() <= index) outcomes.resize(index + 1, CallOutcome{absl::UnknownError("")});
    if (ended.size() <= index) ended.resize(index + 1, 0);
    return [this, index](CallOutcome outcome) {
      outcomes[index] = std::move(outcome);
      ++ended[index];
    };
  }

  std::vector<CallOutcome> outcomes;
  std::vector<int> ended;  // How often each slot's callback ran.
};

// A dispatcher on simulated time, for layers that wait on its timers.
class DispatcherTest : public ::testing::Test {
 protected:
  DispatcherTest() : dispatcher_("layer-test", clock_) { dispatcher_.Start(); }

  void Run(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(dispatcher_, std::move(fn)); }

  // Lets everything due now run, a few steps deep.
  void Settle() {
    for (int step = 0; step < 3; ++step) {
      clock_.Advance(absl::ZeroDuration());
      Run([] {});
    }
  }

  common::SimulatedClock clock_{absl::FromUnixSeconds(1000)};
  event::DispatcherImpl dispatcher_;
};

}  // namespace switchboard::upstream
