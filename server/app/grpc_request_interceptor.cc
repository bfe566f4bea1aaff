#include "server/app/grpc_request_interceptor.h"

#include <grpcpp/support/interceptor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/service/stream_status.h"

namespace switchboard::app {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The last part of a full method name: "Publish" of
// "/switchboard.v1.Broker/Publish".
absl::string_view ShortName(absl::string_view method) {
  const size_t slash = method.rfind('/');
  return slash == absl::string_view::npos ? method : method.substr(slash + 1);
}

// The interceptor of one call.
class GrpcRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  GrpcRequestInterceptor(GrpcRequestMetrics::Series& series, metrics::Metrics& metrics,
                         const common::Clock& clock, absl::string_view method,
                         bool takes_one_request)
      : series_(series),
        metrics_(metrics),
        clock_(clock),
        start_(clock.Now()),
        method_(method),
        takes_one_request_(takes_one_request) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // The one request of a unary or server-streaming call arrives before the
    // handler runs; null here means its bytes did not parse.
    if (takes_one_request_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      unparseable_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::StatusCode code = methods->GetSendStatus().error_code();
      if (unparseable_) {
        // gRPC itself answers UNIMPLEMENTED with no message, which points a
        // client at the wrong problem.
        code = grpc::StatusCode::INVALID_ARGUMENT;
        methods->ModifySendStatus(grpc::Status(
            code, absl::StrCat("request: not a valid protobuf request of ", method_,
                               " (check the client's generated code matches the server's "
                               "proto/switchboard/v1)")));
        metrics_.CountRejected(ShortName(method_), "INVALID_ARGUMENT");
      }
      series_.Finished(code, clock_.Now() - start_);
    }
    methods->Proceed();
  }

 private:
  GrpcRequestMetrics::Series& series_;
  metrics::Metrics& metrics_;
  const common::Clock& clock_;
  const absl::Time start_;
  // gRPC's own text, which lives as long as the call (and so this).
  const absl::string_view method_;
  const bool takes_one_request_;
  bool unparseable_ = false;
};

class GrpcRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  GrpcRequestInterceptorFactory(GrpcRequestMetrics& request_metrics, metrics::Metrics& metrics,
                                const common::Clock& clock)
      : request_metrics_(request_metrics), metrics_(metrics), clock_(clock) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const absl::string_view method =
        info->method() == nullptr ? absl::string_view() : absl::string_view(info->method());
    for (const auto& [stream, name] : service::kStreamsReportingTheirStatus) {
      // No interceptor: it would run on each of the stream's messages.
      if (method == name) return nullptr;
    }
    using Type = grpc::experimental::ServerRpcInfo::Type;
    return new GrpcRequestInterceptor(
        request_metrics_.ForMethod(method), metrics_, clock_, method,
        info->type() == Type::UNARY || info->type() == Type::SERVER_STREAMING);
  }

 private:
  GrpcRequestMetrics& request_metrics_;
  metrics::Metrics& metrics_;
  const common::Clock& clock_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeGrpcRequestInterceptorFactory(GrpcRequestMetrics& request_metrics, metrics::Metrics& metrics,
                                  const common::Clock& clock) {
  return std::make_unique<GrpcRequestInterceptorFactory>(request_metrics, metrics, clock);
}

}  // namespace switchboard::app
