#include "server/broker/subscriber_set.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace switchboard::broker {

SubscriberSet::SubscriberSet(BrokerObserver& observer,
                             absl::AnyInvocable<void(const std::string& pattern)> on_pattern_unused)
    : observer_(observer), on_pattern_unused_(std::move(on_pattern_unused)) {}

void SubscriberSet::Add(uint64_t id, std::string pattern, const TopicPolicy& policy,
                        std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink) {
  index_.Add(pattern, id);
  subscribers_.try_emplace(
      id, Subscriber{std::move(pattern),
                     flow::SubscriberBuffer<Message>(policy.subscriber_buffer, policy.overflow),
                     std::move(sink)});
}

void SubscriberSet::Confirm(uint64_t id) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end() || it->second.live) return;
  it->second.live = true;
  it->second.sink->Invoke([](SubscriberSink& sink) { sink.OnSubscribed(); });
}

void SubscriberSet::Remove(uint64_t id) {
  auto it = subscribers_.find(id);
  if (it != subscribers_.end()) Erase(it);
}

void SubscriberSet::Ready(uint64_t id) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  if (std::optional<flow::SubscriberBuffer<Message>::Handoff> next = it->second.buffer.Ready()) {
    HandOver(it->second, *next);
  }
}

void SubscriberSet::Offer(const std::shared_ptr<const Message>& message,
                          const std::string* via_pattern) {
  for (uint64_t id : index_.Match(message->topic)) {
    auto it = subscribers_.find(id);
    if (!it->second.live) continue;
    if (via_pattern != nullptr && it->second.pattern != *via_pattern) continue;
    Push(it, message);
  }
}

const std::string* SubscriberSet::PatternOf(uint64_t id) const {
  auto it = subscribers_.find(id);
  return it == subscribers_.end() ? nullptr : &it->second.pattern;
}

void SubscriberSet::CloseAll(const absl::Status& status) {
  for (auto& [id, subscriber] : subscribers_) {
    subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(status); });
  }
}

void SubscriberSet::ReportBufferFill() {
  absl::flat_hash_map<std::string, double> fullest;
  for (const auto& [id, subscriber] : subscribers_) {
    double& fill = fullest[subscriber.pattern];
    fill = std::max(fill, subscriber.buffer.fill());
  }
  observer_.OnSubscriberBufferFill(fullest);
}

void SubscriberSet::Push(Subscribers::iterator it, const std::shared_ptr<const Message>& message) {
  Subscriber& subscriber = it->second;
  flow::SubscriberBuffer<Message>::PushResult pushed = subscriber.buffer.Push(message);
  if (pushed.dropped > 0) observer_.OnSubscriberDropped(message->topic, pushed.dropped);
  if (pushed.disconnect) {
    const absl::Status overflow = absl::ResourceExhaustedError(
        absl::StrCat("subscriber buffer of ", subscriber.buffer.capacity(),
                     " messages overflowed on topic '", message->topic, "'"));
    subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(overflow); });
    Erase(it);
  } else if (pushed.handoff) {
    HandOver(subscriber, *pushed.handoff);
  }
}

void SubscriberSet::HandOver(Subscriber& subscriber,
                             const flow::SubscriberBuffer<Message>::Handoff& handoff) {
  subscriber.sink->Invoke(
      [&](SubscriberSink& sink) { sink.OnMessage(*handoff.message, handoff.dropped_since_last); });
}

void SubscriberSet::Erase(Subscribers::iterator it) {
  const uint64_t id = it->first;
  std::string pattern = std::move(it->second.pattern);
  subscribers_.erase(it);
  if (index_.Remove(pattern, id)) on_pattern_unused_(pattern);
}

}  // namespace switchboard::broker
