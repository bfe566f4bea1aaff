#include "switchboard/client/publish_stream.h"

#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "bidi_stream_reactor.h"
#include "status_conversion.h"

namespace switchboard::client {

class PublishStream::Impl
    : public internal::BidiStreamReactor<v1::PublishStreamRequest, v1::PublishStreamResponse> {
 public:
  explicit Impl(const Client& client) : BidiStreamReactor(client), client_(client) {
    Start([&client](grpc::ClientContext* context, Reactor* reactor) {
      client.broker().async()->PublishStream(context, reactor);
    });
  }

  const Client& client() const { return client_; }

  absl::Status Send(const std::string& topic, std::vector<v1::OutgoingMessage>&& messages,
                    DoneCallback&& done) {
    absl::MutexLock lock(&mu_);
    if (!accepting_writes()) {
      return absl::FailedPreconditionError("the PublishStream is closed or has ended");
    }
    v1::PublishStreamRequest& request = queue_.emplace_back();
    request.set_request_id(next_request_id_++);
    request.set_topic(topic);
    for (v1::OutgoingMessage& message : messages) {
      *request.add_messages() = std::move(message);
    }
    pending_.emplace(request.request_id(), std::move(done));
    MaybeStartWriteLocked();
    return absl::OkStatus();
  }

 private:
  bool TakeNextWrite(v1::PublishStreamRequest& request) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (queue_.empty()) return false;
    request = std::move(queue_.front());
    queue_.pop_front();
    return true;
  }

  void HandleResponse(v1::PublishStreamResponse& response) override {
    DoneCallback done;
    {
      absl::MutexLock lock(&mu_);
      auto it = pending_.find(response.request_id());
      // The server echoes our own ids; anything else is not ours to answer.
      if (it == pending_.end()) return;
      done = std::move(it->second);
      pending_.erase(it);
    }
    if (response.has_error()) {
      done(internal::FromErrorStatus(response.error()));
    } else {
      done(
          std::vector<std::string>(std::make_move_iterator(response.mutable_message_ids()->begin()),
                                   std::make_move_iterator(response.mutable_message_ids()->end())));
    }
  }

  void HandleDone(const absl::Status& status) override {
    absl::flat_hash_map<uint64_t, DoneCallback> unanswered;
    {
      absl::MutexLock lock(&mu_);
      unanswered.swap(pending_);
      queue_.clear();
    }
    for (auto& [request_id, done] : unanswered) {
      done(status.ok()
               ? absl::UnavailableError(absl::StrCat("the PublishStream ended before request ",
                                                     request_id, " was answered"))
               : status);
    }
  }

  const Client& client_;
  std::deque<v1::PublishStreamRequest> queue_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, DoneCallback> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t next_request_id_ ABSL_GUARDED_BY(mu_) = 1;
};

PublishStream::PublishStream(const Client& client) : impl_(std::make_unique<Impl>(client)) {}

PublishStream::~PublishStream() {
  impl_->Cancel();
  impl_->Wait().IgnoreError();
}

absl::Status PublishStream::Send(const std::string& topic,
                                 std::vector<v1::OutgoingMessage>&& messages, DoneCallback&& done) {
  return impl_->Send(topic, std::move(messages), std::move(done));
}

absl::Status PublishStream::Close() {
  impl_->CloseWrites();
  if (!impl_->WaitWithTimeout(impl_->client().options().rpc_timeout)) impl_->Cancel();
  return impl_->Wait();
}

}  // namespace switchboard::client
