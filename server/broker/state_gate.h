// StateGate: the thread-safe front of a broker whose state lives on one
// dispatcher thread (MemoryBroker, RedisBroker).
//
// An Anchor (server/event/anchor.h) with the Broker calls on top: the
// broker's public methods may be called from any thread; they post closures
// (never inline) that run with the broker's State on its dispatcher. Once
// Close() has run, closures run with nullptr instead, so calls after
// shutdown fail with the gate's shut-down status and handles that outlive
// the state (a Subscription destroyed late) do nothing.
//
// `State` offers, on its dispatcher thread:
//   void Publish(const std::string& topic, std::vector<OutgoingMessage>,
//                PublishCallback);
//   void AddSubscriber(uint64_t id, const std::string& pattern,
//                      const TopicPolicy&, std::shared_ptr<flow::SinkGuard<SubscriberSink>>);
//   void SubscriberReady(uint64_t id);
//   void RemoveSubscriber(uint64_t id);
//   void AddSession(uint64_t id, ConsumeOptions, std::shared_ptr<flow::SinkGuard<ConsumerSink>>);
//   void Settle(uint64_t id, const LeaseUpdate&,
//               absl::AnyInvocable<void(LeaseUpdateResult)>);
//   void RemoveSession(uint64_t id);
//
// The gate does not own the state; the broker frees it after Close().
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/broker/broker.h"
#include "server/broker/topic_policy.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher.h"
#include "server/flow/sink_guard.h"

namespace switchboard::broker {

template <typename State>
class StateGate : public event::Anchor<State> {
 public:
  using event::Anchor<State>::Post;

  // `shut_down` is what calls get once the gate is closed.
  StateGate(event::Dispatcher& dispatcher, State* state, absl::Status shut_down)
      : event::Anchor<State>(dispatcher, state), shut_down_(std::move(shut_down)) {}

  const absl::Status& shut_down_error() const { return shut_down_; }

  void Publish(std::string topic, std::vector<OutgoingMessage> messages, PublishCallback done) {
    Post([this, topic = std::move(topic), messages = std::move(messages),
          done = std::move(done)](State* state) mutable {
      if (state == nullptr) {
        done(shut_down_);
        return;
      }
      state->Publish(topic, std::move(messages), std::move(done));
    });
  }

  // Registers a subscriber of `pattern` (an exact topic or a prefix pattern)
  // whose policy the caller resolved and checked.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(std::string pattern,
                                                          const TopicPolicy& policy,
                                                          SubscriberSink& sink) {
    auto guard = std::make_shared<flow::SinkGuard<SubscriberSink>>(sink);
    const uint64_t id = next_handle_id_.fetch_add(1);
    const bool running = Post([id, pattern = std::move(pattern), &policy, guard](State* state) {
      if (state != nullptr) state->AddSubscriber(id, pattern, policy, guard);
    });
    if (!running) return shut_down_;
    return std::make_unique<SubscriptionHandle>(*this, id, std::move(guard));
  }

  // Registers a consume session whose topic the caller checked.
  absl::StatusOr<std::unique_ptr<ConsumerSession>> Consume(ConsumeOptions options,
                                                           ConsumerSink& sink) {
    auto guard = std::make_shared<flow::SinkGuard<ConsumerSink>>(sink);
    const uint64_t id = next_handle_id_.fetch_add(1);
    const bool running = Post([id, options = std::move(options), guard](State* state) mutable {
      if (state != nullptr) state->AddSession(id, std::move(options), guard);
    });
    if (!running) return shut_down_;
    return std::make_unique<SessionHandle>(*this, id, std::move(guard));
  }

 private:
  class SubscriptionHandle final : public Subscription {
   public:
    SubscriptionHandle(StateGate& gate, uint64_t id,
                       std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink)
        : gate_(gate), id_(id), sink_(std::move(sink)) {}

    ~SubscriptionHandle() override {
      sink_->Detach();
      gate_.Post([id = id_](State* state) {
        if (state != nullptr) state->RemoveSubscriber(id);
      });
    }

    void Ready() override {
      gate_.Post([id = id_](State* state) {
        if (state != nullptr) state->SubscriberReady(id);
      });
    }

   private:
    StateGate& gate_;
    const uint64_t id_;
    const std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink_;
  };

  class SessionHandle final : public ConsumerSession {
   public:
    SessionHandle(StateGate& gate, uint64_t id, std::shared_ptr<flow::SinkGuard<ConsumerSink>> sink)
        : gate_(gate), id_(id), sink_(std::move(sink)) {}

    ~SessionHandle() override {
      sink_->Detach();
      gate_.Post([id = id_](State* state) {
        if (state != nullptr) state->RemoveSession(id);
      });
    }

    void Settle(LeaseUpdate update, absl::AnyInvocable<void(LeaseUpdateResult)> done) override {
      gate_.Post(
          [id = id_, update = std::move(update), done = std::move(done)](State* state) mutable {
            if (state != nullptr) state->Settle(id, update, std::move(done));
          });
    }

   private:
    StateGate& gate_;
    const uint64_t id_;
    const std::shared_ptr<flow::SinkGuard<ConsumerSink>> sink_;
  };

  const absl::Status shut_down_;
  std::atomic<uint64_t> next_handle_id_{1};
};

}  // namespace switchboard::broker
