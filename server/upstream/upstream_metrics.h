// UpstreamMetrics: the UpstreamObserver that reports to Prometheus.
//
// The adapter between the JSON-RPC proxy's observer interface
// (upstream_observer.h) and the metrics library: requests by upstream, method
// and outcome with their latency, provider pushback, cache hits and
// coalescing by method, admission (queue wait, rejections, rate, queue
// depth), connections and auto-batching per upstream. Upstream names come
// from configuration; methods are capped at Metrics::max_topic_labels()
// distinct values ("__other__" beyond). The per-call reports resolve their
// series once per upstream (or per upstream, method and outcome) instead of
// building label sets per report. Thread-safe.
#pragma once

#include <cstddef>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/labels.h"
#include "server/metrics/metrics.h"
#include "server/upstream/upstream_observer.h"

namespace switchboard::upstream {

class UpstreamMetrics final : public UpstreamObserver {
 public:
  // Registers the upstream families in `metrics`' registry.
  explicit UpstreamMetrics(metrics::Metrics& metrics);

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

 private:
  // The series one upstream request updates.
  struct RequestSeries {
    prometheus::Counter* requests;
    prometheus::Histogram* latency;
  };
  // The series of one upstream without a method label, each made on its
  // first use.
  struct UpstreamSeries {
    prometheus::Histogram* queue_wait = nullptr;
    prometheus::Gauge* queue_depth = nullptr;
    prometheus::Gauge* rate = nullptr;
    prometheus::Gauge* connections = nullptr;
    prometheus::Histogram* batch_size = nullptr;
    prometheus::Gauge* batch_waiting = nullptr;
  };
  // `upstream`'s series in `slot`, made by `make` (given the label set) the
  // first time.
  template <typename Series>
  Series& ForUpstream(absl::string_view upstream, Series* UpstreamSeries::*slot,
                      absl::FunctionRef<Series&(const prometheus::Labels&)> make)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  metrics::LabelCap methods_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& throttled_;
  prometheus::Family<prometheus::Counter>& cache_hits_;
  prometheus::Family<prometheus::Counter>& coalesced_;
  prometheus::Family<prometheus::Histogram>& queue_wait_;
  prometheus::Family<prometheus::Counter>& rejections_;
  prometheus::Family<prometheus::Gauge>& rate_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Gauge>& connections_;
  prometheus::Family<prometheus::Histogram>& batch_size_;
  prometheus::Family<prometheus::Gauge>& batch_waiting_;

  absl::Mutex mu_;
  // By "upstream\0method\0outcome".
  absl::flat_hash_map<std::string, RequestSeries> request_series_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, UpstreamSeries> upstream_series_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::upstream
