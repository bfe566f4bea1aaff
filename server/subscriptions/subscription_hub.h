// SubscriptionHub: one upstream's provider subscriptions over shared
// WebSocket connections (Rpc.Subscribe; DESIGN.md §4).
//
// Identical subscriptions (same method and params text, as coalescing
// compares calls) share one upstream subscription, reference counted over
// the local subscribers; when the last one leaves, the unsubscribe goes out
// after `linger`, unless a subscriber comes back first. Subscriptions are
// spread over at most `max_connections` WebSocket connections, at most
// `max_subscriptions_per_connection` on each (providers cap both). A
// connection that drops is reconnected with the shared backoff, to the next
// URL in `ws_urls` after a failure, and every live subscription on it is
// subscribed again; the first notification after that is flagged, since
// notifications may have been missed in between. An error from the provider
// for a subscribe ends only the local subscribers of that subscription, with
// the provider's error; so does a subscribe it leaves unanswered for
// `subscribe_timeout`, with DEADLINE_EXCEEDED. Each local subscriber has its
// own bounded buffer and overflow policy (flow::SubscriberBuffer), so a slow
// one never slows the others or the connection. With a SubscribeAdmission,
// every subscribe (resubscribes too) first waits for the upstream's rate
// limit, as calls do, so a reconnect's resubscribes never burst.
//
// Owned by Subscriptions (subscriptions.h), one per upstream with ws_urls,
// which gives workers' streams their thread-safe handles. Lives on one
// dispatcher: create, call and destroy it on that thread only. Sinks are
// called on that thread through the flow::SinkGuard their handle detaches.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher_impl.h"
#include "server/flow/overflow_policy.h"
#include "server/flow/sink_guard.h"
#include "server/upstream/json_rpc.h"
#include "server/ws/websocket_client.h"

namespace switchboard::subscriptions {

struct HubOptions {
  std::string upstream;
  std::vector<std::string> ws_urls;  // Primary first; may carry API keys.
  size_t max_connections = 4;
  size_t max_subscriptions_per_connection = 100;
  // How long an upstream subscription outlives its last local subscriber.
  absl::Duration linger = absl::Seconds(5);
  // Notifications waiting per local subscriber, and what happens beyond.
  uint32_t subscriber_buffer = 1024;
  flow::OverflowPolicy overflow = flow::OverflowPolicy::kDropOldest;
  // A subscribe the provider has not answered by then ends its subscribers.
  absl::Duration subscribe_timeout = absl::Seconds(10);
  // Subscribes wait for the SubscribeAdmission (the upstream is rate
  // limited).
  bool paced = false;
  common::BackoffOptions reconnect;
  ws::WebSocketClientOptions client;
};

// What a subscriber asks for. `unsubscribe_method` empty: the hub derives
// it (UnsubscribeMethodFor).
struct SubscribeSpec {
  std::string method;
  std::string params_json;  // Valid JSON, or empty for none.
  std::string unsubscribe_method;
  // Whose turn in the upstream's fair queue the subscribe takes (the first
  // subscriber's, for a shared subscription and its resubscribes).
  std::string client_id;
};

// Paces the subscribes of a hub through its upstream's rate limit, as the
// upstream's calls are paced (implemented over ratelimit::UpstreamAdmission
// by the server). Used on the hub's dispatcher thread only.
class SubscribeAdmission {
 public:
  using Ticket = uint64_t;
  using Callback = absl::AnyInvocable<void(absl::Status)>;
  virtual ~SubscribeAdmission() = default;
  // Asks leave to send one subscribe of `method` to `upstream` for
  // `client_id`, by `deadline`. `done` runs once, on the dispatcher and
  // never inside Admit: OK when the subscribe may go; RESOURCE_EXHAUSTED
  // (naming the wait) when the limit cannot let it through in time. It never
  // runs once Cancel(ticket) returned.
  virtual Ticket Admit(absl::string_view upstream, absl::string_view client_id,
                       absl::string_view method, absl::Time deadline, Callback done) = 0;
  virtual void Cancel(absl::string_view upstream, Ticket ticket) = 0;
};

// The unsubscribe method of a subscribe method by the providers'
// conventions: "fooSubscribe" -> "fooUnsubscribe", "eth_subscribe" ->
// "eth_unsubscribe" (and any "<ns>_subscribe" -> "<ns>_unsubscribe").
// nullopt when `method` follows neither: the subscriber must name it.
std::optional<std::string> UnsubscribeMethodFor(absl::string_view method);

// One notification as one local subscriber gets it.
struct Notification {
  // The provider's notification method ("slotNotification",
  // "eth_subscription"), for a front door that speaks JSON-RPC.
  std::string method;
  std::string result;  // The provider's `result`, byte for byte.
  // Counts the upstream subscription's notifications from 1 (shared by its
  // subscribers: a subscriber whose buffer dropped some sees a gap).
  uint64_t sequence = 0;
  // The first notification after a resubscribe: some may have been missed.
  bool after_resubscribe = false;
};

class NotificationSink {
 public:
  virtual ~NotificationSink() = default;
  // The provider accepted the subscription (or it was live already).
  virtual void OnSubscribed() = 0;
  // At most one notification is outstanding: the next comes after
  // SubscriptionHandle::Ready(). `dropped_since_last` counts what the
  // overflow policy discarded for this subscriber since the last one.
  virtual void OnNotification(std::shared_ptr<const Notification> notification,
                              uint64_t dropped_since_last) = 0;
  // The subscription ended for this subscriber (the provider refused it,
  // its buffer overflowed under `disconnect`, the hub shut down). Last.
  virtual void OnEnded(absl::Status status) = 0;
};

// What the hub reports, for metrics. Called on the hub's dispatcher.
class HubObserver {
 public:
  virtual ~HubObserver() = default;
  // Connection counts by state ("connecting", "open", "reconnecting").
  virtual void OnConnections(absl::string_view upstream, size_t connecting, size_t open,
                             size_t reconnecting) = 0;
  virtual void OnSubscriptions(absl::string_view upstream, size_t upstream_subscriptions,
                               size_t local_subscribers) = 0;
  virtual void OnNotificationIn(absl::string_view upstream) = 0;
  virtual void OnNotificationsOut(absl::string_view upstream, uint64_t count) = 0;
  virtual void OnDropped(absl::string_view upstream, uint64_t count) = 0;
  virtual void OnResubscribe(absl::string_view upstream) = 0;
};

class SubscriptionHub {
 public:
  // `observer` and `admission` (which paced hubs use) must outlive the hub.
  SubscriptionHub(event::DispatcherImpl& dispatcher, HubOptions options, HubObserver& observer,
                  SubscribeAdmission* admission = nullptr);
  ~SubscriptionHub();  // Ends every local subscriber with UNAVAILABLE.

