#include "server/subscriptions/subscription_metrics.h"

#include <string>

namespace switchboard::subscriptions {

SubscriptionMetrics::SubscriptionMetrics(metrics::Metrics& metrics)
    : connections_(metrics::AddGauge(*metrics.registry(), "switchboard_ws_connections",
                                     "WebSocket connections to the upstream's provider, per "
                                     "state (connecting, open, reconnecting).")),
      upstream_subscriptions_(metrics::AddGauge(
          *metrics.registry(), "switchboard_ws_upstream_subscriptions",
          "Subscriptions Switchboard holds at the provider (shared by identical streams).")),
      local_subscribers_(metrics::AddGauge(*metrics.registry(), "switchboard_ws_subscribers",
                                           "Rpc.Subscribe streams, per upstream.")),
      notifications_in_(metrics::AddCounter(*metrics.registry(),
                                            "switchboard_ws_notifications_received_total",
                                            "Notifications received from the provider.")),
      notifications_out_(
          metrics::AddCounter(*metrics.registry(), "switchboard_ws_notifications_delivered_total",
                              "Notifications handed to Rpc.Subscribe streams (one per stream).")),
      dropped_(metrics::AddCounter(*metrics.registry(),
                                   "switchboard_ws_notifications_dropped_total",
                                   "Notifications a stream's full buffer discarded "
                                   "(subscriptions.overflow).")),
      resubscribes_(metrics::AddCounter(*metrics.registry(), "switchboard_ws_resubscribes_total",
                                        "Subscriptions renewed after a dropped connection.")) {}

void SubscriptionMetrics::OnConnections(absl::string_view upstream, size_t connecting, size_t open,
                                        size_t reconnecting) {
  const std::string name(upstream);
  connections_.Add({{"upstream", name}, {"state", "connecting"}}).Set(connecting);
  connections_.Add({{"upstream", name}, {"state", "open"}}).Set(open);
  connections_.Add({{"upstream", name}, {"state", "reconnecting"}}).Set(reconnecting);
}

void SubscriptionMetrics::OnSubscriptions(absl::string_view upstream, size_t upstream_subscriptions,
                                          size_t local_subscribers) {
  const std::string name(upstream);
  upstream_subscriptions_.Add({{"upstream", name}}).Set(upstream_subscriptions);
  local_subscribers_.Add({{"upstream", name}}).Set(local_subscribers);
}

void SubscriptionMetrics::OnNotificationIn(absl::string_view upstream) {
  notifications_in_.Add({{"upstream", std::string(upstream)}}).Increment();
}

void SubscriptionMetrics::OnNotificationsOut(absl::string_view upstream, uint64_t count) {
  notifications_out_.Add({{"upstream", std::string(upstream)}}).Increment(count);
}

void SubscriptionMetrics::OnDropped(absl::string_view upstream, uint64_t count) {
  dropped_.Add({{"upstream", std::string(upstream)}}).Increment(count);
}

void SubscriptionMetrics::OnResubscribe(absl::string_view upstream) {
  resubscribes_.Add({{"upstream", std::string(upstream)}}).Increment();
}

}  // namespace switchboard::subscriptions
