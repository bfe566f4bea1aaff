// Switchboard's Prometheus metrics: every family, built once at startup.
//
// Owned by the server (server/app) and shared by reference with the service
// layer and the broker (as its BrokerObserver). All families are named
// `switchboard_*`. Label sets are bounded on purpose: topic label values are
// capped at `max_topic_labels` distinct names; later topics are counted under
// the label value "__other__", and the cap is itself exported as a gauge.
//
// Hot paths hold the Counter references of a TopicMetrics (one lookup per
// stream or per publish call, never per message). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/broker/broker.h"

namespace switchboard::metrics {

// The label value that absorbs topics beyond the cap.
inline constexpr char kOverflowLabel[] = "__other__";

// Counters of one topic, resolved once and then used lock-free.
struct TopicMetrics {
  prometheus::Counter& published;
  prometheus::Counter& delivered;
  prometheus::Counter& acks;
  prometheus::Counter& nacks;
  prometheus::Counter& redeliveries;
  prometheus::Counter& dead_letters;
  prometheus::Counter& lease_expirations;
  prometheus::Counter& subscriber_drops;
};

// The gRPC methods that hold streams open, for the open-streams gauge.
enum class StreamMethod { kPublishStream, kSubscribe, kConsume };
absl::string_view StreamMethodName(StreamMethod method);

class Metrics final : public broker::BrokerObserver {
 public:
  explicit Metrics(size_t max_topic_labels = 1000);

  // The registry to expose (server/app serves it over HTTP).
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // The counters of `topic` (or of "__other__" past the cap).
  TopicMetrics& ForTopic(absl::string_view topic);

  // Open streams of one method and client. Client ids come from
  // configuration (or "anonymous"), so this label set is bounded.
  prometheus::Gauge& OpenStreams(StreamMethod method, absl::string_view client_id);

  // A request refused before reaching the broker, by method and status code.
  void CountRejected(absl::string_view method, absl::string_view code);

  // broker::BrokerObserver.
  void OnRedelivered(absl::string_view topic, absl::string_view group) override;
  void OnDeadLettered(absl::string_view topic, absl::string_view group) override;
  void OnSubscriberDropped(absl::string_view topic, uint64_t count) override;
  void OnLeaseExpired(absl::string_view topic, absl::string_view group) override;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  const size_t max_topic_labels_;

  prometheus::Family<prometheus::Counter>& published_;
  prometheus::Family<prometheus::Counter>& delivered_;
  prometheus::Family<prometheus::Counter>& acks_;
  prometheus::Family<prometheus::Counter>& nacks_;
  prometheus::Family<prometheus::Counter>& redeliveries_;
  prometheus::Family<prometheus::Counter>& dead_letters_;
  prometheus::Family<prometheus::Counter>& lease_expirations_;
  prometheus::Family<prometheus::Counter>& subscriber_drops_;
  prometheus::Family<prometheus::Gauge>& open_streams_;
  prometheus::Family<prometheus::Counter>& rejected_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<TopicMetrics>> topics_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::metrics
