// Switchboard's Prometheus metrics: the registry, the families every layer
// shares, and the label caps (DESIGN.md §5).
//
// A leaf library: it knows no component. Each component reports through an
// observer interface it owns, and the adapter from that interface to
// Prometheus lives beside it (broker/broker_metrics.h,
// broker/redis/redis_metrics.h, upstream/upstream_metrics.h,
// ratelimit/global_limit_metrics.h, fleet/fleet_metrics.h,
// app/grpc_request_metrics.h), registering its own families here. Owned by
// the server (server/app); the service layer uses the per-topic counters and
// the stream gauges directly.
//
// Label sets are bounded on purpose: label values that come from requests
// (topics, groups, patterns, JSON-RPC methods) are capped at
// `max_topic_labels` distinct values each (LabelCap); later ones are
// counted under "__other__" or not reported, and the cap is itself exported
// as a gauge. Every family is named `switchboard_*`, but for the standard
// process_* ones of process_metrics.h.
//
// Hot paths hold the Counter references of a TopicMetrics (one lookup per
// stream or per publish call, never per message). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace switchboard::metrics {

// The label value that absorbs values beyond a cap.
inline constexpr char kOverflowLabel[] = "__other__";

// Families, registered once each (names and help texts are the contract).
prometheus::Family<prometheus::Counter>& AddCounter(prometheus::Registry& registry,
                                                    const std::string& name,
                                                    const std::string& help);
prometheus::Family<prometheus::Gauge>& AddGauge(prometheus::Registry& registry,
                                                const std::string& name, const std::string& help);
prometheus::Family<prometheus::Histogram>& AddHistogram(prometheus::Registry& registry,
                                                        const std::string& name,
                                                        const std::string& help);

// Seconds, from 100 µs to 30 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets();

// At most `max` distinct label values: the first `max` seen keep their own,
// later ones become "__other__". Thread-safe.
class LabelCap {
 public:
  explicit LabelCap(size_t max) : max_(max) {}

  std::string Label(absl::string_view value) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t max_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

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
enum class StreamMethod { kPublishStream, kSubscribe, kConsume, kCallStream, kRpcSubscribe };
absl::string_view StreamMethodName(StreamMethod method);

class Metrics {
 public:
  explicit Metrics(size_t max_topic_labels = 1000);

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The registry to expose (server/app serves it over HTTP), and to
  // register the adapters' families in.
  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

  // How many distinct values a label that comes from requests may take.
  size_t max_topic_labels() const { return max_topic_labels_; }

  // The counters of `topic` (or of "__other__" past the cap).
  TopicMetrics& ForTopic(absl::string_view topic) ABSL_LOCKS_EXCLUDED(mu_);

  // Open streams of one method and client. Client ids come from
  // configuration (or "anonymous"), so this label set is bounded.
  prometheus::Gauge& OpenStreams(StreamMethod method, absl::string_view client_id);

  // A request refused before reaching the broker, by method and status code.
  void CountRejected(absl::string_view method, absl::string_view code);

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
