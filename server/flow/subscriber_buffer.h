// SubscriberBuffer: the flow control of one subscriber stream.
//
// Used by every broker backend once per ephemeral Subscription (of
// broker::Message), and by the provider subscription hub once per local
// subscriber (of notifications), on the owner's dispatcher thread only (not
// thread-safe). It enforces the two rules of
// the sink (broker::SubscriberSink, for one): at most one message is outstanding at the sink, and
// at most `capacity` more wait behind it; when they do not fit, the topic's OverflowPolicy decides
// what is lost. It counts what was lost so the next message handed over can report
// `dropped_since_last`.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <utility>

#include "server/flow/overflow_policy.h"

namespace switchboard::flow {

template <typename Item>
class SubscriberBuffer {
 public:
  // A message to pass to the sink now.
  struct Handoff {
    std::shared_ptr<const Item> message;
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
  PushResult Push(std::shared_ptr<const Item> message) {
    PushResult result;
    if (!outstanding_) {
      result.handoff = MakeHandoff(std::move(message));
      return result;
    }
    if (queue_.size() < capacity_) {
      queue_.push_back(std::move(message));
      return result;
    }
    switch (policy_) {
      case OverflowPolicy::kDropOldest:
        // With no room at all (capacity 0) there is nothing older to evict.
        if (!queue_.empty()) {
          queue_.pop_front();
          queue_.push_back(std::move(message));
        }
        result.dropped = 1;
        break;
      case OverflowPolicy::kDropNewest:
        result.dropped = 1;
        break;
      case OverflowPolicy::kDisconnect:
        result.dropped = 1 + queue_.size();
        result.disconnect = true;
        queue_.clear();
        break;
    }
    dropped_since_last_ += result.dropped;
    return result;
  }

  // The sink finished its outstanding message (Subscription::Ready()).
  // Returns the next message to hand over, if one is buffered. Harmless when
  // nothing is outstanding.
  std::optional<Handoff> Ready() {
    outstanding_ = false;
    if (queue_.empty()) return std::nullopt;
    std::shared_ptr<const Item> next = std::move(queue_.front());
    queue_.pop_front();
    return MakeHandoff(std::move(next));
  }

  // Messages waiting behind the outstanding one, and the most that may.
  size_t size() const { return queue_.size(); }
  uint32_t capacity() const { return capacity_; }
  // size() / capacity(); 0 without capacity.
  double fill() const {
    return capacity_ == 0 ? 0 : static_cast<double>(queue_.size()) / capacity_;
  }

 private:
  Handoff MakeHandoff(std::shared_ptr<const Item> message) {
    outstanding_ = true;
    Handoff handoff{std::move(message), dropped_since_last_};
    dropped_since_last_ = 0;
    return handoff;
  }

  const uint32_t capacity_;
  const OverflowPolicy policy_;
  std::deque<std::shared_ptr<const Item>> queue_;
  // Invariant: when nothing is outstanding, `queue_` is empty.
  bool outstanding_ = false;
  uint64_t dropped_since_last_ = 0;
};

}  // namespace switchboard::flow
