#include "server/upstream/upstream_metrics.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::upstream {

UpstreamMetrics::UpstreamMetrics(metrics::Metrics& metrics)
    : methods_(metrics.max_topic_labels()),
      requests_(metrics::AddCounter(*metrics.registry(), "switchboard_upstream_requests_total",
                                    "Requests sent to JSON-RPC upstreams, per upstream, method and "
                                    "outcome.")),
      latency_(metrics::AddHistogram(*metrics.registry(),
                                     "switchboard_upstream_request_duration_seconds",
                                     "Time from sending an upstream request to its outcome, per "
                                     "upstream.")),
      throttled_(metrics::AddCounter(*metrics.registry(), "switchboard_upstream_throttled_total",
                                     "Provider pushback seen (HTTP 429 or a JSON-RPC rate-limit "
                                     "error), per upstream.")),
      cache_hits_(metrics::AddCounter(*metrics.registry(), "switchboard_upstream_cache_hits_total",
                                      "Calls answered from the cache, per upstream and method.")),
      coalesced_(metrics::AddCounter(*metrics.registry(), "switchboard_upstream_coalesced_total",
                                     "Calls that shared an identical call's upstream request, per "
                                     "upstream and method.")),
      queue_wait_(metrics::AddHistogram(*metrics.registry(),
                                        "switchboard_upstream_queue_wait_seconds",
                                        "Time admitted calls waited for the upstream's rate limit, "
                                        "per upstream.")),
      rejections_(metrics::AddCounter(*metrics.registry(), "switchboard_upstream_rejections_total",
                                      "Calls refused admission, per upstream and reason.")),
      rate_(metrics::AddGauge(*metrics.registry(), "switchboard_upstream_rate",
                              "The rate the upstream's limiter admits now (cost units per second; "
                              "below the configured rate after provider pushback).")),
      queue_depth_(metrics::AddGauge(*metrics.registry(), "switchboard_upstream_queue_depth",
                                     "Calls waiting for admission, per upstream.")),
      connections_(metrics::AddGauge(*metrics.registry(), "switchboard_upstream_connections",
                                     "Open TCP connections to the upstream's hosts.")),
      batch_size_(
          metrics::AddHistogram(*metrics.registry(), "switchboard_upstream_batch_size",
                                "Calls per JSON-RPC batch sent to the upstream (auto-batching):"
                                " _count is batches sent, _sum calls batched.")),
      batch_waiting_(metrics::AddGauge(*metrics.registry(), "switchboard_upstream_batch_waiting",
                                       "Calls waiting for a free connection to leave in a JSON-RPC "
                                       "batch, per upstream (at most its max_queue_depth).")) {}

void UpstreamMetrics::OnUpstreamRequest(absl::string_view upstream, absl::string_view method,
                                        absl::string_view outcome, absl::Duration latency) {
  const std::string key = absl::StrCat(upstream, absl::string_view("\0", 1), method,
                                       absl::string_view("\0", 1), outcome);
  std::optional<RequestSeries> children;
  {
    absl::MutexLock lock(&mu_);
    auto it = request_series_.find(key);
    if (it != request_series_.end()) children = it->second;
  }
  if (!children.has_value()) {
    const std::string method_label = methods_.Label(method);
    children = RequestSeries{
        &requests_.Add({{"upstream", std::string(upstream)},
                        {"method", method_label},
                        {"outcome", std::string(outcome)}}),
        &latency_.Add({{"upstream", std::string(upstream)}}, metrics::LatencyBuckets())};
    // Methods past the label cap are not kept, so neither is the cache.
    if (method_label == method) {
      absl::MutexLock lock(&mu_);
      request_series_.emplace(key, *children);
    }
  }
  children->requests->Increment();
  children->latency->Observe(absl::ToDoubleSeconds(latency));
}

void UpstreamMetrics::OnThrottled(absl::string_view upstream) {
  throttled_.Add({{"upstream", std::string(upstream)}}).Increment();
}

