// The machinery shared by the library's two bidirectional streams
// (PublishStream and Consume): one gRPC callback reactor that keeps a read
// outstanding for the stream's whole life, writes at most one request at a
// time, half-closes on request, and reports the end exactly once.
//
// Subclasses queue what they want to send under `mu_` and call
// MaybeStartWriteLocked(); the reactor pulls the next request through
// TakeNextWrite() whenever the previous write has completed.
//
// Threads: application threads queue writes and close; gRPC callback threads
// run HandleResponse() (one at a time, never with `mu_` held) and then
// HandleDone() exactly once, last. No reaction runs inline on an application
// thread: every Start* call below may therefore be made with `mu_` held.
//
// Ownership: the owner must call Wait() (after CloseWrites() or Cancel())
// before destroying the reactor; nothing touches it after Wait() returns.
#pragma once

#include <grpcpp/client_context.h>
#include <grpcpp/support/client_callback.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "status_conversion.h"
#include "switchboard/client/client.h"

namespace switchboard::client::internal {

template <class Request, class Response>
class BidiStreamReactor : public grpc::ClientBidiReactor<Request, Response> {
 public:
  using Reactor = grpc::ClientBidiReactor<Request, Response>;

  // Half-closes the stream once every queued request is written. Requests
  // queued later are refused (see accepting_writes()).
  void CloseWrites() {
    absl::MutexLock lock(&mu_);
    close_requested_ = true;
    MaybeStartWriteLocked();
  }

  // Ends the stream now; the server sees a cancellation.
  void Cancel() { context_.TryCancel(); }

  // Blocks until the stream has ended and HandleDone() has returned.
  absl::Status Wait() {
    done_.WaitForNotification();
    return final_status_;
  }

  // As Wait(), giving up after `timeout`: false when the stream is still open.
  bool WaitWithTimeout(absl::Duration timeout) {
    return done_.WaitForNotificationWithTimeout(timeout);
  }

  // Whether the server accepted the stream: it sent its initial metadata,
  // rather than ending the call at once (a trailers-only response).
  bool was_live() const {
    absl::MutexLock lock(&mu_);
    return live_;
  }

 protected:
  explicit BidiStreamReactor(const Client& client) { client.PrepareContext(context_); }

  // Starts the RPC. `bind` attaches this reactor to the stub's async method,
  // e.g. `[&](auto* context, auto* reactor) { stub.async()->Consume(context, reactor); }`.
  template <typename Bind>
  void Start(Bind bind) {
    bind(&context_, static_cast<Reactor*>(this));
    // Writes start from application threads, outside any reaction, so the
    // stream needs a hold until no more writes can start (see OnReadDone).
    this->AddHold();
    this->StartRead(&response_);
    this->StartCall();
  }

  // Fills `request` with the next request to write and returns true, or
  // returns false when nothing is queued.
  virtual bool TakeNextWrite(Request& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;

  // One response from the server. May modify (e.g. move from) `response`.
  virtual void HandleResponse(Response& response) = 0;

  // The stream's final status. Called once, after every other reaction.
  virtual void HandleDone(const absl::Status& status) = 0;

  // Writes the next queued request unless a write is in flight.
  void MaybeStartWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || writes_closed_) return;
    if (TakeNextWrite(write_buffer_)) {
      write_in_flight_ = true;
      this->StartWrite(&write_buffer_);
    } else if (close_requested_) {
      writes_closed_ = true;
      this->StartWritesDone();
    }
  }

  // False once CloseWrites() was called or the stream has ended: a request
  // queued now would never be written.
  bool accepting_writes() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !close_requested_ && !writes_closed_;
  }

  mutable absl::Mutex mu_;

 private:
  void OnReadInitialMetadataDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    live_ = ok;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_in_flight_ = false;
    // A failed write means the stream is ending: OnReadDone(false) follows.
    if (ok) MaybeStartWriteLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The server has finished (or the call broke): no write may start any
      // more, so the hold taken in Start() can go, letting OnDone() come.
      absl::MutexLock lock(&mu_);
      writes_closed_ = true;
      this->RemoveHold();
      return;
    }
    HandleResponse(response_);
    this->StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    final_status_ = FromGrpcStatus(status);
    HandleDone(final_status_);
    done_.Notify();
  }

  grpc::ClientContext context_;
  Response response_;
  Request write_buffer_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool close_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool live_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_;  // Written before done_ is notified.
  absl::Notification done_;
};

}  // namespace switchboard::client::internal
