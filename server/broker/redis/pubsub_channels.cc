#include "server/broker/redis/pubsub_channels.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/broker/redis/message_codec.h"
#include "server/broker/redis/pubsub_commands.h"
#include "server/common/log.h"

namespace switchboard::broker::redis {

PubSubChannels::PubSubChannels(event::Anchor<ConnectionSet> connections, BrokerObserver& observer,
                               absl::AnyInvocable<void()> on_serving_change)
    : connections_(std::move(connections)),
      observer_(observer),
      on_serving_change_(std::move(on_serving_change)) {}

void PubSubChannels::AddMarkerChannel(std::string channel, absl::AnyInvocable<void()> on_message) {
  marker_channel_ = std::move(channel);
  on_marker_ = std::move(on_message);
  channels_[marker_channel_].wanted = true;
}

bool PubSubChannels::subscribed(const std::string& pattern) const {
  auto it = channels_.find(pattern);
  return ready_ && it != channels_.end() && it->second.upstream == Upstream::kSubscribed;
}

void PubSubChannels::AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                                   std::shared_ptr<SinkGuard<SubscriberSink>> sink) {
  Subscriber& subscriber =
      subscribers_
          .try_emplace(
              id, Subscriber{pattern, SubscriberBuffer(policy.subscriber_buffer, policy.overflow),
                             std::move(sink), /*confirmed=*/false})
          .first->second;
  subscriber_index_.Add(pattern, id);
  Channel& channel = channels_[pattern];
  channel.wanted = true;
  if (channel.upstream == Upstream::kSubscribed) {
    Confirm(subscriber);
  } else {
    channel.waiting.push_back(id);
    Reconcile(pattern);
  }
}

void PubSubChannels::RemoveSubscriber(uint64_t id) {
  auto it = subscribers_.find(id);
  if (it != subscribers_.end()) EraseSubscriber(it);
}

void PubSubChannels::SubscriberReady(uint64_t id) {
  auto it = subscribers_.find(id);
  if (it == subscribers_.end()) return;
  if (std::optional<SubscriberBuffer::Handoff> next = it->second.buffer.Ready()) {
    HandOver(it->second, *next);
  }
}

void PubSubChannels::CloseAll(const absl::Status& status) {
  for (auto& [id, subscriber] : subscribers_) {
    subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(status); });
  }
}

void PubSubChannels::OnConnectionState(bool ready) {
  ready_ = ready;
  restoring_ = ready;
  on_serving_change_();
  if (!ready) {
    for (auto& [pattern, channel] : channels_) channel.upstream = Upstream::kNone;
    return;
  }
  std::vector<std::string> patterns;
  for (const auto& [pattern, channel] : channels_) patterns.push_back(pattern);
  for (const std::string& pattern : patterns) Reconcile(pattern);
  EndRestoringIfDone();
}

// Serving again once every wanted channel is subscribed.
void PubSubChannels::EndRestoringIfDone() {
  if (!restoring_) return;
  for (const auto& [pattern, channel] : channels_) {
    if (channel.wanted && channel.upstream != Upstream::kSubscribed) return;
  }
  restoring_ = false;
  on_serving_change_();
}

// Brings the Redis subscription of `pattern` toward what is wanted, one step
// at a time: a (P)SUBSCRIBE or (P)UNSUBSCRIBE is sent only once the previous
// one was confirmed.
void PubSubChannels::Reconcile(const std::string& pattern) {
  auto it = channels_.find(pattern);
  if (it == channels_.end()) return;
  Channel& channel = it->second;
  if (!channel.wanted && channel.upstream == Upstream::kNone) {
    channels_.erase(it);
    EndRestoringIfDone();
    return;
  }
  if (!ready_) return;
  if (channel.wanted && channel.upstream == Upstream::kNone) {
    channel.upstream = Upstream::kSubscribing;
    SendPubSub(SubscribeCommand(pattern));
  } else if (!channel.wanted && channel.upstream == Upstream::kSubscribed) {
    channel.upstream = Upstream::kUnsubscribing;
    SendPubSub(UnsubscribeCommand(pattern));
  }
}

