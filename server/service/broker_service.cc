#include "server/service/broker_service.h"

#include <utility>

#include "server/service/consume_reactor.h"
#include "server/service/publish_stream_reactor.h"
#include "server/service/status_conversion.h"
#include "server/service/subscribe_reactor.h"

namespace switchboard::service {

grpc::ServerUnaryReactor* BrokerService::Publish(grpc::CallbackServerContext* call,
                                                 const v1::PublishRequest* request,
                                                 v1::PublishResponse* response) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  absl::StatusOr<std::vector<broker::OutgoingMessage>> batch = [&] {
    absl::StatusOr<auth::ClientIdentity> client = AuthenticateCall(context_, *call);
    if (!client.ok()) return absl::StatusOr<std::vector<broker::OutgoingMessage>>(client.status());
    absl::StatusOr<std::vector<broker::OutgoingMessage>> validated =
        ValidatePublishBatch(request->topic(), request->messages(), context_.limits);
    if (!validated.ok()) return validated;
    if (absl::Status allowed = CheckTopicAllowed(*client, request->topic(), "topic");
        !allowed.ok()) {
      return absl::StatusOr<std::vector<broker::OutgoingMessage>>(allowed);
    }
    return validated;
  }();
  if (!batch.ok()) {
    context_.metrics.CountRejected("Publish", StatusCodeName(batch.status().code()));
    reactor->Finish(ToGrpcStatus(batch.status()));
    return reactor;
  }
  metrics::TopicMetrics& topic_metrics = context_.metrics.ForTopic(request->topic());
  // `response` lives until Finish(), even if the client cancels meanwhile.
  context_.broker.Publish(
      request->topic(), *std::move(batch),
      [reactor, response, &topic_metrics](absl::StatusOr<std::vector<std::string>> ids) {
        if (!ids.ok()) {
          reactor->Finish(ToGrpcStatus(ids.status()));
          return;
        }
        topic_metrics.published.Increment(static_cast<double>(ids->size()));
        for (std::string& id : *ids) response->add_message_ids(std::move(id));
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>*
BrokerService::PublishStream(grpc::CallbackServerContext* call) {
  return new PublishStreamReactor(context_, *call);
}

grpc::ServerWriteReactor<v1::SubscribeResponse>* BrokerService::Subscribe(
    grpc::CallbackServerContext* call, const v1::SubscribeRequest* request) {
  return new SubscribeReactor(context_, *call, *request);
}

grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>* BrokerService::Consume(
    grpc::CallbackServerContext* call) {
  return new ConsumeReactor(context_, *call);
}

}  // namespace switchboard::service
