// ServerStreamReader: the reactor behind the client library's server-stream
// readers (Subscriber: Broker.Subscribe; Watcher: Rpc.Subscribe). It hands
// each message to a handler, one at a time on a gRPC thread, knows when the
// stream is live (the server sends its initial metadata then; a refusal is a
// trailers-only answer), and keeps the end status.
//
// Reads are started only from reactions (and before StartCall), so unlike
// the bidi streams this reactor needs no hold. Owned by its public class,
// which calls Start() once it is fully built and, before destroying it,
// Stop() and Wait(): no handler call runs after Wait() returns.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "status_conversion.h"
#include "switchboard/client/client.h"

namespace switchboard::client::internal {

template <typename Request, typename Response>
class ServerStreamReader : public grpc::ClientReadReactor<Response> {
 public:
  using Handler = std::function<void(const Response&)>;

  // `what` names the stream in WaitUntilLive's errors ("the subscription").
  ServerStreamReader(const Client& client, Request request, Handler handler, std::string what)
      : handler_(std::move(handler)), request_(std::move(request)), what_(std::move(what)) {
    client.PrepareContext(context_);
  }

  // Starts the call with `start(context, request, reactor)`, which calls the
  // stub's async method.
  template <typename StartCall>
  void Start(StartCall start) {
    start(&context_, &request_, this);
    this->StartRead(&response_);
    this->StartCall();
  }

  absl::Status WaitUntilLive(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    const auto live_or_ended = [this] {
      mu_.AssertReaderHeld();
      return live_ || ended_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&live_or_ended), timeout)) {
      return absl::DeadlineExceededError(what_ + " did not become live in time");
    }
    if (live_) return absl::OkStatus();
    return final_status_.ok() ? absl::UnavailableError("the server ended " + what_) : final_status_;
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
    // Not ok for a trailers-only answer: the server refused the stream.
    absl::MutexLock lock(&mu_);
    live_ = ok;
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream is ending: OnDone follows.
    // A message read before the cancellation took effect is not handed out.
    if (stopped_) return;
    handler_(response_);
    this->StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      final_status_ = FromGrpcStatus(status);
      ended_ = true;
    }
    done_.Notify();
  }

  const Handler handler_;
  std::atomic<bool> stopped_{false};
  grpc::ClientContext context_;
  const Request request_;
  Response response_;
  const std::string what_;

  absl::Mutex mu_;
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  absl::Notification done_;
};

}  // namespace switchboard::client::internal
