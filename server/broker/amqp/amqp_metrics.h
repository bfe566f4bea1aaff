// AmqpMetrics: the AmqpConnectionObserver that reports to Prometheus.
//
// The adapter between the RabbitMQ connections' observer interface
// (amqp_connection.h) and the metrics library, beside RedisMetrics for the
// Redis backend: connections per role and state, reconnects per role, and
// the publishes waiting for their confirm. The server wiring (server/app)
// creates one when broker.url is amqp:// and hands publish() and consume()
// to the AmqpBroker; the roles are a fixed set, so the label sets are
// bounded. Families:
//   * switchboard_amqp_connections{role,state}: gauge, 1 for the state each
//     connection is in (connecting, ready, down);
//   * switchboard_amqp_reconnects_total{role}: counter, connections made
//     again after a loss or a failed attempt (down -> ready);
//   * switchboard_amqp_unconfirmed_publishes: gauge, publishes sent and not
//     yet confirmed by RabbitMQ, read at each scrape (UnconfirmedPublishes).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/metrics/metrics.h"

namespace switchboard::broker::amqp {

class AmqpMetrics {
 public:
  // Registers the RabbitMQ families in `metrics`' registry, with both
  // connections connecting. Create it with the broker, not before: a
  // connection counts as connecting from here on.
  explicit AmqpMetrics(metrics::Metrics& metrics);

  AmqpMetrics(const AmqpMetrics&) = delete;
  AmqpMetrics& operator=(const AmqpMetrics&) = delete;

  // The observers of the switchboard:publish and switchboard:consume
  // connections. Called on the broker's dispatcher thread; they live as
  // long as this object.
  AmqpConnectionObserver& publish() { return publish_; }
  AmqpConnectionObserver& consume() { return consume_; }

  // A collectable for the metrics endpoint that exports
  // switchboard_amqp_unconfirmed_publishes as `unconfirmed()` at each
  // scrape. It runs on the endpoint's thread: `unconfirmed` must be
  // thread-safe and stay callable while the endpoint serves.
  static std::shared_ptr<prometheus::Collectable> UnconfirmedPublishes(
      std::function<size_t()> unconfirmed);

 private:
  // One connection's series: the gauge of its current state is 1.
  class Connection final : public AmqpConnectionObserver {
   public:
    Connection(prometheus::Family<prometheus::Gauge>& connections,
               prometheus::Family<prometheus::Counter>& reconnects, const std::string& role);

    void OnStateChanged(AmqpConnectionState state, const absl::Status& last_error) override;

   private:
    prometheus::Gauge& GaugeOf(AmqpConnectionState state);

    prometheus::Gauge& connecting_;
    prometheus::Gauge& ready_;
    prometheus::Gauge& down_;
    prometheus::Counter& reconnects_;
    AmqpConnectionState state_ = AmqpConnectionState::kConnecting;  // Dispatcher thread.
  };

  prometheus::Family<prometheus::Gauge>& connections_;
  prometheus::Family<prometheus::Counter>& reconnects_;
  Connection publish_;
  Connection consume_;
};

}  // namespace switchboard::broker::amqp
