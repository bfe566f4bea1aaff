#include "server/metrics/metrics.h"

#include <map>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::metrics {
namespace {

// Seconds, from 100 µs to 30 s.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
  return kBuckets;
}

prometheus::Family<prometheus::Gauge>& Gauge(prometheus::Registry& registry,
                                             const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Histogram>& Histogram(prometheus::Registry& registry,
                                                     const std::string& name,
                                                     const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

prometheus::Family<prometheus::Counter>& Counter(prometheus::Registry& registry,
                                                 const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

}  // namespace

absl::string_view StreamMethodName(StreamMethod method) {
  switch (method) {
    case StreamMethod::kPublishStream:
      return "PublishStream";
    case StreamMethod::kSubscribe:
      return "Subscribe";
    case StreamMethod::kConsume:
      return "Consume";
    case StreamMethod::kCallStream:
      return "CallStream";
  }
  return "unknown";
}

Metrics::Metrics(size_t max_topic_labels)
    : registry_(std::make_shared<prometheus::Registry>()),
      max_topic_labels_(max_topic_labels),
      published_(Counter(*registry_, "switchboard_messages_published_total",
                         "Messages accepted by Publish and PublishStream, per topic.")),
      delivered_(Counter(*registry_, "switchboard_messages_delivered_total",
                         "Messages written to Subscribe and Consume streams, per topic.")),
      acks_(Counter(*registry_, "switchboard_acks_total", "Leases acknowledged, per topic.")),
      nacks_(Counter(*registry_, "switchboard_nacks_total",
                     "Leases negatively acknowledged (nack or zero extension), per topic.")),
      redeliveries_(Counter(*registry_, "switchboard_redeliveries_total",
                            "Messages delivered again after a nack, an expired lease or a "
                            "closed stream, per topic.")),
      dead_letters_(Counter(*registry_, "switchboard_dead_letters_total",
                            "Messages moved to the dead-letter topic, per source topic.")),
      lease_expirations_(Counter(*registry_, "switchboard_lease_expirations_total",
                                 "Leases that ran past their ack deadline, per topic.")),
      subscriber_drops_(Counter(*registry_, "switchboard_subscriber_dropped_total",
                                "Messages lost to a full subscriber buffer, per topic.")),
      open_streams_(Gauge(*registry_, "switchboard_grpc_streams_open",
                          "Open gRPC streams, per method and client id.")),
      rejected_(Counter(*registry_, "switchboard_requests_rejected_total",
                        "Requests refused before reaching the broker, per method and code.")),
      consumer_lag_(Gauge(*registry_, "switchboard_consumer_lag",
                          "Entries of a durable topic not yet delivered to a consumer group, "
                          "per topic and group (sampled while the group has consumers).")),
      leases_in_flight_(Gauge(*registry_, "switchboard_leases_in_flight",
                              "Messages delivered to this replica's consumers and not yet acked, "
                              "nacked or expired, per topic and group (sampled).")),
      subscriber_buffer_fill_(Gauge(*registry_, "switchboard_subscriber_buffer_fill",
                                    "Fill (0 to 1) of the fullest subscriber buffer, per "
                                    "subscribed topic or pattern (sampled).")),
      redis_connections_(Gauge(*registry_, "switchboard_redis_connections",
                               "Redis connections, per role and state (connecting, ready).")),
      redis_reconnects_(Counter(*registry_, "switchboard_redis_reconnects_total",
                                "Redis connection attempts after a loss or a failed attempt, "
                                "per role.")),
      redis_pipeline_depth_(Histogram(*registry_, "switchboard_redis_pipeline_depth",
                                      "Commands carried by one write to a Redis connection "
                                      "(automatic pipelining), per role.")),
      upstream_requests_(Counter(*registry_, "switchboard_upstream_requests_total",
                                 "Requests sent to JSON-RPC upstreams, per upstream, method and "
                                 "outcome.")),
      upstream_latency_(Histogram(*registry_, "switchboard_upstream_request_duration_seconds",
                                  "Time from sending an upstream request to its outcome, per "
                                  "upstream.")),
      upstream_throttled_(Counter(*registry_, "switchboard_upstream_throttled_total",
                                  "Provider pushback seen (HTTP 429 or a JSON-RPC rate-limit "
                                  "error), per upstream.")),
      upstream_cache_hits_(Counter(*registry_, "switchboard_upstream_cache_hits_total",
                                   "Calls answered from the cache, per upstream and method.")),
      upstream_coalesced_(Counter(*registry_, "switchboard_upstream_coalesced_total",
                                  "Calls that shared an identical call's upstream request, per "
                                  "upstream and method.")),
      upstream_queue_wait_(Histogram(*registry_, "switchboard_upstream_queue_wait_seconds",
                                     "Time admitted calls waited for the upstream's rate limit, "
                                     "per upstream.")),
      upstream_rejections_(Counter(*registry_, "switchboard_upstream_rejections_total",
                                   "Calls refused admission, per upstream and reason.")),
      upstream_rate_(Gauge(*registry_, "switchboard_upstream_rate",
                           "The rate the upstream's limiter admits now (cost units per second; "
                           "below the configured rate after provider pushback).")),
      upstream_queue_depth_(Gauge(*registry_, "switchboard_upstream_queue_depth",
                                  "Calls waiting for admission, per upstream.")),
      upstream_connections_(Gauge(*registry_, "switchboard_upstream_connections",
                                  "Open TCP connections to the upstream's hosts.")),
      upstream_batch_size_(
          Histogram(*registry_, "switchboard_upstream_batch_size",
                    "Calls per JSON-RPC batch sent to the upstream (auto-batching):"
                    " _count is batches sent, _sum calls batched.")),
      upstream_batch_waiting_(Gauge(*registry_, "switchboard_upstream_batch_waiting",
                                    "Calls waiting for a free connection to leave in a JSON-RPC "
                                    "batch, per upstream (at most its max_queue_depth).")),
      live_replicas_(Gauge(*registry_, "switchboard_fleet_live_replicas",
                           "Switchboard replicas alive on the shared Redis (heartbeats), this "
                           "one included; exported when a global limit is configured.")),
      lease_round_trips_(Counter(*registry_, "switchboard_global_limit_lease_round_trips_total",
                                 "Round trips to Redis to lease tokens of a global limit, per "
                                 "kind (upstream, client), name and outcome (ok, error).")),
      tokens_leased_(Counter(*registry_, "switchboard_global_limit_tokens_leased_total",
                             "Tokens (cost units) of a global limit leased by this replica.")),
      tokens_returned_(Counter(*registry_, "switchboard_global_limit_tokens_returned_total",
                               "Leased tokens of a global limit given back unused (expired, or "
                               "voided by a provider pause).")),
      global_limit_fallback_(Gauge(*registry_, "switchboard_global_limit_fallback",
                                   "1 while a global limit runs on this replica's fallback share "
                                   "(Redis unreachable or slow), else 0.")) {
  prometheus::BuildGauge()
      .Name("switchboard_metrics_topic_label_limit")
      .Help("Distinct topic label values kept before counting under \"__other__\".")
      .Register(*registry_)
      .Add({})
      .Set(static_cast<double>(max_topic_labels));
}

TopicMetrics& Metrics::ForTopic(absl::string_view topic) {
  absl::MutexLock lock(&mu_);
  auto it = topics_.find(topic);
  if (it != topics_.end()) return *it->second;
  if (topics_.size() >= max_topic_labels_) {
    it = topics_.find(kOverflowLabel);
    if (it != topics_.end()) return *it->second;
    topic = kOverflowLabel;
  }
  const std::map<std::string, std::string> labels = {{"topic", std::string(topic)}};
  auto metrics = std::make_unique<TopicMetrics>(
      TopicMetrics{published_.Add(labels), delivered_.Add(labels), acks_.Add(labels),
                   nacks_.Add(labels), redeliveries_.Add(labels), dead_letters_.Add(labels),
                   lease_expirations_.Add(labels), subscriber_drops_.Add(labels)});
  TopicMetrics& result = *metrics;
  topics_.emplace(std::string(topic), std::move(metrics));
  return result;
}

prometheus::Gauge& Metrics::OpenStreams(StreamMethod method, absl::string_view client_id) {
  return open_streams_.Add(
      {{"method", std::string(StreamMethodName(method))}, {"client", std::string(client_id)}});
}

void Metrics::CountRejected(absl::string_view method, absl::string_view code) {
  rejected_.Add({{"method", std::string(method)}, {"code", std::string(code)}}).Increment();
}

void Metrics::OnRedelivered(absl::string_view topic, absl::string_view) {
  ForTopic(topic).redeliveries.Increment();
}

void Metrics::OnDeadLettered(absl::string_view topic, absl::string_view) {
  ForTopic(topic).dead_letters.Increment();
}

void Metrics::OnSubscriberDropped(absl::string_view topic, uint64_t count) {
  ForTopic(topic).subscriber_drops.Increment(static_cast<double>(count));
}

void Metrics::OnLeaseExpired(absl::string_view topic, absl::string_view) {
  ForTopic(topic).lease_expirations.Increment();
}

Metrics::GroupGauges* Metrics::ForGroup(absl::string_view topic, absl::string_view group) {
  const std::string key = absl::StrCat(topic, "/", group);
  auto it = groups_.find(key);
  if (it != groups_.end()) return &it->second;
  if (groups_.size() >= max_topic_labels_) return nullptr;
  const std::map<std::string, std::string> labels = {{"topic", std::string(topic)},
                                                     {"group", std::string(group)}};
  return &groups_
              .emplace(key, GroupGauges{&consumer_lag_.Add(labels), &leases_in_flight_.Add(labels)})
              .first->second;
}

void Metrics::OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) {
  absl::MutexLock lock(&mu_);
  if (GroupGauges* gauges = ForGroup(topic, group)) gauges->lag->Set(static_cast<double>(lag));
}

void Metrics::OnLeasesInFlight(absl::string_view topic, absl::string_view group, uint64_t leases) {
  absl::MutexLock lock(&mu_);
  if (GroupGauges* gauges = ForGroup(topic, group)) {
    gauges->leases_in_flight->Set(static_cast<double>(leases));
  }
}

void Metrics::OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>& fill) {
  absl::MutexLock lock(&mu_);
  for (auto& [pattern, gauge] : buffer_fill_) {
    if (!fill.contains(pattern)) gauge->Set(0);
  }
  for (const auto& [pattern, ratio] : fill) {
    auto it = buffer_fill_.find(pattern);
    if (it == buffer_fill_.end()) {
      if (buffer_fill_.size() >= max_topic_labels_) continue;
      it = buffer_fill_.emplace(pattern, &subscriber_buffer_fill_.Add({{"topic", pattern}})).first;
    }
    it->second->Set(ratio);
  }
}

