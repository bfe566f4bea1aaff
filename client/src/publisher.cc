#include "switchboard/client/publisher.h"

#include <algorithm>
#include <deque>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "switchboard/client/publish_stream.h"

namespace switchboard::client {
namespace {

using PublishCallback = Publisher::PublishCallback;

// A message accepted by Publish() that waits for a request slot.
struct QueuedMessage {
  v1::OutgoingMessage message;
  PublishCallback done;
  std::size_t bytes = 0;
  int sent = 0;  // Requests it went out in before (failed, outcome unknown).
};

// One PublishStream request: its messages (kept for a retry) and their
// callbacks, in order, and the bytes its messages hold of
// max_outstanding_bytes.
struct Request {
  std::vector<QueuedMessage> messages;
  std::size_t bytes = 0;
};

// A request whose stream broke or timed out may have been stored: these are
// retried (with their dedup ids); any other failure is the server's answer.
bool OutcomeUnknown(const absl::Status& status) {
  return absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
         absl::IsCancelled(status);
}

// A prefix unique to one Publisher for the dedup ids it assigns.
std::string RandomDedupPrefix() {
  std::random_device random;
  return absl::StrCat(absl::Hex((uint64_t{random()} << 32) ^ random(), absl::kZeroPad16));
}

// Requests that no stream took, with the reason: resolved once the lock is
// released.
using Unsent = std::vector<std::pair<Request, absl::Status>>;

// (A request always takes at least one message, so max_batch_messages 0 is
// 1 already.)
PublisherOptions AtLeastOneInFlight(PublisherOptions options) {
  options.max_in_flight_requests = std::max<std::size_t>(options.max_in_flight_requests, 1);
  return options;
}

}  // namespace

class Publisher::Impl {
 public:
  Impl(const Client& client, std::string topic, PublisherOptions options)
      : client_(client),
        topic_(std::move(topic)),
        options_(AtLeastOneInFlight(options)),
        dedup_prefix_(RandomDedupPrefix()),
        stream_(std::make_unique<PublishStream>(client)) {}

  ~Impl() {
    Flush();
    std::unique_ptr<PublishStream> stream;
    {
      absl::MutexLock lock(&mu_);
      stream = std::move(stream_);
    }
    stream->Close().IgnoreError();
  }

  void Publish(v1::OutgoingMessage message, PublishCallback done) {
    const std::size_t bytes = message.ByteSizeLong();
    Unsent unsent;
    std::vector<std::unique_ptr<PublishStream>> ended;
    absl::Status accepted;
    {
      absl::MutexLock lock(&mu_);
      accepted = AcceptLocked(bytes, message);
      if (accepted.ok()) {
        queue_.push_back(QueuedMessage{std::move(message), std::move(done), bytes});
        SendQueuedLocked(unsent);
        ended.swap(ended_streams_);
      }
    }
    if (!accepted.ok()) {
      std::move(done)(std::move(accepted));  // Outside the lock: `done` may publish.
      return;
    }
    FailUnsent(unsent);
  }  // `ended` streams are destroyed here, outside the lock.

