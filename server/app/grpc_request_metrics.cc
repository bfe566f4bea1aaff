#include "server/app/grpc_request_metrics.h"

#include <utility>

#include "absl/status/status.h"

namespace switchboard::app {

GrpcRequestMetrics::Series::Series(prometheus::Family<prometheus::Counter>& requests,
                                   std::string method, prometheus::Counter* ok,
                                   prometheus::Histogram* duration)
    : requests_(requests), method_(std::move(method)), duration_(duration) {
  by_code_[grpc::StatusCode::OK].store(ok);
}

void GrpcRequestMetrics::Series::Finished(grpc::StatusCode code, absl::Duration duration) {
  const size_t index = code >= 0 && static_cast<size_t>(code) < kStatusCodes
                           ? static_cast<size_t>(code)
                           : static_cast<size_t>(grpc::StatusCode::UNKNOWN);
  prometheus::Counter* counter = by_code_[index].load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Family::Add returns the one series of these labels, so threads that
    // race here store the same pointer.
    counter =
        &requests_.Add({{"method", method_},
                        {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(index))}});
    by_code_[index].store(counter, std::memory_order_release);
  }
  counter->Increment();
  if (duration_ != nullptr) duration_->Observe(absl::ToDoubleSeconds(duration));
}

GrpcRequestMetrics::GrpcRequestMetrics(metrics::Metrics& metrics,
                                       const std::vector<Method>& methods)
    : requests_(metrics::AddCounter(*metrics.registry(), "switchboard_grpc_requests_total",
                                    "gRPC calls the server finished, per method and status "
                                    "code; unknown methods count as \"__unknown__\".")),
      durations_(metrics::AddHistogram(*metrics.registry(),
                                       "switchboard_grpc_request_duration_seconds",
                                       "Time from a unary gRPC call's arrival to its status, per "
                                       "method (streams have none).")),
      unknown_(requests_, kUnknownMethod, /*ok=*/nullptr, /*duration=*/nullptr) {
  for (const Method& method : methods) {
    prometheus::Counter& ok = requests_.Add({{"method", method.name}, {"code", "OK"}});
    prometheus::Histogram* duration =
        method.unary ? &durations_.Add({{"method", method.name}}, metrics::LatencyBuckets())
                     : nullptr;
    methods_.emplace(method.name, std::make_unique<Series>(requests_, method.name, &ok, duration));
  }
}

GrpcRequestMetrics::Series& GrpcRequestMetrics::ForMethod(absl::string_view method) {
  auto it = methods_.find(method);
  return it == methods_.end() ? unknown_ : *it->second;
}

void GrpcRequestMetrics::OnStreamFinished(metrics::StreamMethod method, grpc::StatusCode code) {
  for (const auto& [stream, name] : service::kStreamsReportingTheirStatus) {
    if (stream == method) {
      ForMethod(name).Finished(code, absl::ZeroDuration());
      return;
    }
  }
}

}  // namespace switchboard::app
