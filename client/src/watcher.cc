#include "switchboard/client/watcher.h"

#include <atomic>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/support/client_callback.h"
#include "status_conversion.h"

namespace switchboard::client {

// As Subscriber::Impl: reads are started only from reactions (and before
// StartCall), so the reactor needs no hold.
class Watcher::Impl : public grpc::ClientReadReactor<v1::RpcNotification> {
 public:
  Impl(const Client& client, v1::RpcSubscribeRequest request, Handler handler)
      : handler_(std::move(handler)), request_(std::move(request)) {
    client.PrepareContext(context_);
  }

  void Start(const Client& client) {
    client.rpc().async()->Subscribe(&context_, &request_, this);
    StartRead(&notification_);
    StartCall();
  }

  absl::Status WaitUntilLive(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto live_or_ended = [this] {
      mu_.AssertReaderHeld();
      return live_ || ended_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&live_or_ended), timeout)) {
      return absl::DeadlineExceededError("the provider subscription did not become live in time");
    }
    if (live_) return absl::OkStatus();
    return final_status_.ok() ? absl::UnavailableError("the server ended the subscription")
                              : final_status_;
  }

  void Stop() {
    stopped_ = true;
    context_.TryCancel();
  }

  absl::Status Wait() {
    done_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return final_status_;
  }

 private:
  void OnReadInitialMetadataDone(bool ok) override {
    // Switchboard sends the initial metadata once the provider accepted the
    // subscription; a refusal is a trailers-only answer (not ok).
    absl::MutexLock lock(&mu_);
    live_ = ok;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream is ending: OnDone follows.
    // A notification read before the cancellation took effect is not handed
    // out.
    if (stopped_) return;
    handler_(notification_);
    StartRead(&notification_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      final_status_ = internal::FromGrpcStatus(status);
      ended_ = true;
    }
    done_.Notify();
  }

  const Handler handler_;
  std::atomic<bool> stopped_{false};
  grpc::ClientContext context_;
  const v1::RpcSubscribeRequest request_;
  v1::RpcNotification notification_;

  absl::Mutex mu_;
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

Watcher::Watcher(const Client& client, v1::RpcSubscribeRequest request, Handler handler)
    : impl_(std::make_unique<Impl>(client, std::move(request), std::move(handler))) {
  // Only now, so that the handler may use this object from the first
  // notification on.
  impl_->Start(client);
}

Watcher::~Watcher() {
  Stop();
  Wait().IgnoreError();
}

absl::Status Watcher::WaitUntilLive(absl::Duration timeout) {
  return impl_->WaitUntilLive(timeout);
}

void Watcher::Stop() { impl_->Stop(); }

absl::Status Watcher::Wait() { return impl_->Wait(); }

}  // namespace switchboard::client
