// GrpcRequestMetrics: the RED metrics of the gRPC server (rate, errors,
// duration), fed by the interceptor of grpc_request_interceptor.h.
//
// - `switchboard_grpc_requests_total{method,code}` counts every RPC the
//   server finishes, unary and streaming, those refused by authentication or
//   validation included, by the status code it finishes with ("OK",
//   "INVALID_ARGUMENT", ...).
//   The streams of service::kStreamsReportingTheirStatus report their own
//   status (OnStreamFinished); the interceptor counts every other call.
// - `switchboard_grpc_request_duration_seconds{method}` is the time from a
//   unary call's arrival to its status. Streams have none: a stream lasts as
//   long as its client wants (a Subscribe for days), so its lifetime says
//   nothing about the server; their traffic is in the per-topic families and
//   `switchboard_grpc_streams_open`.
//
// The `method` label is bounded: it is the full name of one of the methods
// given at construction (those of the services the server registers), or
// "__unknown__" for any other, which the server answers UNIMPLEMENTED. Each
// known method's `code="OK"` series (and a unary method's histogram) exists
// from the start, so a rate over it never starts from nothing.
//
// Owned by the wiring (server/app/server.cc). The hot path is lock-free:
// ForMethod() is one lookup in a map that never changes after
// construction, once per RPC, and Finished() an atomic load, a counter
// increment and, for a unary call, a histogram observation. Thread-safe.
#pragma once

#include <grpcpp/support/status_code_enum.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "server/metrics/metrics.h"
#include "server/service/stream_status.h"

namespace switchboard::app {

// The `method` label of calls to methods the server does not serve.
inline constexpr char kUnknownMethod[] = "__unknown__";

class GrpcRequestMetrics final : public service::StreamStatusObserver {
 public:
  // A method the server serves.
  struct Method {
    std::string name;  // "/switchboard.v1.Broker/Publish".
    bool unary = false;
  };

  // The series of one method (or of "__unknown__").
  class Series {
   public:
    // `ok` is the method's OK series when made beforehand, `duration` its
    // histogram when it has one; both may be null.
    Series(prometheus::Family<prometheus::Counter>& requests, std::string method,
           prometheus::Counter* ok, prometheus::Histogram* duration);

    Series(const Series&) = delete;
    Series& operator=(const Series&) = delete;

    // Counts one finished call, and observes `duration` when the method is
    // unary. A code outside gRPC's 0..16 counts as UNKNOWN.
    void Finished(grpc::StatusCode code, absl::Duration duration);

   private:
    static constexpr size_t kStatusCodes = 17;

    prometheus::Family<prometheus::Counter>& requests_;
    const std::string method_;
    prometheus::Histogram* const duration_;  // Null for streams and unknown methods.
    // By status code; each made on its first use unless given.
    std::array<std::atomic<prometheus::Counter*>, kStatusCodes> by_code_{};
  };

  // Registers the families in `metrics`' registry and the series of
  // `methods`.
  GrpcRequestMetrics(metrics::Metrics& metrics, const std::vector<Method>& methods);

  GrpcRequestMetrics(const GrpcRequestMetrics&) = delete;
  GrpcRequestMetrics& operator=(const GrpcRequestMetrics&) = delete;

  // The series of the method whose full name is `method`; those of
  // "__unknown__" when the server does not serve it. Lives as long as this.
  Series& ForMethod(absl::string_view method);

  // service::StreamStatusObserver.
  void OnStreamFinished(metrics::StreamMethod method, grpc::StatusCode code) override;

 private:
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
  // Filled by the constructor, read-only afterwards.
  absl::flat_hash_map<std::string, std::unique_ptr<Series>> methods_;
  Series unknown_;
};

}  // namespace switchboard::app