void PubSubChannels::SendPubSub(Command command) {
  connections_.Run([command = std::move(command)](ConnectionSet* connections) {
    if (connections != nullptr) connections->SendPubSub(command);
  });
}

void PubSubChannels::OnPush(Reply push) {
  std::optional<Push> read = ReadPush(std::move(push));
  if (!read) return;
  switch (read->kind) {
    case Push::Kind::kMessage:
      OnMessage(read->pattern, read->topic, read->value);
      return;
    case Push::Kind::kSubscribed:
      OnSubscribed(read->pattern);
      return;
    case Push::Kind::kUnsubscribed: {
      auto it = channels_.find(read->pattern);
      if (it == channels_.end()) return;
      it->second.upstream = Upstream::kNone;
      Reconcile(it->first);
      return;
    }
  }
}

void PubSubChannels::OnSubscribed(const std::string& pattern) {
  auto it = channels_.find(pattern);
  if (it == channels_.end()) return;
  Channel& channel = it->second;
  channel.upstream = Upstream::kSubscribed;
  std::vector<uint64_t> waiting;
  waiting.swap(channel.waiting);
  for (uint64_t id : waiting) {
    auto subscriber = subscribers_.find(id);
    if (subscriber != subscribers_.end()) Confirm(subscriber->second);
  }
  Reconcile(pattern);
  EndRestoringIfDone();
}

void PubSubChannels::Confirm(Subscriber& subscriber) {
  subscriber.confirmed = true;
  subscriber.sink->Invoke([](SubscriberSink& sink) { sink.OnSubscribed(); });
}

// A message on `topic`, delivered by the Redis subscription `pattern`.
void PubSubChannels::OnMessage(const std::string& pattern, const std::string& topic,
                               absl::string_view value) {
  if (on_marker_ && pattern == marker_channel_) {
    on_marker_();
    return;
  }
  absl::StatusOr<Message> decoded = DecodeEphemeral(topic, value);
  if (!decoded.ok()) {
    SB_LOG(kDebug, "dropping a message on ", topic, ": ", decoded.status().message());
    return;
  }
  auto message = std::make_shared<const Message>(*std::move(decoded));
  for (uint64_t id : subscriber_index_.Match(topic)) {
    auto it = subscribers_.find(id);
    if (it->second.pattern == pattern && it->second.confirmed) Offer(it, message);
  }
}

void PubSubChannels::Offer(std::map<uint64_t, Subscriber>::iterator it,
                           const std::shared_ptr<const Message>& message) {
  Subscriber& subscriber = it->second;
  SubscriberBuffer::PushResult pushed = subscriber.buffer.Push(message);
  if (pushed.dropped > 0) observer_.OnSubscriberDropped(message->topic, pushed.dropped);
  if (pushed.disconnect) {
    const absl::Status overflow = absl::ResourceExhaustedError(
        absl::StrCat("subscriber buffer of ", subscriber.buffer.capacity(),
                     " messages overflowed on topic '", message->topic, "'"));
    subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(overflow); });
    EraseSubscriber(it);
  } else if (pushed.handoff) {
    HandOver(subscriber, *pushed.handoff);
  }
}

void PubSubChannels::HandOver(Subscriber& subscriber, const SubscriberBuffer::Handoff& handoff) {
  subscriber.sink->Invoke(
      [&](SubscriberSink& sink) { sink.OnMessage(*handoff.message, handoff.dropped_since_last); });
}

void PubSubChannels::EraseSubscriber(std::map<uint64_t, Subscriber>::iterator it) {
  const uint64_t id = it->first;
  const std::string pattern = std::move(it->second.pattern);
  subscribers_.erase(it);
  Channel& channel = channels_[pattern];
  channel.waiting.erase(std::remove(channel.waiting.begin(), channel.waiting.end(), id),
                        channel.waiting.end());
  if (subscriber_index_.Remove(pattern, id)) {
    channel.wanted = false;
    Reconcile(pattern);
  }
}

void PubSubChannels::SampleBufferFill() {
  observer_.OnSubscriberBufferFill(FullestBufferByPattern(subscribers_));
}

}  // namespace switchboard::broker::redis
