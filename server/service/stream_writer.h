// The write half shared by the server-streaming reactors: at most one write
// in flight, and a Finish() that waits for it.
//
// `ReactorBase` is grpc::ServerBidiReactor<Req, Resp> or
// grpc::ServerWriteReactor<Resp>. Subclasses keep their outgoing state under
// `mu_`, implement TakeNextResponseLocked() to fill the next response, and
// call MaybeWriteLocked() when they queued something. gRPC runs reactions on
// its own threads and broker sinks and upstream answers run on dispatcher
// threads; all meet only under `mu_`, which every section takes through a
// StreamLock. Subclasses must not call into the broker while holding `mu_`
// (the broker holds its sink lock while calling into them).
//
// A write starts after `mu_` is released: gRPC sends the message inline in
// StartWrite, a system call that no other thread should wait out on `mu_`
// (under load, a dispatcher answering calls and gRPC's threads completing
// writes and reads would otherwise queue on it, each wait a futex sleep).
#pragma once

#include <grpcpp/impl/call_op_set.h>
#include <grpcpp/support/status.h>

#include <optional>
#include <utility>

#include "absl/synchronization/mutex.h"

namespace switchboard::service {

template <typename ReactorBase, typename Response>
class StreamWriter : public ReactorBase {
 public:
  void OnWriteDone(bool ok) final {
    {
      StreamLock lock(*this);
      write_in_flight_ = false;
      if (!ok && !finish_status_) finish_status_ = grpc::Status::CANCELLED;
      if (finish_status_) {
        FinishLocked();
        return;
      }
      MaybeWriteLocked();
    }
    OnWriteCompleted();
  }

  // Every RPC must be finished, even a cancelled one, before OnDone runs.
  void OnCancel() final {
    {
      StreamLock lock(*this);
      RequestFinishLocked(grpc::Status::CANCELLED);
    }
    OnCancelled();
  }

 protected:
  // Holds `mu_` for a section, and once it is released starts the write the
  // section staged (MaybeWriteLocked), if any. Every section that holds
  // `mu_` takes it through this, or a staged write would never start.
  class ABSL_SCOPED_LOCKABLE StreamLock {
   public:
    explicit StreamLock(StreamWriter& writer) ABSL_EXCLUSIVE_LOCK_FUNCTION(writer.mu_)
        : writer_(writer) {
      writer_.mu_.Lock();
    }
    ~StreamLock() ABSL_UNLOCK_FUNCTION() { writer_.UnlockAndStartStagedWrite(); }

    StreamLock(const StreamLock&) = delete;
    StreamLock& operator=(const StreamLock&) = delete;

   private:
    StreamWriter& writer_;
  };

  // Fills `response` with the next thing to send. Returns false when there is
  // nothing. Called with `mu_` held.
  virtual bool TakeNextResponseLocked(Response& response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;

  // True when more responses wait after the one just taken: its write then
  // carries gRPC's buffer hint, so a run of answers ready together (a
  // JSON-RPC batch's) leaves in few system calls; the last one flushes.
  virtual bool MoreResponsesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return false; }

  // Runs after a successful write, without `mu_`; may call into the broker.
  virtual void OnWriteCompleted() {}

  // Runs once, with `mu_` held, right before the stream finishes with
  // `status`.
  virtual void OnFinishing(const grpc::Status& /*status*/) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {}

  // Runs once the client cancelled the call (before OnDone), without `mu_`:
  // withdraw work started for it.
  virtual void OnCancelled() {}

  // Stages a write if none is in flight and there is something to send; the
  // section's StreamLock starts it.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (write_in_flight_ || finish_status_) return;
    response_.Clear();
    if (!TakeNextResponseLocked(response_)) return;
    write_in_flight_ = true;
    write_staged_ = true;
    write_buffered_ = MoreResponsesLocked();
  }

  // Ends the stream with `status` once the write in flight completes. Later
  // calls are ignored: the first reason wins.
  void RequestFinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_status_) return;
    finish_status_ = std::move(status);
    if (!write_in_flight_) FinishLocked();
  }

  bool finishing() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finish_status_.has_value(); }

  // Waits out any thread still inside a locked section before the reactor is
  // deleted in OnDone.
  void AwaitLockedSections() { StreamLock lock(*this); }

  absl::Mutex mu_;

 private:
  void UnlockAndStartStagedWrite() ABSL_UNLOCK_FUNCTION(mu_) {
    const bool start = std::exchange(write_staged_, false);
    grpc::WriteOptions options;
    if (write_buffered_) options.set_buffer_hint();
    mu_.Unlock();
    // The staged write owns response_ until OnWriteDone, and the stream
    // cannot finish (nor the reactor go) before that write completes.
    if (start) this->StartWrite(&response_, options);
  }

  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    OnFinishing(*finish_status_);
    this->Finish(*finish_status_);
  }

  Response response_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  // A write decided under `mu_`, to start once it is released.
  bool write_staged_ ABSL_GUARDED_BY(mu_) = false;
  // The staged write may wait in gRPC's buffer for the next one.
  bool write_buffered_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace switchboard::service
