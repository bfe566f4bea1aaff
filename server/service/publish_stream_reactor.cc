#include "server/service/publish_stream_reactor.h"

#include <utility>

namespace switchboard::service {

PublishStreamReactor::PublishStreamReactor(ServiceContext& context,
                                           grpc::CallbackServerContext& call)
    : PipelinedStream(context, call, metrics::StreamMethod::kPublishStream) {
  Start();
}

void PublishStreamReactor::Handle(v1::PublishStreamRequest& request) {
  const uint64_t request_id = request.request_id();
  absl::StatusOr<std::vector<broker::OutgoingMessage>> batch =
      ValidatePublishBatch(request.topic(), request.messages(), context_.limits);
  absl::Status status = batch.status();
  if (status.ok()) status = CheckTopicAllowed(client(), request.topic(), "topic");
  if (!status.ok()) {
    context_.metrics.CountRejected("PublishStream", StatusCodeName(status.code()));
    v1::PublishStreamResponse response;
    response.set_request_id(request_id);
    *response.mutable_error() = ToErrorStatus(status);
    Respond(std::move(response));
    return;
  }
  metrics::TopicMetrics& topic_metrics = context_.metrics.ForTopic(request.topic());
  BeginAsync();
  // Handed to the broker before the next read starts, so one stream's
  // batches are stored in the order they were sent.
  context_.broker.Publish(
      std::move(*request.mutable_topic()), *std::move(batch),
      [this, request_id, &topic_metrics](absl::StatusOr<std::vector<std::string>> ids) {
        v1::PublishStreamResponse response;
        response.set_request_id(request_id);
        if (ids.ok()) {
          topic_metrics.published.Increment(static_cast<double>(ids->size()));
          for (std::string& id : *ids) response.add_message_ids(std::move(id));
        } else {
          *response.mutable_error() = ToErrorStatus(ids.status());
        }
        CompleteAsync(std::move(response));
      });
}

}  // namespace switchboard::service
