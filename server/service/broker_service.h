// The gRPC Broker service (proto/switchboard/v1/broker.proto) on gRPC's
// callback API: unary Publish inline here, one reactor class per streaming
// method (publish_stream_reactor.h, subscribe_reactor.h, consume_reactor.h).
//
// Handlers authenticate the caller, validate every field, then hand work to
// the broker; they never block. Owned by server/app; the ServiceContext must
// outlive the gRPC server.
#pragma once

#include "server/service/service_context.h"
#include "switchboard/v1/broker.grpc.pb.h"

namespace switchboard::service {

class BrokerService final : public v1::Broker::CallbackService {
 public:
  explicit BrokerService(ServiceContext& context) : context_(context) {}

  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* call,
                                    const v1::PublishRequest* request,
                                    v1::PublishResponse* response) override;

  grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>* PublishStream(
      grpc::CallbackServerContext* call) override;

  grpc::ServerWriteReactor<v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* call, const v1::SubscribeRequest* request) override;

  grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* Consume(
      grpc::CallbackServerContext* call) override;

 private:
  ServiceContext& context_;
};

}  // namespace switchboard::service
