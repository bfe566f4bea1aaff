// Switchboard's Prometheus metrics: every family, built once at startup.
//
// Owned by the server (server/app) and shared by reference with the service
// layer and the broker (as its BrokerObserver, and for Redis as the
// connections' ConnectionObserver). All families are named
// `switchboard_*`. Label sets are bounded on purpose: topic label values are
// capped at `max_topic_labels` distinct names; later topics are counted under
// the label value "__other__", and the cap is itself exported as a gauge. Consumer lag and leases
// in flight are kept for at most that many (topic, group) pairs, subscriber buffer fill for that
// many patterns; later ones are not reported. Redis connection roles are a fixed set.
//
// Hot paths hold the Counter references of a TopicMetrics (one lookup per
// stream or per publish call, never per message). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/labels.h"
#include "prometheus/registry.h"
#include "server/broker/broker.h"
#include "server/broker/redis/connection.h"
#include "server/fleet/redis_lease_service.h"
#include "server/ratelimit/lease_service.h"
#include "server/upstream/upstream_client.h"

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
enum class StreamMethod { kPublishStream, kSubscribe, kConsume, kCallStream };
absl::string_view StreamMethodName(StreamMethod method);

class Metrics final : public broker::BrokerObserver,
                      public broker::redis::ConnectionObserver,
                      public upstream::UpstreamObserver,
                      public ratelimit::GlobalLimitObserver,
                      public fleet::FleetObserver {
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
  void OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) override;
  void OnLeasesInFlight(absl::string_view topic, absl::string_view group, uint64_t leases) override;
  void OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>& fill) override;

  // broker::redis::ConnectionObserver.
  void OnStateChanged(absl::string_view role, broker::redis::ConnectionState from,
                      broker::redis::ConnectionState to) override;
  void OnReconnectAttempt(absl::string_view role) override;
  void OnWrite(absl::string_view role, size_t commands) override;

  // upstream::UpstreamObserver. Upstream names come from configuration;
  // method labels are capped like topics.
  void OnUpstreamRequest(absl::string_view upstream, absl::string_view method,
                         absl::string_view outcome, absl::Duration latency) override;
  void OnThrottled(absl::string_view upstream) override;
  void OnCacheHit(absl::string_view upstream, absl::string_view method) override;
  void OnCoalesced(absl::string_view upstream, absl::string_view method) override;
  void OnAdmitted(absl::string_view upstream, absl::Duration queue_wait) override;
  void OnRejected(absl::string_view upstream, absl::string_view reason) override;
  void OnRateChanged(absl::string_view upstream, double rate) override;
  void OnQueueDepth(absl::string_view upstream, size_t depth) override;
  void OnConnectionsChanged(absl::string_view upstream, int delta) override;
  void OnBatchSent(absl::string_view upstream, size_t calls) override;
  void OnBatchWaiting(absl::string_view upstream, size_t calls) override;

  // ratelimit::GlobalLimitObserver. Kinds and names come from configuration.
  void OnLeaseRoundTrip(absl::string_view kind, absl::string_view name, bool ok,
                        uint32_t tokens) override;
  void OnTokensReturned(absl::string_view kind, absl::string_view name, uint32_t tokens) override;
  void OnFallback(absl::string_view kind, absl::string_view name, bool fallback) override;

  // fleet::FleetObserver.
  void OnLiveReplicas(uint32_t replicas) override;

 private:
  // The gauges of one consumer group.
  struct GroupGauges {
    prometheus::Gauge* lag;
    prometheus::Gauge* leases_in_flight;
  };
  // The gauges of `group` of `topic`; nullptr past max_topic_labels groups.
  GroupGauges* ForGroup(absl::string_view topic, absl::string_view group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  prometheus::Gauge& RedisConnections(absl::string_view role, broker::redis::ConnectionState state);
  // `method`, or "__other__" once max_topic_labels methods were seen.
  std::string MethodLabel(absl::string_view method);

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
  prometheus::Family<prometheus::Gauge>& consumer_lag_;
  prometheus::Family<prometheus::Gauge>& leases_in_flight_;
  prometheus::Family<prometheus::Gauge>& subscriber_buffer_fill_;
  prometheus::Family<prometheus::Gauge>& redis_connections_;
  prometheus::Family<prometheus::Counter>& redis_reconnects_;
  prometheus::Family<prometheus::Histogram>& redis_pipeline_depth_;
  prometheus::Family<prometheus::Counter>& upstream_requests_;
  prometheus::Family<prometheus::Histogram>& upstream_latency_;
  prometheus::Family<prometheus::Counter>& upstream_throttled_;
  prometheus::Family<prometheus::Counter>& upstream_cache_hits_;
  prometheus::Family<prometheus::Counter>& upstream_coalesced_;
  prometheus::Family<prometheus::Histogram>& upstream_queue_wait_;
  prometheus::Family<prometheus::Counter>& upstream_rejections_;
  prometheus::Family<prometheus::Gauge>& upstream_rate_;
  prometheus::Family<prometheus::Gauge>& upstream_queue_depth_;
  prometheus::Family<prometheus::Gauge>& upstream_connections_;
  prometheus::Family<prometheus::Histogram>& upstream_batch_size_;
  prometheus::Family<prometheus::Gauge>& upstream_batch_waiting_;
  prometheus::Family<prometheus::Gauge>& live_replicas_;
  prometheus::Family<prometheus::Counter>& lease_round_trips_;
  prometheus::Family<prometheus::Counter>& tokens_leased_;
  prometheus::Family<prometheus::Counter>& tokens_returned_;
  prometheus::Family<prometheus::Gauge>& global_limit_fallback_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<TopicMetrics>> topics_ ABSL_GUARDED_BY(mu_);
  // By "topic/group".
  absl::flat_hash_map<std::string, GroupGauges> groups_ ABSL_GUARDED_BY(mu_);
  // By subscribed topic or pattern: the last sample's, set to 0 when a
  // sample no longer has the pattern.
  absl::flat_hash_map<std::string, prometheus::Gauge*> buffer_fill_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> methods_ ABSL_GUARDED_BY(mu_);
  // The children an upstream request updates, by "upstream\0method\0outcome",
  // so that a request costs one lookup instead of building three labels
  // sets and searching two families.
  struct UpstreamRequestMetrics {
    prometheus::Counter* requests;
    prometheus::Histogram* latency;
  };
  absl::flat_hash_map<std::string, UpstreamRequestMetrics> upstream_request_children_
      ABSL_GUARDED_BY(mu_);
  // The children of one upstream's series without a method label, each
  // made on its first use: the admission and batching report per call, and
  // building a label set per report would cost more than the report.
  struct UpstreamChildren {
    prometheus::Histogram* queue_wait = nullptr;
    prometheus::Gauge* queue_depth = nullptr;
    prometheus::Gauge* rate = nullptr;
    prometheus::Gauge* connections = nullptr;
    prometheus::Histogram* batch_size = nullptr;
    prometheus::Gauge* batch_waiting = nullptr;
  };
  // `upstream`'s child in `slot`, made by `make` (given the label set) the
  // first time.
  template <typename Child>
  Child& UpstreamChild(absl::string_view upstream, Child* UpstreamChildren::*slot,
                       absl::FunctionRef<Child&(const prometheus::Labels&)> make)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::flat_hash_map<std::string, UpstreamChildren> upstream_children_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::metrics