  SubscriptionHub(const SubscriptionHub&) = delete;
  SubscriptionHub& operator=(const SubscriptionHub&) = delete;

  // Adds local subscriber `local_id` (unique), whose sink is called
  // through `guard`. The spec's unsubscribe method is resolved.
  void Subscribe(uint64_t local_id, SubscribeSpec spec,
                 std::shared_ptr<flow::SinkGuard<NotificationSink>> guard);
  // The subscriber's sink is done with its outstanding notification.
  void Ready(uint64_t local_id);
  // The subscriber leaves (harmless when it ended already).
  void Leave(uint64_t local_id);

  const HubOptions& options() const { return options_; }

  // Reaches the hub from other threads (nullptr once it is destroyed).
  const event::Anchor<SubscriptionHub>& anchor() const { return anchor_; }

 private:
  struct Local;
  struct Shared;
  class Connection;

  void Place(Shared& shared);
  // Sends `shared`'s subscribe on its connection, once admitted if paced.
  void RequestSubscribe(Shared& shared);
  void SendSubscribe(Connection& connection, Shared& shared);
  void OnSubscribeTimeout(Shared& shared);
  void OnConnectionOpen(Connection& connection);
  void OnConnectionMessage(Connection& connection, absl::string_view message);
  void OnConnectionClosed(Connection& connection, absl::Status why);
  void OnAnswer(Connection& connection, uint64_t id, absl::string_view message);
  void Deliver(Shared& shared, const upstream::NotificationParts& parts);
  void HandOver(Local& local, const std::shared_ptr<const Notification>& notification,
                uint64_t dropped);
  void EndShared(Shared& shared, const absl::Status& status);
  void EndLocal(uint64_t local_id, const absl::Status& status);
  void Unsubscribe(Shared& shared);
  void SendUnsubscribe(Connection& connection, absl::string_view method,
                       absl::string_view provider_id);
  void CancelAdmission(Shared& shared);
  void Report();

  event::DispatcherImpl& dispatcher_;
  const HubOptions options_;
  HubObserver& observer_;
  SubscribeAdmission* const admission_;  // Null: not paced.
  event::Anchor<SubscriptionHub> anchor_;
  absl::BitGen random_;  // Reconnect jitter.
  uint64_t next_request_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Local>> locals_;
  // By method, '\0' and params text.
  absl::flat_hash_map<std::string, std::unique_ptr<Shared>> shared_;
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace switchboard::subscriptions
