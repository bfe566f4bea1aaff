#include "switchboard/client/consumer.h"

#include <algorithm>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/backoff.h"
#include "retry_policy.h"
#include "switchboard/client/consume_stream.h"

namespace switchboard::client {

class Consumer::Impl {
 public:
  Impl(const Client& client, std::string topic, ConsumerOptions options, Handler handler)
      : client_(client), options_(std::move(options)), handler_(std::move(handler)) {
    subscription_.set_topic(std::move(topic));
    subscription_.set_group(options_.group);
    subscription_.set_max_in_flight(options_.max_in_flight);
    subscription_.set_ack_deadline_ms(options_.ack_deadline_ms);
  }

  void Start() {
    for (int i = 0; i < std::max(1, options_.concurrency); ++i) {
      workers_.emplace_back([this] { RunWorker(); });
    }
    supervisor_ = std::thread([this] { RunSupervisor(); });
  }

  ~Impl() {
    Stop();
    stopped_.WaitForNotification();
    supervisor_.join();
    for (std::thread& worker : workers_) worker.join();
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    StopLocked();
  }

  absl::Status Wait() {
    stopped_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return final_status_;
  }

 private:
  // A delivery waiting for a handler thread, with the stream (session) it
  // came on: its ack id is valid only there.
  struct Task {
    uint64_t session;
    v1::Delivery delivery;
  };

  void StopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    stopping_ = true;
    // Never handled: the server releases these leases when the stream closes.
    queue_.clear();
  }

  void RunWorker() ABSL_LOCKS_EXCLUDED(mu_) {
    const auto work_or_stopping = [this] {
      mu_.AssertReaderHeld();
      return stopping_ || !queue_.empty();
    };
    while (true) {
      Task task;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(&work_or_stopping));
        if (stopping_) return;
        task = std::move(queue_.front());
        queue_.pop_front();
        ++running_;
      }
      const absl::Status status = handler_(task.delivery);
      absl::MutexLock lock(&mu_);
      --running_;
      // A delivery of an earlier stream lost its lease with that stream.
      if (task.session != session_ || stream_ == nullptr) continue;
      if (status.ok()) {
        stream_->Ack(std::move(*task.delivery.mutable_ack_id()));
      } else {
        stream_->Nack(std::move(*task.delivery.mutable_ack_id()));
      }
    }
  }

  // Opens the stream of a new session. Its callbacks wait for mu_, so they
  // see the session and stream set.
  void OpenStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const uint64_t session = ++session_;
    stream_done_ = false;
    stream_ = std::make_unique<ConsumeStream>(
        client_, subscription_,
        [this, session](v1::ConsumeResponse& response) {
          // Refused acks need no action: a lease that was lost (expired, or
          // released) means the message is redelivered anyway.
          absl::MutexLock lock(&mu_);
          if (stopping_ || session != session_) return;
          for (v1::Delivery& delivery : *response.mutable_deliveries()) {
            queue_.push_back(Task{session, std::move(delivery)});
          }
        },
        [this](const absl::Status& status) {
          absl::MutexLock lock(&mu_);
          stream_done_ = true;
          stream_status_ = status;
          // Their leases ended with the stream: the server redelivers them.
          queue_.clear();
        });
  }

  // Lets the running handlers finish and their acks go out, then half-closes
  // the stream so the server releases what is left, cancelling it if the
  // server does not end it in time.
  void CloseStreamLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    mu_.Await(absl::Condition(
        +[](int* running) { return *running == 0; }, &running_));
    ConsumeStream* stream = stream_.get();
    mu_.Unlock();
    stream->Close();
    if (!stream->WaitWithTimeout(options_.shutdown_timeout)) {
      stream->Cancel();
      stream->Wait().IgnoreError();
    }
    mu_.Lock();
  }

  void RunSupervisor() ABSL_LOCKS_EXCLUDED(mu_) {
    common::BackoffOptions backoff_options;
    backoff_options.initial = options_.initial_backoff;
    backoff_options.max = options_.max_backoff;
    backoff_options.multiplier = options_.backoff_multiplier;
    // Equal jitter: spread out, yet never straight back at a server that
    // has just ended the stream.
    backoff_options.jitter = common::Jitter::kEqual;
    common::Backoff backoff(backoff_options);
    absl::BitGen random;
    const auto stopping_or_stream_done = [this] {
      mu_.AssertReaderHeld();
      return stopping_ || stream_done_;
    };
    absl::Status final_status;
    mu_.Lock();
    while (!stopping_) {
      OpenStreamLocked();
      mu_.Await(absl::Condition(&stopping_or_stream_done));
      if (!stream_done_) CloseStreamLocked();
      std::unique_ptr<ConsumeStream> ended = std::move(stream_);
      const absl::Status status = stream_status_;
      mu_.Unlock();
      const bool was_live = ended->was_live();
      // Its end has been reported, so this does not wait on our callbacks.
      ended.reset();
      mu_.Lock();
      if (stopping_) break;
      if (!internal::IsRetryableStreamEnd(status)) {
        final_status = status;
        StopLocked();
        break;
      }
      if (was_live) backoff.Reset();
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), backoff.Next(random));
    }
    // Handlers of the last stream may still be running.
    mu_.Await(absl::Condition(
        +[](int* running) { return *running == 0; }, &running_));
    final_status_ = final_status;
    mu_.Unlock();
    stopped_.Notify();
  }

  const Client& client_;
  const ConsumerOptions options_;
  const Handler handler_;
  v1::ConsumeSubscription subscription_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // Handlers running now.
  uint64_t session_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<ConsumeStream> stream_ ABSL_GUARDED_BY(mu_);
  bool stream_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status stream_status_ ABSL_GUARDED_BY(mu_);
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  absl::Notification stopped_;

  std::vector<std::thread> workers_;
  std::thread supervisor_;
};

Consumer::Consumer(const Client& client, std::string topic, ConsumerOptions options,
                   Handler handler)
    : impl_(std::make_unique<Impl>(client, std::move(topic), std::move(options),
                                   std::move(handler))) {
  // Only now, so that the handler may use this object from the first delivery on.
  impl_->Start();
}

Consumer::~Consumer() = default;

void Consumer::Stop() { impl_->Stop(); }

absl::Status Consumer::Wait() { return impl_->Wait(); }

}  // namespace switchboard::client
