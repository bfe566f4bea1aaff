#include "switchboard/client/subscriber.h"

#include <atomic>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/support/client_callback.h"
#include "status_conversion.h"

namespace switchboard::client {

// Reads are started only from reactions (and before StartCall), so unlike
// the bidi streams this reactor needs no hold.
class Subscriber::Impl : public grpc::ClientReadReactor<v1::SubscribeResponse> {
 public:
  Impl(const Client& client, std::string topic, Handler handler) : handler_(std::move(handler)) {
    client.PrepareContext(context_);
    request_.set_topic(std::move(topic));
  }

  void Start(const Client& client) {
    client.broker().async()->Subscribe(&context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  absl::Status WaitUntilLive(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto live_or_ended = [this] {
      mu_.AssertReaderHeld();
      return live_ || ended_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&live_or_ended), timeout)) {
      return absl::DeadlineExceededError("the subscription did not become live in time");
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
    // Not ok for a trailers-only answer: the server refused the subscription.
    absl::MutexLock lock(&mu_);
    live_ = ok;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream is ending: OnDone follows.
    // A message read before the cancellation took effect is not handed out.
    if (stopped_) return;
    handler_(response_);
    StartRead(&response_);
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
  v1::SubscribeRequest request_;
  v1::SubscribeResponse response_;

  absl::Mutex mu_;
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

Subscriber::Subscriber(const Client& client, std::string topic, Handler handler)
    : impl_(std::make_unique<Impl>(client, std::move(topic), std::move(handler))) {
  // Only now, so that the handler may use this object from the first message on.
  impl_->Start(client);
}

Subscriber::~Subscriber() {
  Stop();
  Wait().IgnoreError();
}

absl::Status Subscriber::WaitUntilLive(absl::Duration timeout) {
  return impl_->WaitUntilLive(timeout);
}

void Subscriber::Stop() { impl_->Stop(); }

absl::Status Subscriber::Wait() { return impl_->Wait(); }

}  // namespace switchboard::client
