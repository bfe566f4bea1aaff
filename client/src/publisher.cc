#include "switchboard/client/publisher.h"

#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "switchboard/client/publish_stream.h"

namespace switchboard::client {
namespace {

using MessageIdPromise = std::promise<absl::StatusOr<std::string>>;

// Messages gathered for one PublishStream request.
struct Batch {
  std::vector<v1::OutgoingMessage> messages;
  std::vector<MessageIdPromise> promises;
  std::size_t bytes = 0;
};

}  // namespace

class Publisher::Impl {
 public:
  Impl(const Client& client, std::string topic, PublisherOptions options)
      : client_(client),
        topic_(std::move(topic)),
        options_(options),
        stream_(std::make_unique<PublishStream>(client)),
        batch_timer_([this] { RunBatchTimer(); }) {}

  ~Impl() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    batch_timer_.join();
    Flush();
    absl::MutexLock send_lock(&send_mu_);
    stream_->Close().IgnoreError();
  }

  std::future<absl::StatusOr<std::string>> Publish(v1::OutgoingMessage message) {
    MessageIdPromise promise;
    std::future<absl::StatusOr<std::string>> future = promise.get_future();
    const std::size_t bytes = message.ByteSizeLong();
    bool batch_full;
    {
      absl::MutexLock lock(&mu_);
      if (outstanding_messages_ > 0 &&
          (outstanding_messages_ + 1 > options_.max_outstanding_messages ||
           outstanding_bytes_ + bytes > options_.max_outstanding_bytes)) {
        promise.set_value(absl::ResourceExhaustedError(absl::StrCat(
            "publisher for '", topic_, "': ", outstanding_messages_, " messages (",
            outstanding_bytes_, " bytes) outstanding; limits are max_outstanding_messages=",
            options_.max_outstanding_messages,
            ", max_outstanding_bytes=", options_.max_outstanding_bytes)));
        return future;
      }
      ++outstanding_messages_;
      outstanding_bytes_ += bytes;
      if (batch_.messages.empty()) batch_opened_at_ = absl::Now();
      batch_.messages.push_back(std::move(message));
      batch_.promises.push_back(std::move(promise));
      batch_.bytes += bytes;
      batch_full = batch_.messages.size() >= options_.max_batch_messages ||
                   batch_.bytes >= options_.max_batch_bytes;
    }
    if (batch_full) SendBatch();
    return future;
  }

  void Flush() {
    SendBatch();
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::size_t* outstanding) { return *outstanding == 0; }, &outstanding_messages_));
  }

 private:
  // Seals the current batch and queues it on the stream. Holding send_mu_
  // while sealing keeps batches in Publish() order on the wire.
  void SendBatch() ABSL_LOCKS_EXCLUDED(mu_, send_mu_) {
    absl::MutexLock send_lock(&send_mu_);
    Batch batch;
    {
      absl::MutexLock lock(&mu_);
      if (batch_.messages.empty()) return;
      batch = std::exchange(batch_, Batch{});
      ++batch_generation_;
    }
    auto promises = std::make_shared<std::vector<MessageIdPromise>>(std::move(batch.promises));
    PublishStream::DoneCallback done =
        [this, promises, bytes = batch.bytes](absl::StatusOr<std::vector<std::string>> ids) {
          Resolve(*promises, bytes, std::move(ids));
        };
    absl::Status queued = stream_->Send(topic_, std::move(batch.messages), std::move(done));
    if (!queued.ok()) {
      // The stream ended (the server went away, or drained): nothing of the
      // batch was sent, so it goes on a fresh stream.
      stream_ = std::make_unique<PublishStream>(client_);
      queued = stream_->Send(topic_, std::move(batch.messages), std::move(done));
    }
    if (!queued.ok()) {
      // Even the fresh stream ended at once: the server is unreachable.
      done(absl::UnavailableError(absl::StrCat(
          "publisher for '", topic_, "': the PublishStream ended at once: ", queued.message())));
    }
  }

  void Resolve(std::vector<MessageIdPromise>& promises, std::size_t bytes,
               absl::StatusOr<std::vector<std::string>> ids) ABSL_LOCKS_EXCLUDED(mu_) {
    if (ids.ok() && ids->size() != promises.size()) {
      ids = absl::InternalError(absl::StrCat("the server returned ", ids->size(), " ids for ",
                                             promises.size(), " messages"));
    }
    for (std::size_t i = 0; i < promises.size(); ++i) {
      if (ids.ok()) {
        promises[i].set_value(std::move((*ids)[i]));
      } else {
        promises[i].set_value(ids.status());
      }
    }
    absl::MutexLock lock(&mu_);
    outstanding_messages_ -= promises.size();
    outstanding_bytes_ -= bytes;
  }

  // Seals each batch whose first message has waited max_batch_delay.
  void RunBatchTimer() ABSL_LOCKS_EXCLUDED(mu_) {
    const auto batch_waiting = [this] {
      mu_.AssertReaderHeld();
      return stopping_ || !batch_.messages.empty();
    };
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(&batch_waiting));
        if (stopping_) return;
        const uint64_t generation = batch_generation_;
        const auto sealed_or_stopping = [this, generation] {
          mu_.AssertReaderHeld();
          return stopping_ || batch_generation_ != generation;
        };
        // Sealed early (full, or flushed): wait for the next batch instead.
        if (mu_.AwaitWithDeadline(absl::Condition(&sealed_or_stopping),
                                  batch_opened_at_ + options_.max_batch_delay)) {
          continue;
        }
      }
      SendBatch();
    }
  }

  const Client& client_;
  const std::string topic_;
  const PublisherOptions options_;

  // Serializes sealing and sending, and guards the stream. Taken before mu_.
  absl::Mutex send_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  std::unique_ptr<PublishStream> stream_ ABSL_GUARDED_BY(send_mu_);

  absl::Mutex mu_;
  Batch batch_ ABSL_GUARDED_BY(mu_);
  absl::Time batch_opened_at_ ABSL_GUARDED_BY(mu_);
  uint64_t batch_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::size_t outstanding_messages_ ABSL_GUARDED_BY(mu_) = 0;
  std::size_t outstanding_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  std::thread batch_timer_;  // Last: starts once everything above exists.
};

Publisher::Publisher(const Client& client, std::string topic, PublisherOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(topic), options)) {}

Publisher::~Publisher() = default;

std::future<absl::StatusOr<std::string>> Publisher::Publish(v1::OutgoingMessage message) {
  return impl_->Publish(std::move(message));
}

void Publisher::Flush() { impl_->Flush(); }

}  // namespace switchboard::client
