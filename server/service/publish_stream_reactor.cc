#include "server/service/publish_stream_reactor.h"

#include <utility>

#include "server/service/status_conversion.h"

namespace switchboard::service {

PublishStreamReactor::PublishStreamReactor(ServiceContext& context,
                                           grpc::CallbackServerContext& call)
    : context_(context), registration_(context, metrics::StreamMethod::kPublishStream, *this) {
  absl::StatusOr<auth::ClientIdentity> client = registration_.Open(call);
  absl::MutexLock lock(&mu_);
  if (!client.ok()) {
    context_.metrics.CountRejected("PublishStream", StatusCodeName(client.status().code()));
    RequestFinishLocked(ToGrpcStatus(client.status()));
    return;
  }
  client_ = *std::move(client);
  MaybeReadLocked();
}

void PublishStreamReactor::MaybeReadLocked() {
  if (read_in_flight_ || reads_closed_ || draining_ || finishing() ||
      publishing_ + responses_.size() >= kMaxOutstanding) {
    return;
  }
  read_in_flight_ = true;
  StartRead(&request_);
}

void PublishStreamReactor::OnReadDone(bool ok) {
  if (!ok) {
    absl::MutexLock lock(&mu_);
    read_in_flight_ = false;
    reads_closed_ = true;
    MaybeFinishLocked();
    return;
  }
  // read_in_flight_ stays set until request_ is handled, so no other thread
  // starts the next read into it, and batches reach the broker in order.
  const uint64_t request_id = request_.request_id();
  absl::StatusOr<std::vector<broker::OutgoingMessage>> batch =
      ValidatePublishBatch(request_.topic(), request_.messages(), context_.limits);
  absl::Status status = batch.status();
  if (status.ok()) status = CheckTopicAllowed(*client_, request_.topic(), "topic");
  if (!status.ok()) {
    context_.metrics.CountRejected("PublishStream", StatusCodeName(status.code()));
    absl::MutexLock lock(&mu_);
    v1::PublishStreamResponse& response = responses_.emplace_back();
    response.set_request_id(request_id);
    *response.mutable_error() = ToErrorStatus(status);
    read_in_flight_ = false;
    MaybeWriteLocked();
    MaybeReadLocked();
    return;
  }
  metrics::TopicMetrics& topic_metrics = context_.metrics.ForTopic(request_.topic());
  std::string topic = std::move(*request_.mutable_topic());
  {
    absl::MutexLock lock(&mu_);
    ++publishing_;  // Keeps the reactor alive until the broker answers.
  }
  // Handed to the broker before the next read starts, so one stream's
  // batches are stored in the order they were sent.
  StartPublish(request_id, std::move(topic), *std::move(batch), topic_metrics);
  absl::MutexLock lock(&mu_);
  read_in_flight_ = false;
  MaybeReadLocked();
}

void PublishStreamReactor::StartPublish(uint64_t request_id, std::string topic,
                                        std::vector<broker::OutgoingMessage> batch,
                                        metrics::TopicMetrics& topic_metrics) {
  context_.broker.Publish(
      std::move(topic), std::move(batch),
      [this, request_id, &topic_metrics](absl::StatusOr<std::vector<std::string>> ids) {
        if (ids.ok()) topic_metrics.published.Increment(static_cast<double>(ids->size()));
        OnPublished(request_id, std::move(ids));
      });
}

void PublishStreamReactor::OnPublished(uint64_t request_id,
                                       absl::StatusOr<std::vector<std::string>> ids) {
  bool delete_now;
  {
    absl::MutexLock lock(&mu_);
    --publishing_;
    if (!finishing()) {
      v1::PublishStreamResponse& response = responses_.emplace_back();
      response.set_request_id(request_id);
      if (ids.ok()) {
        for (std::string& id : *ids) response.add_message_ids(std::move(id));
      } else {
        *response.mutable_error() = ToErrorStatus(ids.status());
      }
      MaybeWriteLocked();
      MaybeReadLocked();
      MaybeFinishLocked();
    }
    delete_now = DeletableLocked();
  }
  if (delete_now) delete this;
}

bool PublishStreamReactor::TakeNextResponseLocked(v1::PublishStreamResponse& response) {
  if (responses_.empty()) return false;
  response = std::move(responses_.front());
  responses_.pop_front();
  return true;
}

void PublishStreamReactor::OnWriteCompleted() {
  absl::MutexLock lock(&mu_);
  MaybeReadLocked();
  MaybeFinishLocked();
}

void PublishStreamReactor::MaybeFinishLocked() {
  if (!(reads_closed_ || draining_) || publishing_ > 0 || !responses_.empty()) return;
  RequestFinishLocked(draining_ ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                               "server is shutting down; reconnect elsewhere")
                                : grpc::Status::OK);
}

void PublishStreamReactor::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  MaybeFinishLocked();
}

void PublishStreamReactor::OnDone() {
  bool delete_now;
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    delete_now = DeletableLocked();
  }
  if (delete_now) delete this;
}

}  // namespace switchboard::service
