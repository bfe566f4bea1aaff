// The reactor of one Subscribe stream: a broker SubscriberSink that writes
// each message to the client, one write in flight. It holds at most one more
// message, in `pending_`, and asks the broker for the next one as soon as
// that slot empties into a write, so the broker's hand-over overlaps the
// write in flight instead of following it; the broker's bounded buffer and
// overflow policy still absorb a slow client, never this reactor.
//
// Created by BrokerService::Subscribe; deletes itself in OnDone after
// destroying its Subscription (no broker callback runs after that).
// Initial metadata goes out once the subscription is live, so a client that
// waits for it knows later publishes will reach it.
#pragma once

#include <grpcpp/support/server_callback.h>

#include <memory>
#include <optional>

#include "server/service/service_context.h"
#include "server/service/stream_registration.h"
#include "server/service/stream_writer.h"

namespace switchboard::service {

class SubscribeReactor final
    : public StreamWriter<grpc::ServerWriteReactor<v1::SubscribeResponse>, v1::SubscribeResponse>,
      public broker::SubscriberSink,
      public DrainableStream {
 public:
  SubscribeReactor(ServiceContext& context, grpc::CallbackServerContext& call,
                   const v1::SubscribeRequest& request);

  // grpc::ServerWriteReactor.
  void OnDone() override;

  // broker::SubscriberSink, on a dispatcher thread.
  void OnSubscribed() override;
  void OnMessage(broker::Message message, uint64_t dropped_since_last) override;
  void OnClosed(absl::Status status) override;

  // DrainableStream.
  void Drain() override;

 private:
  bool TakeNextResponseLocked(v1::SubscribeResponse& response) override;
  void OnWriteCompleted() override;
  // Tells the broker the sink can take the next message, once per message
  // that left `pending_` for a write. Called without `mu_`.
  void ReadyIfTaken();

  ServiceContext& context_;
  StreamRegistration registration_;
  // Deliveries are counted under the subscribed topic or pattern ("news.*"),
  // resolved once per stream.
  metrics::TopicMetrics* topic_metrics_ = nullptr;
  std::unique_ptr<broker::Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  std::optional<broker::Message> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // A message left `pending_` for a write and the broker was not told yet.
  bool pending_taken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace switchboard::service
