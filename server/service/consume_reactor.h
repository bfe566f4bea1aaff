// The reactor of one Consume stream: the bridge between a client's
// StreamingPull-style stream and a broker ConsumerSession.
//
// The first request opens the session; once it is open the stream sends its
// initial metadata, so a client knows it is live before the first delivery.
// Later ones carry acks, nacks and extensions, settled one request at a time
// (the next read starts when the broker has answered the previous one, and
// while refused items wait to be written, so a client that floods bad acks
// without reading is back-pressured). Deliveries queue here until written;
// the session never hands out more than max_in_flight leases, which bounds
// that queue.
//
// Created by BrokerService::Consume; deletes itself in OnDone after
// destroying its session, which releases every lease still held at once.
#pragma once

#include <grpcpp/support/server_callback.h>

#include <deque>
#include <memory>
#include <vector>

#include "server/service/request_validation.h"
#include "server/service/service_context.h"
#include "server/service/stream_registration.h"
#include "server/service/stream_writer.h"

namespace switchboard::service {

class ConsumeReactor final
    : public StreamWriter<grpc::ServerBidiReactor<v1::ConsumeRequest, v1::ConsumeResponse>,
                          v1::ConsumeResponse>,
      public broker::ConsumerSink,
      public DrainableStream {
 public:
  ConsumeReactor(ServiceContext& context, grpc::CallbackServerContext& call);

  // grpc::ServerBidiReactor.
  void OnReadDone(bool ok) override;
  void OnDone() override;

  // broker::ConsumerSink, on a dispatcher thread.
  void OnDeliveries(std::vector<broker::Delivery> deliveries) override;
  void OnClosed(absl::Status status) override;

  // DrainableStream.
  void Drain() override;

 private:
  // Most deliveries packed into one response.
  static constexpr size_t kMaxDeliveriesPerResponse = 256;
  // Refused items waiting to be written before reading pauses.
  static constexpr size_t kMaxQueuedFailures = 10000;

  bool TakeNextResponseLocked(v1::ConsumeResponse& response) override;
  void OnWriteCompleted() override;
  void OnFinishing(const grpc::Status& status) override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    registration_.Finished(status.error_code());
  }

  // Both run on the gRPC thread of OnReadDone, without `mu_`.
  absl::Status OpenSession();
  absl::Status SettleRequest();
  void OnSettled(ValidatedLeaseUpdate validated, broker::LeaseUpdateResult result);
  // Starts the next read unless one is pending or reading is paused.
  void MaybeReadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishWithError(const absl::Status& status);

  ServiceContext& context_;
  StreamRegistration registration_;
  std::optional<auth::ClientIdentity> client_;
  v1::ConsumeRequest request_;  // Owned by the read in flight.
  metrics::TopicMetrics* topic_metrics_ = nullptr;
  // Set once, on the first read; destroyed in OnDone.
  std::unique_ptr<broker::ConsumerSession> session_;

  // The session is open and the initial metadata on their way; no write
  // starts before.
  bool joined_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<broker::Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::AckFailure> failures_ ABSL_GUARDED_BY(mu_);
  // A read is pending, or its request is still being handled.
  bool read_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool settle_in_flight_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace switchboard::service
