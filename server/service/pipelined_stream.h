// PipelinedStream: the shape shared by PublishStream and CallStream, where
// every request is answered by one response carrying its request_id, in
// completion order.
//
// Requests are read one at a time and handed to Handle() in the order they
// were sent; Handle() answers at once (Respond) or starts asynchronous work
// (BeginAsync) that answers later from any thread (CompleteAsync). At most
// kMaxOutstanding requests are being worked on or waiting to be answered:
// reading pauses at that bound, so a client that sends faster than the work
// completes is back-pressured through gRPC flow control. Asynchronous work
// is not tied to a cancellable handle, so the reactor deletes itself only
// once OnDone has run AND no work is outstanding. On Drain() it stops
// reading, answers what is outstanding and ends with UNAVAILABLE.
//
// A subclass implements Handle() and calls Start() at the end of its
// constructor.
#pragma once

#include <grpcpp/support/server_callback.h>

#include <deque>
#include <optional>
#include <utility>

#include "absl/strings/string_view.h"
#include "server/service/service_context.h"
#include "server/service/status_conversion.h"
#include "server/service/stream_registration.h"
#include "server/service/stream_writer.h"

namespace switchboard::service {

template <typename Request, typename Response>
class PipelinedStream : public StreamWriter<grpc::ServerBidiReactor<Request, Response>, Response>,
                        public DrainableStream {
 public:
  static constexpr size_t kMaxOutstanding = 256;

  void OnReadDone(bool ok) final {
    if (!ok) {
      StreamLock lock(*this);
      read_in_flight_ = false;
      reads_closed_ = true;
      MaybeFinishLocked();
      return;
    }
    // read_in_flight_ stays set until request_ is handled, so no other
    // thread starts the next read into it, and requests are handled in order.
    Handle(request_);
    StreamLock lock(*this);
    read_in_flight_ = false;
    MaybeReadLocked();
  }

  void OnDone() final {
    bool delete_now;
    {
      StreamLock lock(*this);
      done_ = true;
      delete_now = DeletableLocked();
    }
    if (delete_now) delete this;
  }

  void Drain() final {
    StreamLock lock(*this);
    draining_ = true;
    MaybeFinishLocked();
  }

 protected:
  using StreamLock =
      typename StreamWriter<grpc::ServerBidiReactor<Request, Response>, Response>::StreamLock;

  PipelinedStream(ServiceContext& context, grpc::CallbackServerContext& call,
                  metrics::StreamMethod method)
      : context_(context), call_(call), method_(method), registration_(context, method, *this) {}

  // Handles one request, in the order the client sent them. Called without
  // `mu_`. May move from `request`.
  virtual void Handle(Request& request) = 0;

  // Authenticates the caller and starts reading. Call once, last in the
  // subclass' constructor.
  void Start() {
    absl::StatusOr<auth::ClientIdentity> client = registration_.Open(call_);
    StreamLock lock(*this);
    if (!client.ok()) {
      context_.metrics.CountRejected(metrics::StreamMethodName(method_),
                                     StatusCodeName(client.status().code()));
      this->RequestFinishLocked(ToGrpcStatus(client.status()));
      return;
    }
    client_ = *std::move(client);
    MaybeReadLocked();
  }

  const auth::ClientIdentity& client() const { return *client_; }
  grpc::CallbackServerContext& call() const { return call_; }

  // Answers the request being handled, from Handle().
  void Respond(Response response) {
    StreamLock lock(*this);
    responses_.push_back(std::move(response));
    this->MaybeWriteLocked();
  }

  // From Handle(): work that answers later through CompleteAsync(). Keeps
  // the reactor alive until then.
  void BeginAsync() {
    StreamLock lock(*this);
    ++outstanding_;
  }

  // Answers work begun with BeginAsync(), from any thread. The reactor may
  // be deleted before this returns.
  void CompleteAsync(Response response) {
    bool delete_now;
    {
      StreamLock lock(*this);
      --outstanding_;
      if (!this->finishing()) {
        responses_.push_back(std::move(response));
        this->MaybeWriteLocked();
        MaybeReadLocked();
        MaybeFinishLocked();
      }
      delete_now = DeletableLocked();
    }
    if (delete_now) delete this;
  }

  ServiceContext& context_;

 private:
  bool TakeNextResponseLocked(Response& response) final {
    if (responses_.empty()) return false;
    response = std::move(responses_.front());
    responses_.pop_front();
    return true;
  }

  bool MoreResponsesLocked() const final ABSL_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    return !responses_.empty();
  }

  void OnFinishing(const grpc::Status& status) final ABSL_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    registration_.Finished(status.error_code());
  }

  void OnWriteCompleted() final {
    StreamLock lock(*this);
    MaybeReadLocked();
    MaybeFinishLocked();
  }

  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    if (read_in_flight_ || reads_closed_ || draining_ || this->finishing() ||
        outstanding_ + responses_.size() >= kMaxOutstanding) {
      return;
    }
    read_in_flight_ = true;
    this->StartRead(&request_);
  }

  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    if (!(reads_closed_ || draining_) || outstanding_ > 0 || !responses_.empty()) return;
    this->RequestFinishLocked(draining_
                                  ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                 "server is shutting down; reconnect elsewhere")
                                  : grpc::Status::OK);
  }

  // True when nothing can call into the reactor any more.
  bool DeletableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(this->mu_) {
    return done_ && outstanding_ == 0;
  }

  grpc::CallbackServerContext& call_;
  const metrics::StreamMethod method_;
  StreamRegistration registration_;
  std::optional<auth::ClientIdentity> client_;
  Request request_;  // Owned by the read in flight.

  std::deque<Response> responses_ ABSL_GUARDED_BY(this->mu_);
  size_t outstanding_ ABSL_GUARDED_BY(this->mu_) = 0;  // Begun, not yet answered.
  // A read is pending, or its request is still being handled.
  bool read_in_flight_ ABSL_GUARDED_BY(this->mu_) = false;
  bool reads_closed_ ABSL_GUARDED_BY(this->mu_) = false;
  bool draining_ ABSL_GUARDED_BY(this->mu_) = false;
  bool done_ ABSL_GUARDED_BY(this->mu_) = false;
};

}  // namespace switchboard::service
