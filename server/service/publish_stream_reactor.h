// The reactor of one PublishStream: pipelined publishing where each request
// is answered by one response carrying its request_id, in completion order.
//
// At most kMaxOutstanding requests are being published or waiting to be
// answered; reading pauses at that bound, so a client that publishes faster
// than the broker stores is back-pressured through gRPC flow control.
// Broker completions are not tied to a cancellable handle, so the reactor
// deletes itself only once OnDone has run AND no publish is outstanding.
#pragma once

#include <grpcpp/support/server_callback.h>

#include <deque>

#include "server/service/service_context.h"
#include "server/service/stream_registration.h"
#include "server/service/stream_writer.h"

namespace switchboard::service {

class PublishStreamReactor final
    : public StreamWriter<
          grpc::ServerBidiReactor<v1::PublishStreamRequest, v1::PublishStreamResponse>,
          v1::PublishStreamResponse>,
      public DrainableStream {
 public:
  PublishStreamReactor(ServiceContext& context, grpc::CallbackServerContext& call);

  // grpc::ServerBidiReactor.
  void OnReadDone(bool ok) override;
  void OnDone() override;

  // DrainableStream: stops reading, answers what is outstanding, then ends
  // with UNAVAILABLE.
  void Drain() override;

 private:
  static constexpr size_t kMaxOutstanding = 256;

  bool TakeNextResponseLocked(v1::PublishStreamResponse& response) override;
  void OnWriteCompleted() override;

  // Hands a validated batch to the broker. Called without `mu_`.
  void StartPublish(uint64_t request_id, std::string topic,
                    std::vector<broker::OutgoingMessage> batch,
                    metrics::TopicMetrics& topic_metrics);
  void OnPublished(uint64_t request_id, absl::StatusOr<std::vector<std::string>> ids);
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // True when nothing can call into the reactor any more.
  bool DeletableLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return done_ && publishing_ == 0;
  }

  ServiceContext& context_;
  StreamRegistration registration_;
  std::optional<auth::ClientIdentity> client_;
  v1::PublishStreamRequest request_;  // Owned by the read in flight.

  std::deque<v1::PublishStreamResponse> responses_ ABSL_GUARDED_BY(mu_);
  size_t publishing_ ABSL_GUARDED_BY(mu_) = 0;  // Handed to the broker, not yet answered.
  // A read is pending, or its request is still being handled.
  bool read_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace switchboard::service
