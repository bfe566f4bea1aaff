// The gRPC Rpc service (proto/switchboard/v1/rpc.proto) on gRPC's callback
// API: unary Call and the multiplexed CallStream, both answered by the
// upstream proxy (server/upstream), and Subscribe, served by the provider
// subscriptions (server/subscriptions) through RpcSubscribeReactor.
//
// Handlers authenticate the caller, validate every field, then hand the call
// to the UpstreamProxy (server/upstream/upstream_proxy.h), which applies the
// client's quota, the upstream's admission queue and its HTTP pool. A call
// refused admission finishes at once with RESOURCE_EXHAUSTED and a
// `retry-after-ms` trailer (in a stream: the response's status and
// retry_after_ms). Owned by server/app; the ServiceContext must outlive the
// gRPC server.
#pragma once

#include "server/service/service_context.h"
#include "switchboard/v1/rpc.grpc.pb.h"

namespace switchboard::service {

class RpcService final : public v1::Rpc::CallbackService {
 public:
  explicit RpcService(ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* call, const v1::CallRequest* request,
                                 v1::CallResponse* response) override;

  grpc::ServerBidiReactor<v1::CallRequest, v1::CallResponse>* CallStream(
      grpc::CallbackServerContext* call) override;

  grpc::ServerUnaryReactor* DescribeLimit(grpc::CallbackServerContext* call,
                                          const v1::DescribeLimitRequest* request,
                                          v1::DescribeLimitResponse* response) override;

  grpc::ServerWriteReactor<v1::RpcNotification>* Subscribe(
      grpc::CallbackServerContext* call, const v1::RpcSubscribeRequest* request) override;

 private:
  ServiceContext& context_;
};

}  // namespace switchboard::service
