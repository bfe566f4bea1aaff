// PubSubChannels: the Redis backend's ephemeral topics on the subscribing
// side: local subscribers, and the Redis subscriptions (SUBSCRIBE for a
// topic, PSUBSCRIBE for a prefix pattern) on the subscriber connection,
// reference counted across local subscribers.
//
// Owned by RedisBroker's state, which hands it the subscriptions, the
// subscriber connection's state and its pushes. After a reconnect every
// wanted subscription is renewed, and serving() stays false until they all
// are, so a publisher that trusts health never publishes past a subscriber.
//
// Threading: every call and callback on the broker's dispatcher thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/broker/broker.h"
#include "server/broker/redis/connection_set.h"
#include "server/broker/redis/reply.h"
#include "server/broker/subscriber_set.h"
#include "server/broker/topic_policy.h"
#include "server/event/anchor.h"
#include "server/flow/sink_guard.h"

namespace switchboard::broker::redis {

class PubSubChannels {
 public:
  // `on_serving_change` runs after each change of serving(). `observer` must
  // outlive this object.
  PubSubChannels(event::Anchor<ConnectionSet> connections, BrokerObserver& observer,
                 absl::AnyInvocable<void()> on_serving_change);

  PubSubChannels(const PubSubChannels&) = delete;
  PubSubChannels& operator=(const PubSubChannels&) = delete;

  // The subscriber connection is ready and every wanted subscription is
  // renewed.
  bool serving() const { return ready_ && !restoring_; }

  // Keeps `channel` subscribed, for messages that are not for subscribers:
  // each one runs `on_message`. For SyncBarrier; call at most once.
  void AddMarkerChannel(std::string channel, absl::AnyInvocable<void()> on_message);

  // Whether Redis confirmed the subscription of `pattern` on the current
  // connection.
  bool subscribed(const std::string& pattern) const;

  void AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                     std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink);
  void RemoveSubscriber(uint64_t id);
  void SubscriberReady(uint64_t id);
  // Ends every subscriber with `status`.
  void CloseAll(const absl::Status& status);

  // The subscriber connection came up (subscriptions are renewed) or went
  // down (Redis dropped every subscription with it).
  void OnConnectionState(bool ready);
  void OnPush(Reply push);

  // Reports the fullest subscriber buffer per pattern to the observer.
  void SampleBufferFill() { subscribers_.ReportBufferFill(); }

 private:
  enum class Upstream { kNone, kSubscribing, kSubscribed, kUnsubscribing };

  // One SUBSCRIBE (exact topic) or PSUBSCRIBE (prefix pattern) on Redis.
  struct Channel {
    bool wanted = false;
    Upstream upstream = Upstream::kNone;
    std::vector<uint64_t> waiting;  // Subscribers waiting for the confirmation.
  };

  void Reconcile(const std::string& pattern);
  void SendPubSub(Command command);
  void EndRestoringIfDone();
  void OnSubscribed(const std::string& pattern);
  void OnMessage(const std::string& pattern, const std::string& topic, absl::string_view value);
  // The last subscriber of `pattern` left: unsubscribe.
  void OnPatternUnused(const std::string& pattern);

  event::Anchor<ConnectionSet> connections_;
  absl::AnyInvocable<void()> on_serving_change_;
  bool ready_ = false;
  bool restoring_ = false;  // Subscriptions are being renewed after a reconnect.
  std::string marker_channel_;
  absl::AnyInvocable<void()> on_marker_;
  std::map<std::string, Channel> channels_;  // By subscription pattern.
  // After the channels: its unused-pattern callback changes them.
  SubscriberSet subscribers_;
};

}  // namespace switchboard::broker::redis
