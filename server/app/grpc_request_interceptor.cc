#include "server/app/grpc_request_interceptor.h"

#include <grpcpp/support/interceptor.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::app {
namespace {

using grpc::experimental::InterceptionHookPoints;

// The interceptor of one call.
class GrpcRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  GrpcRequestInterceptor(GrpcRequestMetrics::Series& series, const common::Clock& clock)
      : series_(series), clock_(clock), start_(clock.Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      series_.Finished(methods->GetSendStatus().error_code(), clock_.Now() - start_);
    }
    methods->Proceed();
  }

 private:
  GrpcRequestMetrics::Series& series_;
  const common::Clock& clock_;
  const absl::Time start_;
};

class GrpcRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  GrpcRequestInterceptorFactory(GrpcRequestMetrics& metrics, const common::Clock& clock)
      : metrics_(metrics), clock_(clock) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    const char* method = info->method();
    return new GrpcRequestInterceptor(
        metrics_.ForMethod(method == nullptr ? absl::string_view() : absl::string_view(method)),
        clock_);
  }

 private:
  GrpcRequestMetrics& metrics_;
  const common::Clock& clock_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeGrpcRequestInterceptorFactory(GrpcRequestMetrics& metrics, const common::Clock& clock) {
  return std::make_unique<GrpcRequestInterceptorFactory>(metrics, clock);
}

}  // namespace switchboard::app
