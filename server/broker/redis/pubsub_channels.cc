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
      on_serving_change_(std::move(on_serving_change)),
      subscribers_(observer, [this](const std::string& pattern) { OnPatternUnused(pattern); }) {}

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
                                   std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink) {
  Channel& channel = channels_[pattern];
  channel.wanted = true;
  subscribers_.Add(id, pattern, policy, std::move(sink));
  if (channel.upstream == Upstream::kSubscribed) {
    subscribers_.Confirm(id);
  } else {
    channel.waiting.push_back(id);
    Reconcile(pattern);
  }
}

void PubSubChannels::RemoveSubscriber(uint64_t id) {
  if (const std::string* pattern = subscribers_.PatternOf(id)) {
    std::vector<uint64_t>& waiting = channels_[*pattern].waiting;
    waiting.erase(std::remove(waiting.begin(), waiting.end(), id), waiting.end());
  }
  subscribers_.Remove(id);
}

void PubSubChannels::SubscriberReady(uint64_t id) { subscribers_.Ready(id); }

void PubSubChannels::CloseAll(const absl::Status& status) { subscribers_.CloseAll(status); }

void PubSubChannels::OnPatternUnused(const std::string& pattern) {
  channels_[pattern].wanted = false;
  Reconcile(pattern);
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
  for (uint64_t id : waiting) subscribers_.Confirm(id);
  Reconcile(pattern);
  EndRestoringIfDone();
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
  subscribers_.Offer(std::make_shared<const Message>(*std::move(decoded)), &pattern);
}

}  // namespace switchboard::broker::redis
