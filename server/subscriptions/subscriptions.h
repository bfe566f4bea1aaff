// Subscriptions: every upstream's SubscriptionHub behind one thread-safe
// front, for the Rpc service's Subscribe streams (DESIGN.md §4).
//
// Owned by the server (server/app). The hubs live on one dispatcher (the
// upstream dispatcher); Subscribe() and the handles it returns are safe from
// any thread, and no sink callback runs after a handle's destructor returns.
// A handle must not be destroyed inside one of its own sink's callbacks.
//
// Lifetime: the dispatcher must run until Shutdown() returns; Shutdown()
// ends every stream with UNAVAILABLE and frees the hubs on the dispatcher
// thread. Subscribes after it end at once with UNAVAILABLE.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher_impl.h"
#include "server/subscriptions/subscription_hub.h"

namespace switchboard::subscriptions {

// A local subscriber's handle. Destroying it leaves the subscription.
class SubscriptionHandle {
 public:
  SubscriptionHandle(event::Anchor<SubscriptionHub> hub, uint64_t id,
                     std::shared_ptr<flow::SinkGuard<NotificationSink>> guard)
      : hub_(std::move(hub)), id_(id), guard_(std::move(guard)) {}
  ~SubscriptionHandle();

  SubscriptionHandle(const SubscriptionHandle&) = delete;
  SubscriptionHandle& operator=(const SubscriptionHandle&) = delete;

  // The sink is done with its outstanding notification: the next may come.
  void Ready();

 private:
  const event::Anchor<SubscriptionHub> hub_;
  const uint64_t id_;
  const std::shared_ptr<flow::SinkGuard<NotificationSink>> guard_;
};

class Subscriptions {
 public:
  // Builds one hub per entry of `hubs` (upstreams with ws_urls) on
  // `dispatcher` and returns once they exist. Not on the dispatcher thread.
  // `observer` must outlive this object, and `admission` (which paces the
  // subscribes of hubs with `paced`) must outlive Shutdown().
  Subscriptions(event::DispatcherImpl& dispatcher, std::vector<HubOptions> hubs,
                HubObserver& observer, SubscribeAdmission* admission = nullptr);
  ~Subscriptions();  // Calls Shutdown().

  Subscriptions(const Subscriptions&) = delete;
  Subscriptions& operator=(const Subscriptions&) = delete;

  // Whether `upstream` serves subscriptions (has ws_urls).
  bool Serves(absl::string_view upstream) const { return hubs_.contains(upstream); }

  // Subscribes `sink` (which must stay valid until the handle is destroyed)
  // on `upstream`, which must be served. `spec.unsubscribe_method` must be
  // resolved (UnsubscribeMethodFor). Any thread.
  std::unique_ptr<SubscriptionHandle> Subscribe(absl::string_view upstream, SubscribeSpec spec,
                                                NotificationSink& sink);

  // Ends every stream with UNAVAILABLE and frees the hubs. Blocks until
  // done; not on the dispatcher thread. Idempotent.
  void Shutdown();

 private:
  event::DispatcherImpl& dispatcher_;
  // Written in the constructor only; the hubs themselves are the
  // dispatcher's.
  absl::flat_hash_map<std::string, event::Anchor<SubscriptionHub>> hubs_;
  std::vector<std::unique_ptr<SubscriptionHub>> owned_;  // Dispatcher thread.
  std::atomic<uint64_t> next_id_{1};
  std::atomic<bool> shut_down_{false};
};

}  // namespace switchboard::subscriptions
