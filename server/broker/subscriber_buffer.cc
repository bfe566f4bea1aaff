#include "server/broker/subscriber_buffer.h"

#include <utility>

namespace switchboard::broker {

SubscriberBuffer::PushResult SubscriberBuffer::Push(std::shared_ptr<const Message> message) {
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

std::optional<SubscriberBuffer::Handoff> SubscriberBuffer::Ready() {
  outstanding_ = false;
  if (queue_.empty()) return std::nullopt;
  std::shared_ptr<const Message> next = std::move(queue_.front());
  queue_.pop_front();
  return MakeHandoff(std::move(next));
}

SubscriberBuffer::Handoff SubscriberBuffer::MakeHandoff(std::shared_ptr<const Message> message) {
  outstanding_ = true;
  Handoff handoff{std::move(message), dropped_since_last_};
  dropped_since_last_ = 0;
  return handoff;
}

}  // namespace switchboard::broker
