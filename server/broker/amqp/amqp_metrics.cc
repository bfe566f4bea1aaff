#include "server/broker/amqp/amqp_metrics.h"

#include <utility>
#include <vector>

#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace switchboard::broker::amqp {
namespace {

// Sets the gauge from a function at each scrape. The gauge lives in a
// registry of the collector's own, which only Collect() reads.
class UnconfirmedPublishesCollector final : public prometheus::Collectable {
 public:
  explicit UnconfirmedPublishesCollector(std::function<size_t()> unconfirmed)
      : unconfirmed_(std::move(unconfirmed)),
        registry_(std::make_shared<prometheus::Registry>()),
        gauge_(prometheus::BuildGauge()
                   .Name("switchboard_amqp_unconfirmed_publishes")
                   .Help("Publishes sent to RabbitMQ and not confirmed yet (at most 256 at "
                         "once).")
                   .Register(*registry_)
                   .Add({})) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    gauge_.Set(static_cast<double>(unconfirmed_()));
    return registry_->Collect();
  }

 private:
  const std::function<size_t()> unconfirmed_;
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& gauge_;
};

}  // namespace

AmqpMetrics::AmqpMetrics(metrics::Metrics& metrics)
    : connections_(metrics::AddGauge(
          *metrics.registry(), "switchboard_amqp_connections",
          "RabbitMQ connections, per role (publish, consume) and state (connecting, ready, "
          "down).")),
      reconnects_(metrics::AddCounter(
          *metrics.registry(), "switchboard_amqp_reconnects_total",
          "RabbitMQ connections made again after a loss or a failed attempt, per role.")),
      publish_(connections_, reconnects_, "publish"),
      consume_(connections_, reconnects_, "consume") {}

std::shared_ptr<prometheus::Collectable> AmqpMetrics::UnconfirmedPublishes(
    std::function<size_t()> unconfirmed) {
  return std::make_shared<UnconfirmedPublishesCollector>(std::move(unconfirmed));
}

AmqpMetrics::Connection::Connection(prometheus::Family<prometheus::Gauge>& connections,
                                    prometheus::Family<prometheus::Counter>& reconnects,
                                    const std::string& role)
    : connecting_(connections.Add({{"role", role}, {"state", "connecting"}})),
      ready_(connections.Add({{"role", role}, {"state", "ready"}})),
      down_(connections.Add({{"role", role}, {"state", "down"}})),
      reconnects_(reconnects.Add({{"role", role}})) {
  connecting_.Set(1);
}

void AmqpMetrics::Connection::OnStateChanged(AmqpConnectionState state,
                                             const absl::Status& /*last_error*/) {
  if (state == state_) return;
  if (state_ == AmqpConnectionState::kDown && state == AmqpConnectionState::kReady) {
    reconnects_.Increment();
  }
  GaugeOf(state_).Set(0);
  GaugeOf(state).Set(1);
  state_ = state;
}

prometheus::Gauge& AmqpMetrics::Connection::GaugeOf(AmqpConnectionState state) {
  switch (state) {
    case AmqpConnectionState::kConnecting:
      return connecting_;
    case AmqpConnectionState::kReady:
      return ready_;
    case AmqpConnectionState::kDown:
      return down_;
  }
  return down_;
}

}  // namespace switchboard::broker::amqp
