// SubscriptionMetrics: the HubObserver that reports to Prometheus.
//
// The adapter between the subscription hubs' observer interface
// (subscription_hub.h) and the metrics library: WebSocket connections by
// state, upstream subscriptions and local subscribers (gauges), and
// notifications in and out, drops and resubscribes (counters), per upstream.
// Upstream names come from configuration, so the label sets are bounded.
// Called on the hubs' dispatcher; thread-safe for the registry's scrapes.
#pragma once

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "server/metrics/metrics.h"
#include "server/subscriptions/subscription_hub.h"

namespace switchboard::subscriptions {

class SubscriptionMetrics final : public HubObserver {
 public:
  // Registers the families in `metrics`' registry.
  explicit SubscriptionMetrics(metrics::Metrics& metrics);

  void OnConnections(absl::string_view upstream, size_t connecting, size_t open,
                     size_t reconnecting) override;
  void OnSubscriptions(absl::string_view upstream, size_t upstream_subscriptions,
                       size_t local_subscribers) override;
  void OnNotificationIn(absl::string_view upstream) override;
  void OnNotificationsOut(absl::string_view upstream, uint64_t count) override;
  void OnDropped(absl::string_view upstream, uint64_t count) override;
  void OnResubscribe(absl::string_view upstream) override;

 private:
  prometheus::Family<prometheus::Gauge>& connections_;
  prometheus::Family<prometheus::Gauge>& upstream_subscriptions_;
  prometheus::Family<prometheus::Gauge>& local_subscribers_;
  prometheus::Family<prometheus::Counter>& notifications_in_;
  prometheus::Family<prometheus::Counter>& notifications_out_;
  prometheus::Family<prometheus::Counter>& dropped_;
  prometheus::Family<prometheus::Counter>& resubscribes_;
};

}  // namespace switchboard::subscriptions
