#include "server/service/subscribe_reactor.h"

#include <utility>

#include "server/common/names.h"
#include "server/service/message_conversion.h"
#include "server/service/status_conversion.h"

namespace switchboard::service {

SubscribeReactor::SubscribeReactor(ServiceContext& context, grpc::CallbackServerContext& call,
                                   const v1::SubscribeRequest& request)
    : context_(context), registration_(context, metrics::StreamMethod::kSubscribe, *this) {
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<auth::ClientIdentity> client = registration_.Open(call);
    if (!client.ok()) return client.status();
    if (absl::Status valid = common::ValidateTopicPattern(request.topic(), "topic"); !valid.ok()) {
      return valid;
    }
    if (absl::Status allowed = CheckTopicAllowed(*client, request.topic(), "topic");
        !allowed.ok()) {
      return allowed;
    }
    topic_metrics_ = &context_.metrics.ForTopic(request.topic());
    absl::StatusOr<std::unique_ptr<broker::Subscription>> subscription =
        context_.broker.Subscribe(request.topic(), *this);
    if (!subscription.ok()) return subscription.status();
    StreamLock lock(*this);
    subscription_ = *std::move(subscription);
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    context_.metrics.CountRejected("Subscribe", StatusCodeName(status.code()));
    StreamLock lock(*this);
    RequestFinishLocked(ToGrpcStatus(status));
    return;
  }
  // A first message may have gone into a write before the handle was here.
  ReadyIfTaken();
}

void SubscribeReactor::OnSubscribed() {
  StreamLock lock(*this);
  if (!finishing()) StartSendInitialMetadata();
}

void SubscribeReactor::OnMessage(broker::Message message, uint64_t dropped_since_last) {
  {
    StreamLock lock(*this);
    pending_ = std::move(message);
    pending_dropped_ = dropped_since_last;
    MaybeWriteLocked();
  }
  ReadyIfTaken();
}

bool SubscribeReactor::TakeNextResponseLocked(v1::SubscribeResponse& response) {
  if (!pending_) return false;
  topic_metrics_->delivered.Increment();
  ToReceivedMessage(*std::move(pending_), *response.mutable_message());
  response.set_dropped_since_last(pending_dropped_);
  pending_.reset();
  pending_taken_ = true;
  return true;
}

void SubscribeReactor::OnWriteCompleted() { ReadyIfTaken(); }

void SubscribeReactor::ReadyIfTaken() {
  broker::Subscription* subscription;
  {
    StreamLock lock(*this);
    // Without the handle yet, the constructor tells the broker.
    if (!pending_taken_ || subscription_ == nullptr) return;
    pending_taken_ = false;
    subscription = subscription_.get();
  }
  // Alive: OnDone destroys it only after every reaction, and its destructor
  // waits for a sink callback in progress.
  subscription->Ready();
}

void SubscribeReactor::OnClosed(absl::Status status) {
  StreamLock lock(*this);
  RequestFinishLocked(ToGrpcStatus(status));
}

void SubscribeReactor::Drain() {
  StreamLock lock(*this);
  RequestFinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "server is shutting down; resubscribe elsewhere"));
}

void SubscribeReactor::OnDone() {
  std::unique_ptr<broker::Subscription> subscription;
  {
    StreamLock lock(*this);
    subscription = std::move(subscription_);
  }
  // Outside `mu_`: this waits for a sink callback in progress, which may
  // need `mu_`. No sink callback runs after it.
  subscription.reset();
  AwaitLockedSections();
  delete this;
}

}  // namespace switchboard::service
