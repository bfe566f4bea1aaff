// The reactor of one Rpc.Subscribe stream: a provider subscription's
// NotificationSink that writes each notification to the worker, one write
// in flight. Like the Broker's SubscribeReactor (subscribe_reactor.h), it
// holds at most one more notification and asks the hub for the next as soon
// as that slot empties into a write; the hub's bounded buffer and overflow
// policy absorb a slow worker, never this reactor.
//
// Created by RpcService::Subscribe; deletes itself in OnDone after
// destroying its handle (no sink callback runs after that). Initial
// metadata goes out once the provider accepted the subscription.
#pragma once

#include <grpcpp/support/server_callback.h>

#include <memory>

#include "server/service/service_context.h"
#include "server/service/stream_registration.h"
#include "server/service/stream_writer.h"
#include "server/subscriptions/subscriptions.h"
#include "switchboard/v1/rpc.pb.h"

namespace switchboard::service {

class RpcSubscribeReactor final
    : public StreamWriter<grpc::ServerWriteReactor<v1::RpcNotification>, v1::RpcNotification>,
      public subscriptions::NotificationSink,
      public DrainableStream {
 public:
  RpcSubscribeReactor(ServiceContext& context, grpc::CallbackServerContext& call,
                      const v1::RpcSubscribeRequest& request);

  // grpc::ServerWriteReactor.
  void OnDone() override;

  // subscriptions::NotificationSink, on the hub's dispatcher thread.
  void OnSubscribed() override;
  void OnNotification(std::shared_ptr<const subscriptions::Notification> notification,
                      uint64_t dropped_since_last) override;
  void OnEnded(absl::Status status) override;

  // DrainableStream.
  void Drain() override;

 private:
  bool TakeNextResponseLocked(v1::RpcNotification& response) override;
  void OnWriteCompleted() override;
  // Tells the hub the sink can take the next notification, once per
  // notification that left `pending_` for a write. Called without `mu_`.
  void ReadyIfTaken();

  ServiceContext& context_;
  StreamRegistration registration_;
  std::unique_ptr<subscriptions::SubscriptionHandle> handle_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const subscriptions::Notification> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t pending_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // A notification left `pending_` for a write and the hub was not told.
  bool pending_taken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace switchboard::service
