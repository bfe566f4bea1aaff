// SubscriberBuffer: the flow control of one ephemeral subscriber stream.
//
// Used by every broker backend, once per Subscription, on the backend's
// dispatcher thread only (not thread-safe). It enforces the two rules of
// SubscriberSink: at most one message is outstanding at the sink, and at most
// `capacity` more wait behind it; when they do not fit, the topic's
// OverflowPolicy decides what is lost. It counts what was lost so the next
// message handed over can report `dropped_since_last`.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>

#include "server/broker/broker.h"
#include "server/broker/topic_policy.h"

namespace switchboard::broker {

class SubscriberBuffer {
 public:
  // A message to pass to SubscriberSink::OnMessage() now.
  struct Handoff {
    std::shared_ptr<const Message> message;
    uint64_t dropped_since_last = 0;
  };

  // What Push() did with a message.
  struct PushResult {
    // Set when the sink had nothing outstanding: hand this over now.
    std::optional<Handoff> handoff;
    // Messages the overflow policy discarded in this call (for metrics).
    uint64_t dropped = 0;
    // Under kDisconnect: the buffer overflowed, and everything it held was
    // discarded (counted in `dropped`). End the subscription.
    bool disconnect = false;
  };

  SubscriberBuffer(uint32_t capacity, OverflowPolicy policy)
      : capacity_(capacity), policy_(policy) {}

  // Offers the next published message.
  PushResult Push(std::shared_ptr<const Message> message);

  // The sink finished its outstanding message (Subscription::Ready()).
  // Returns the next message to hand over, if one is buffered. Harmless when
  // nothing is outstanding.
  std::optional<Handoff> Ready();

  // Messages waiting behind the outstanding one, and the most that may.
  size_t size() const { return queue_.size(); }
  uint32_t capacity() const { return capacity_; }
  // size() / capacity(); 0 without capacity.
  double fill() const {
    return capacity_ == 0 ? 0 : static_cast<double>(queue_.size()) / capacity_;
  }

 private:
  Handoff MakeHandoff(std::shared_ptr<const Message> message);

  const uint32_t capacity_;
  const OverflowPolicy policy_;
  std::deque<std::shared_ptr<const Message>> queue_;
  // Invariant: when nothing is outstanding, `queue_` is empty.
  bool outstanding_ = false;
  uint64_t dropped_since_last_ = 0;
};

}  // namespace switchboard::broker
