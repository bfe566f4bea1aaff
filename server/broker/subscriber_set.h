// SubscriberSet: the ephemeral-topic fan-out every broker backend shares
// (DESIGN.md §2): local subscribers by topic or prefix pattern, each with
// its bounded buffer and overflow policy.
//
// A backend decides when a subscriber is live (Confirm(): at once in
// memory, once Redis confirmed the subscription) and brings the messages
// (Offer()); the set does the rest: at most one message outstanding per
// sink, drops and disconnects by policy, counted for the observer.
//
// Threading: use and destroy on the backend's dispatcher thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "server/broker/broker.h"
#include "server/broker/subscriber_index.h"
#include "server/broker/topic_policy.h"
#include "server/flow/sink_guard.h"
#include "server/flow/subscriber_buffer.h"

namespace switchboard::broker {

class SubscriberSet {
 public:
  // `on_pattern_unused` runs when the last subscriber of a pattern left
  // (removed, or disconnected by overflow). `observer` must outlive the set.
  SubscriberSet(BrokerObserver& observer,
                absl::AnyInvocable<void(const std::string& pattern)> on_pattern_unused);

  SubscriberSet(const SubscriberSet&) = delete;
  SubscriberSet& operator=(const SubscriberSet&) = delete;

  // Adds a subscriber to `pattern` (a topic, or a prefix ending in '*'). It
  // gets nothing until Confirm().
  void Add(uint64_t id, std::string pattern, const TopicPolicy& policy,
           std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink);
  // The subscriber is live: its sink hears OnSubscribed(), then messages.
  // Unknown ids (removed meanwhile) are ignored.
  void Confirm(uint64_t id);
  void Remove(uint64_t id);
  // The subscriber's sink is done with its outstanding message.
  void Ready(uint64_t id);

  // Offers `message` to every live subscriber whose pattern matches its
  // topic; with `via_pattern`, only to those subscribed through that
  // pattern (a backend subscription delivers to its own subscribers).
  void Offer(const std::shared_ptr<const Message>& message,
             const std::string* via_pattern = nullptr);

  // Ends every subscriber with `status`.
  void CloseAll(const absl::Status& status);

  // The pattern subscriber `id` subscribed with; nullptr when unknown.
  const std::string* PatternOf(uint64_t id) const;

  // Whether no subscriber is left.
  bool empty() const { return subscribers_.empty(); }

  // Reports the fullest buffer per pattern to the observer.
  void ReportBufferFill();

 private:
  struct Subscriber {
    std::string pattern;
    flow::SubscriberBuffer<Message> buffer;
    std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink;
    bool live = false;
  };
  using Subscribers = std::map<uint64_t, Subscriber>;

  void Push(Subscribers::iterator it, const std::shared_ptr<const Message>& message);
  static void HandOver(Subscriber& subscriber,
                       const flow::SubscriberBuffer<Message>::Handoff& handoff);
  void Erase(Subscribers::iterator it);

  BrokerObserver& observer_;
  absl::AnyInvocable<void(const std::string& pattern)> on_pattern_unused_;
  Subscribers subscribers_;
  SubscriberIndex index_;
};

}  // namespace switchboard::broker