void UpstreamMetrics::OnCacheHit(absl::string_view upstream, absl::string_view method) {
  cache_hits_.Add({{"upstream", std::string(upstream)}, {"method", methods_.Label(method)}})
      .Increment();
}

void UpstreamMetrics::OnCoalesced(absl::string_view upstream, absl::string_view method) {
  coalesced_.Add({{"upstream", std::string(upstream)}, {"method", methods_.Label(method)}})
      .Increment();
}

template <typename Series>
Series& UpstreamMetrics::ForUpstream(absl::string_view upstream, Series* UpstreamSeries::*slot,
                                     absl::FunctionRef<Series&(const prometheus::Labels&)> make) {
  auto it = upstream_series_.find(upstream);
  if (it == upstream_series_.end()) it = upstream_series_.try_emplace(upstream).first;
  Series*& child = it->second.*slot;
  if (child == nullptr) child = &make({{"upstream", std::string(upstream)}});
  return *child;
}

void UpstreamMetrics::OnAdmitted(absl::string_view upstream, absl::Duration queue_wait) {
  absl::MutexLock lock(&mu_);
  ForUpstream<prometheus::Histogram>(
      upstream, &UpstreamSeries::queue_wait,
      [this](const prometheus::Labels& labels) -> auto& {
        return queue_wait_.Add(labels, metrics::LatencyBuckets());
      })
      .Observe(absl::ToDoubleSeconds(queue_wait));
}

void UpstreamMetrics::OnRejected(absl::string_view upstream, absl::string_view reason) {
  rejections_.Add({{"upstream", std::string(upstream)}, {"reason", std::string(reason)}})
      .Increment();
}

void UpstreamMetrics::OnRateChanged(absl::string_view upstream, double rate) {
  absl::MutexLock lock(&mu_);
  ForUpstream<prometheus::Gauge>(
      upstream, &UpstreamSeries::rate,
      [this](const prometheus::Labels& labels) -> auto& { return rate_.Add(labels); })
      .Set(rate);
}

void UpstreamMetrics::OnQueueDepth(absl::string_view upstream, size_t depth) {
  absl::MutexLock lock(&mu_);
  ForUpstream<prometheus::Gauge>(
      upstream, &UpstreamSeries::queue_depth,
      [this](const prometheus::Labels& labels) -> auto& { return queue_depth_.Add(labels); })
      .Set(static_cast<double>(depth));
}

void UpstreamMetrics::OnConnectionsChanged(absl::string_view upstream, int delta) {
  absl::MutexLock lock(&mu_);
  ForUpstream<prometheus::Gauge>(
      upstream, &UpstreamSeries::connections,
      [this](const prometheus::Labels& labels) -> auto& { return connections_.Add(labels); })
      .Increment(static_cast<double>(delta));
}

void UpstreamMetrics::OnBatchSent(absl::string_view upstream, size_t calls) {
  static const prometheus::Histogram::BucketBoundaries kBatchBuckets = {2,  4,   8,   16,  32,
                                                                        64, 128, 256, 512, 1000};
  absl::MutexLock lock(&mu_);
  ForUpstream<prometheus::Histogram>(
      upstream, &UpstreamSeries::batch_size,
      [this](const prometheus::Labels& labels) -> auto& {
        return batch_size_.Add(labels, kBatchBuckets);
      })
      .Observe(static_cast<double>(calls));
}

void UpstreamMetrics::OnBatchWaiting(absl::string_view upstream, size_t calls) {
  absl::MutexLock lock(&mu_);
  ForUpstream<prometheus::Gauge>(
      upstream, &UpstreamSeries::batch_waiting,
      [this](const prometheus::Labels& labels) -> auto& { return batch_waiting_.Add(labels); })
      .Set(static_cast<double>(calls));
}

}  // namespace switchboard::upstream
