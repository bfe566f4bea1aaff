#include "server/service/rpc_subscribe_reactor.h"

#include <utility>

#include "server/service/call_validation.h"
#include "server/service/status_conversion.h"

namespace switchboard::service {

RpcSubscribeReactor::RpcSubscribeReactor(ServiceContext& context, grpc::CallbackServerContext& call,
                                         const v1::RpcSubscribeRequest& request)
    : context_(context), registration_(context, metrics::StreamMethod::kRpcSubscribe, *this) {
  absl::Status status = [&]() -> absl::Status {
    absl::StatusOr<auth::ClientIdentity> client = registration_.Open(call);
    if (!client.ok()) return client.status();
    absl::StatusOr<subscriptions::SubscribeSpec> spec = ValidateSubscribeRequest(
        request, context_.upstreams, context_.subscriptions, context_.limits);
    if (!spec.ok()) return spec.status();
    spec->client_id = client->id;
    std::unique_ptr<subscriptions::SubscriptionHandle> handle =
        context_.subscriptions.Subscribe(request.upstream(), *std::move(spec), *this);
    StreamLock lock(*this);
    handle_ = std::move(handle);
    return absl::OkStatus();
  }();
  if (!status.ok()) {
    context_.metrics.CountRejected("RpcSubscribe", StatusCodeName(status.code()));
    StreamLock lock(*this);
    RequestFinishLocked(ToGrpcStatus(status));
    return;
  }
  // A first notification may have gone into a write before the handle was
  // here.
  ReadyIfTaken();
}

void RpcSubscribeReactor::OnSubscribed() {
  StreamLock lock(*this);
  if (!finishing()) StartSendInitialMetadata();
}

void RpcSubscribeReactor::OnNotification(
    std::shared_ptr<const subscriptions::Notification> notification, uint64_t dropped_since_last) {
  {
    StreamLock lock(*this);
    pending_ = std::move(notification);
    pending_dropped_ = dropped_since_last;
    MaybeWriteLocked();
  }
  ReadyIfTaken();
}

bool RpcSubscribeReactor::TakeNextResponseLocked(v1::RpcNotification& response) {
  if (pending_ == nullptr) return false;
  response.set_result_json(pending_->result);
  response.set_sequence(pending_->sequence);
  response.set_after_resubscribe(pending_->after_resubscribe);
  response.set_dropped_since_last(pending_dropped_);
  pending_.reset();
  pending_taken_ = true;
  return true;
}

void RpcSubscribeReactor::OnWriteCompleted() { ReadyIfTaken(); }

void RpcSubscribeReactor::ReadyIfTaken() {
  subscriptions::SubscriptionHandle* handle;
  {
    StreamLock lock(*this);
    // Without the handle yet, the constructor tells the hub.
    if (!pending_taken_ || handle_ == nullptr) return;
    pending_taken_ = false;
    handle = handle_.get();
  }
  // Alive: OnDone destroys it only after every reaction.
  handle->Ready();
}

void RpcSubscribeReactor::OnEnded(absl::Status status) {
  StreamLock lock(*this);
  RequestFinishLocked(ToGrpcStatus(status));
}

void RpcSubscribeReactor::Drain() {
  StreamLock lock(*this);
  RequestFinishLocked(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down; subscribe elsewhere"));
}

void RpcSubscribeReactor::OnDone() {
  std::unique_ptr<subscriptions::SubscriptionHandle> handle;
  {
    StreamLock lock(*this);
    handle = std::move(handle_);
  }
  // Outside `mu_`: this waits for a sink callback in progress, which may
  // need `mu_`. No sink callback runs after it.
  handle.reset();
  AwaitLockedSections();
  delete this;
}

}  // namespace switchboard::service
