#include "server/subscriptions/subscriptions.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace switchboard::subscriptions {

SubscriptionHandle::~SubscriptionHandle() {
  guard_->Detach();
  hub_.Post([id = id_](SubscriptionHub* hub) {
    if (hub != nullptr) hub->Leave(id);
  });
}

void SubscriptionHandle::Ready() {
  hub_.Post([id = id_](SubscriptionHub* hub) {
    if (hub != nullptr) hub->Ready(id);
  });
}

Subscriptions::Subscriptions(event::DispatcherImpl& dispatcher, std::vector<HubOptions> hubs,
                             HubObserver& observer, SubscribeAdmission* admission)
    : dispatcher_(dispatcher) {
  absl::Notification built;
  dispatcher_.Post([&] {
    for (HubOptions& options : hubs) {
      auto hub =
          std::make_unique<SubscriptionHub>(dispatcher_, std::move(options), observer, admission);
      hubs_.emplace(hub->options().upstream, hub->anchor());
      owned_.push_back(std::move(hub));
    }
    built.Notify();
  });
  built.WaitForNotification();
}

Subscriptions::~Subscriptions() { Shutdown(); }

std::unique_ptr<SubscriptionHandle> Subscriptions::Subscribe(absl::string_view upstream,
                                                             SubscribeSpec spec,
                                                             NotificationSink& sink) {
  const event::Anchor<SubscriptionHub>& hub = hubs_.at(upstream);
  const uint64_t id = next_id_.fetch_add(1);
  auto guard = std::make_shared<flow::SinkGuard<NotificationSink>>(sink);
  auto handle = std::make_unique<SubscriptionHandle>(hub, id, guard);
  hub.Post([id, spec = std::move(spec), guard](SubscriptionHub* hub) mutable {
    if (hub == nullptr) {
      guard->Invoke([](NotificationSink& s) {
        s.OnEnded(absl::UnavailableError("Switchboard is shutting down"));
      });
      return;
    }
    hub->Subscribe(id, std::move(spec), std::move(guard));
  });
  return handle;
}

void Subscriptions::Shutdown() {
  if (shut_down_.exchange(true)) return;
  absl::Notification done;
  dispatcher_.Post([&] {
    owned_.clear();  // Each hub ends its streams.
    done.Notify();
  });
  done.WaitForNotification();
}

}  // namespace switchboard::subscriptions