  void Flush() {
    // Declared before the lock: ended streams are destroyed once it is released.
    std::vector<std::unique_ptr<PublishStream>> ended;
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](std::size_t* outstanding) { return *outstanding == 0; }, &outstanding_messages_));
    ended.swap(ended_streams_);
  }

 private:
  // Takes outstanding room for a message of `bytes` and gives it a dedup id
  // when retries may need one; RESOURCE_EXHAUSTED when flow control refuses
  // it.
  absl::Status AcceptLocked(std::size_t bytes, v1::OutgoingMessage& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (outstanding_messages_ > 0 &&
        (outstanding_messages_ + 1 > options_.max_outstanding_messages ||
         outstanding_bytes_ + bytes > options_.max_outstanding_bytes)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "publisher for '", topic_, "': ", outstanding_messages_, " messages (",
          outstanding_bytes_, " bytes) outstanding; limits are max_outstanding_messages=",
          options_.max_outstanding_messages,
          ", max_outstanding_bytes=", options_.max_outstanding_bytes));
    }
    ++outstanding_messages_;
    outstanding_bytes_ += bytes;
    if (options_.max_attempts > 1 && message.dedup_id().empty()) {
      message.set_dedup_id(absl::StrCat(dedup_prefix_, "-", next_dedup_id_++));
    }
    return absl::OkStatus();
  }

  // Sends the queue, oldest first, in requests of at most max_batch_messages
  // and max_batch_bytes (and at least one message), while fewer than
  // max_in_flight_requests are in flight. Runs under mu_ so that requests
  // leave in Publish() order; PublishStream::Send never runs a callback
  // inline.
  void SendQueuedLocked(Unsent& unsent) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (in_flight_requests_ < options_.max_in_flight_requests && !queue_.empty()) {
      std::vector<v1::OutgoingMessage> messages;
      auto request = std::make_shared<Request>();
      do {
        QueuedMessage& next = queue_.front();
        // A copy when a retry may need the message again.
        messages.push_back(options_.max_attempts > 1 ? next.message : std::move(next.message));
        request->bytes += next.bytes;
        request->messages.push_back(std::move(next));
        queue_.pop_front();
      } while (!queue_.empty() && messages.size() < options_.max_batch_messages &&
               request->bytes + queue_.front().bytes <= options_.max_batch_bytes);
      PublishStream::DoneCallback done = [this,
                                          request](absl::StatusOr<std::vector<std::string>> ids) {
        OnAnswered(*request, std::move(ids));
      };
      if (absl::Status sent = SendLocked(messages, done); !sent.ok()) {
        unsent.emplace_back(std::move(*request), std::move(sent));
        continue;
      }
      ++in_flight_requests_;
    }
  }

  // Sends one request on the stream, or on a new one when the stream has
  // ended (the server went away, or drained: nothing of it was sent). An
  // ended stream is destroyed later, by an application thread: this may run
  // on that stream's own callback thread, which its destructor would wait for.
  absl::Status SendLocked(std::vector<v1::OutgoingMessage>& messages,
                          PublishStream::DoneCallback& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (stream_->Send(topic_, std::move(messages), std::move(done)).ok()) {
      return absl::OkStatus();
    }
    ended_streams_.push_back(std::exchange(stream_, std::make_unique<PublishStream>(client_)));
    absl::Status sent = stream_->Send(topic_, std::move(messages), std::move(done));
    if (sent.ok()) return sent;
    // Even the fresh stream ended at once: the server is unreachable.
    return absl::UnavailableError(absl::StrCat(
        "publisher for '", topic_, "': the PublishStream ended at once: ", sent.message()));
  }

  // A request's answer. Its slot stays taken until every callback of it has
  // run (every future is resolved): what those callbacks, or the threads
  // woken by those futures, publish meanwhile leaves together in the next
  // request rather than the first alone.
  //
  // A request whose outcome is unknown (its stream broke, or it timed out)
  // goes again, first in the queue, for the messages that have attempts
  // left: they carry dedup ids, so whatever the first attempt stored is not
  // stored twice.
  void OnAnswered(Request& request, absl::StatusOr<std::vector<std::string>> ids)
      ABSL_LOCKS_EXCLUDED(mu_) {
    Request retried;
    if (!ids.ok() && OutcomeUnknown(ids.status())) {
      Request failed;
      for (QueuedMessage& message : request.messages) {
        Request& to = ++message.sent < options_.max_attempts ? retried : failed;
        to.bytes += message.bytes;
        to.messages.push_back(std::move(message));
      }
      request = std::move(failed);
    }
    SetValues(request, std::move(ids));
    Unsent unsent;
    {
      absl::MutexLock lock(&mu_);
      --in_flight_requests_;
      ReleaseLocked(request);
      for (auto message = retried.messages.rbegin(); message != retried.messages.rend();
           ++message) {
        queue_.push_front(std::move(*message));
      }
      SendQueuedLocked(unsent);
    }
    FailUnsent(unsent);
  }

  // Resolves each request that no stream took with the reason.
  void FailUnsent(Unsent& unsent) ABSL_LOCKS_EXCLUDED(mu_) {
    for (auto& [request, status] : unsent) {
      SetValues(request, status);
      absl::MutexLock lock(&mu_);
      ReleaseLocked(request);
    }
  }

  // Runs every callback of `request`, each with its id or with the error.
  static void SetValues(Request& request, absl::StatusOr<std::vector<std::string>> ids) {
    if (ids.ok() && ids->size() != request.messages.size()) {
      ids = absl::InternalError(absl::StrCat("the server returned ", ids->size(), " ids for ",
                                             request.messages.size(), " messages"));
    }
    for (std::size_t i = 0; i < request.messages.size(); ++i) {
      if (ids.ok()) {
        std::move(request.messages[i].done)(std::move((*ids)[i]));
      } else {
        std::move(request.messages[i].done)(ids.status());
      }
    }
  }

  // Frees the outstanding room of a resolved request.
  void ReleaseLocked(const Request& request) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    outstanding_messages_ -= request.messages.size();
    outstanding_bytes_ -= request.bytes;
  }

  const Client& client_;
  const std::string topic_;
  const PublisherOptions options_;
  const std::string dedup_prefix_;  // Of the dedup ids this publisher assigns.

  absl::Mutex mu_;
  uint64_t next_dedup_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<QueuedMessage> queue_ ABSL_GUARDED_BY(mu_);
  std::size_t in_flight_requests_ ABSL_GUARDED_BY(mu_) = 0;
  std::size_t outstanding_messages_ ABSL_GUARDED_BY(mu_) = 0;
  std::size_t outstanding_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Last: destroying a stream waits for its callbacks, which use the above.
  std::unique_ptr<PublishStream> stream_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<PublishStream>> ended_streams_ ABSL_GUARDED_BY(mu_);
};

Publisher::Publisher(const Client& client, std::string topic, PublisherOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(topic), options)) {}

Publisher::~Publisher() = default;

std::future<absl::StatusOr<std::string>> Publisher::Publish(v1::OutgoingMessage message) {
  std::promise<absl::StatusOr<std::string>> promise;
  std::future<absl::StatusOr<std::string>> future = promise.get_future();
  impl_->Publish(std::move(message),
                 [promise = std::move(promise)](absl::StatusOr<std::string> id) mutable {
                   promise.set_value(std::move(id));
                 });
  return future;
}

void Publisher::Publish(v1::OutgoingMessage message, PublishCallback done) {
  impl_->Publish(std::move(message), std::move(done));
}

void Publisher::Flush() { impl_->Flush(); }

}  // namespace switchboard::client
