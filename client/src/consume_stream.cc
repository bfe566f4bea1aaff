#include "switchboard/client/consume_stream.h"

#include <algorithm>
#include <utility>

#include "bidi_stream_reactor.h"

namespace switchboard::client {

class ConsumeStream::Impl
    : public internal::BidiStreamReactor<v1::ConsumeRequest, v1::ConsumeResponse> {
 public:
  Impl(const Client& client, v1::ConsumeSubscription subscription, ResponseHandler on_response,
       DoneHandler on_done)
      : BidiStreamReactor(client),
        on_response_(std::move(on_response)),
        on_done_(std::move(on_done)) {
    absl::MutexLock lock(&mu_);
    *next_request_.mutable_subscription() = std::move(subscription);
    has_next_request_ = true;
  }

  void Start(const Client& client) {
    BidiStreamReactor::Start([&client](grpc::ClientContext* context, Reactor* reactor) {
      client.broker().async()->Consume(context, reactor);
    });
    absl::MutexLock lock(&mu_);
    MaybeStartWriteLocked();
  }

  // Adds to the next request through `add`, unless the stream is closing.
  template <typename Add>
  void Queue(Add add) {
    absl::MutexLock lock(&mu_);
    if (!accepting_writes()) return;
    add(next_request_);
    has_next_request_ = true;
    MaybeStartWriteLocked();
  }

 private:
  bool TakeNextWrite(v1::ConsumeRequest& request) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!has_next_request_) return false;
    request = std::move(next_request_);
    next_request_.Clear();
    has_next_request_ = false;
    return true;
  }

  void HandleResponse(v1::ConsumeResponse& response) override { on_response_(response); }

  void HandleDone(const absl::Status& status) override { on_done_(status); }

  const ResponseHandler on_response_;
  const DoneHandler on_done_;
  v1::ConsumeRequest next_request_ ABSL_GUARDED_BY(mu_);
  bool has_next_request_ ABSL_GUARDED_BY(mu_) = false;
};

ConsumeStream::ConsumeStream(const Client& client, v1::ConsumeSubscription subscription,
                             ResponseHandler on_response, DoneHandler on_done)
    : impl_(std::make_unique<Impl>(client, std::move(subscription), std::move(on_response),
                                   std::move(on_done))) {
  // Only now, so that the handlers may use this object from the first response on.
  impl_->Start(client);
}

ConsumeStream::~ConsumeStream() {
  impl_->Cancel();
  impl_->Wait().IgnoreError();
}

void ConsumeStream::Ack(std::string ack_id) {
  impl_->Queue([&](v1::ConsumeRequest& request) { request.add_ack_ids(std::move(ack_id)); });
}

void ConsumeStream::Nack(std::string ack_id) {
  impl_->Queue([&](v1::ConsumeRequest& request) { request.add_nack_ids(std::move(ack_id)); });
}

void ConsumeStream::Nack(std::string ack_id, absl::Duration delay) {
  impl_->Queue([&](v1::ConsumeRequest& request) {
    v1::Nack& nack = *request.add_nacks();
    nack.set_ack_id(std::move(ack_id));
    nack.set_delay_ms(
        static_cast<uint32_t>(absl::ToInt64Milliseconds(std::max(delay, absl::ZeroDuration()))));
  });
}

void ConsumeStream::Close() { impl_->CloseWrites(); }

void ConsumeStream::Cancel() { impl_->Cancel(); }

absl::Status ConsumeStream::Wait() { return impl_->Wait(); }

bool ConsumeStream::WaitWithTimeout(absl::Duration timeout) {
  return impl_->WaitWithTimeout(timeout);
}

bool ConsumeStream::was_live() const { return impl_->was_live(); }

}  // namespace switchboard::client