void Metrics::OnStateChanged(absl::string_view role, broker::redis::ConnectionState from,
                             broker::redis::ConnectionState to) {
  if (from != broker::redis::ConnectionState::kAbsent) RedisConnections(role, from).Decrement();
  if (to != broker::redis::ConnectionState::kAbsent) RedisConnections(role, to).Increment();
}

void Metrics::OnReconnectAttempt(absl::string_view role) {
  redis_reconnects_.Add({{"role", std::string(role)}}).Increment();
}

void Metrics::OnWrite(absl::string_view role, size_t commands) {
  static const prometheus::Histogram::BucketBoundaries kDepthBuckets = {
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};
  redis_pipeline_depth_.Add({{"role", std::string(role)}}, kDepthBuckets)
      .Observe(static_cast<double>(commands));
}

void Metrics::OnUpstreamRequest(absl::string_view upstream, absl::string_view method,
                                absl::string_view outcome, absl::Duration latency) {
  const std::string key = absl::StrCat(upstream, absl::string_view("\0", 1), method,
                                       absl::string_view("\0", 1), outcome);
  std::optional<UpstreamRequestMetrics> children;
  {
    absl::MutexLock lock(&mu_);
    auto it = upstream_request_children_.find(key);
    if (it != upstream_request_children_.end()) children = it->second;
  }
  if (!children.has_value()) {
    const std::string method_label = MethodLabel(method);
    children = UpstreamRequestMetrics{
        &upstream_requests_.Add({{"upstream", std::string(upstream)},
                                 {"method", method_label},
                                 {"outcome", std::string(outcome)}}),
        &upstream_latency_.Add({{"upstream", std::string(upstream)}}, LatencyBuckets())};
    // Methods past the label cap are not kept, so neither is the cache.
    if (method_label == method) {
      absl::MutexLock lock(&mu_);
      upstream_request_children_.emplace(key, *children);
    }
  }
  children->requests->Increment();
  children->latency->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::OnThrottled(absl::string_view upstream) {
  upstream_throttled_.Add({{"upstream", std::string(upstream)}}).Increment();
}

void Metrics::OnCacheHit(absl::string_view upstream, absl::string_view method) {
  upstream_cache_hits_.Add({{"upstream", std::string(upstream)}, {"method", MethodLabel(method)}})
      .Increment();
}

void Metrics::OnCoalesced(absl::string_view upstream, absl::string_view method) {
  upstream_coalesced_.Add({{"upstream", std::string(upstream)}, {"method", MethodLabel(method)}})
      .Increment();
}

template <typename Child>
Child& Metrics::UpstreamChild(absl::string_view upstream, Child* UpstreamChildren::*slot,
                              absl::FunctionRef<Child&(const prometheus::Labels&)> make) {
  auto it = upstream_children_.find(upstream);
  if (it == upstream_children_.end()) it = upstream_children_.try_emplace(upstream).first;
  Child*& child = it->second.*slot;
  if (child == nullptr) child = &make({{"upstream", std::string(upstream)}});
  return *child;
}

void Metrics::OnAdmitted(absl::string_view upstream, absl::Duration queue_wait) {
  absl::MutexLock lock(&mu_);
  UpstreamChild<prometheus::Histogram>(
      upstream, &UpstreamChildren::queue_wait,
      [this](const prometheus::Labels& labels) -> auto& {
        return upstream_queue_wait_.Add(labels, LatencyBuckets());
      })
      .Observe(absl::ToDoubleSeconds(queue_wait));
}

void Metrics::OnRejected(absl::string_view upstream, absl::string_view reason) {
  upstream_rejections_.Add({{"upstream", std::string(upstream)}, {"reason", std::string(reason)}})
      .Increment();
}

void Metrics::OnRateChanged(absl::string_view upstream, double rate) {
  absl::MutexLock lock(&mu_);
  UpstreamChild<prometheus::Gauge>(
      upstream, &UpstreamChildren::rate,
      [this](const prometheus::Labels& labels) -> auto& { return upstream_rate_.Add(labels); })
      .Set(rate);
}

void Metrics::OnLeaseRoundTrip(absl::string_view kind, absl::string_view name, bool ok,
                               uint32_t tokens) {
  const std::map<std::string, std::string> labels{{"kind", std::string(kind)},
                                                  {"name", std::string(name)}};
  std::map<std::string, std::string> with_outcome = labels;
  with_outcome["outcome"] = ok ? "ok" : "error";
  lease_round_trips_.Add(with_outcome).Increment();
  if (tokens > 0) tokens_leased_.Add(labels).Increment(tokens);
}

void Metrics::OnTokensReturned(absl::string_view kind, absl::string_view name, uint32_t tokens) {
  tokens_returned_.Add({{"kind", std::string(kind)}, {"name", std::string(name)}})
      .Increment(tokens);
}

void Metrics::OnFallback(absl::string_view kind, absl::string_view name, bool fallback) {
  global_limit_fallback_.Add({{"kind", std::string(kind)}, {"name", std::string(name)}})
      .Set(fallback ? 1 : 0);
}

void Metrics::OnLiveReplicas(uint32_t replicas) { live_replicas_.Add({}).Set(replicas); }

void Metrics::OnQueueDepth(absl::string_view upstream, size_t depth) {
  absl::MutexLock lock(&mu_);
  UpstreamChild<prometheus::Gauge>(
      upstream, &UpstreamChildren::queue_depth,
      [this](const prometheus::Labels& labels) -> auto& {
        return upstream_queue_depth_.Add(labels);
      })
      .Set(static_cast<double>(depth));
}

void Metrics::OnConnectionsChanged(absl::string_view upstream, int delta) {
  absl::MutexLock lock(&mu_);
  UpstreamChild<prometheus::Gauge>(
      upstream, &UpstreamChildren::connections,
      [this](const prometheus::Labels& labels) -> auto& {
        return upstream_connections_.Add(labels);
      })
      .Increment(static_cast<double>(delta));
}

void Metrics::OnBatchSent(absl::string_view upstream, size_t calls) {
  static const prometheus::Histogram::BucketBoundaries kBatchBuckets = {2,  4,   8,   16,  32,
                                                                        64, 128, 256, 512, 1000};
  absl::MutexLock lock(&mu_);
  UpstreamChild<prometheus::Histogram>(
      upstream, &UpstreamChildren::batch_size,
      [this](const prometheus::Labels& labels) -> auto& {
        return upstream_batch_size_.Add(labels, kBatchBuckets);
      })
      .Observe(static_cast<double>(calls));
}

void Metrics::OnBatchWaiting(absl::string_view upstream, size_t calls) {
  absl::MutexLock lock(&mu_);
  UpstreamChild<prometheus::Gauge>(
      upstream, &UpstreamChildren::batch_waiting,
      [this](const prometheus::Labels& labels) -> auto& {
        return upstream_batch_waiting_.Add(labels);
      })
      .Set(static_cast<double>(calls));
}

std::string Metrics::MethodLabel(absl::string_view method) {
  absl::MutexLock lock(&mu_);
  if (methods_.contains(method)) return std::string(method);
  if (methods_.size() >= max_topic_labels_) return kOverflowLabel;
  methods_.emplace(method);
  return std::string(method);
}

prometheus::Gauge& Metrics::RedisConnections(absl::string_view role,
                                             broker::redis::ConnectionState state) {
  return redis_connections_.Add(
      {{"role", std::string(role)},
       {"state", state == broker::redis::ConnectionState::kReady ? "ready" : "connecting"}});
}

}  // namespace switchboard::metrics
