// What every RPC handler (Broker and Rpc services) needs, bundled so
// reactors take one reference. Owned by server/app, which keeps it alive until every RPC has
// ended (gRPC server shutdown completes before it is destroyed).
#pragma once

#include <grpcpp/server_context.h>

#include <string>

#include "absl/status/statusor.h"
#include "server/auth/client_registry.h"
#include "server/broker/broker.h"
#include "server/metrics/metrics.h"
#include "server/service/request_validation.h"
#include "server/service/stream_status.h"
#include "server/service/stream_tracker.h"
#include "server/subscriptions/subscriptions.h"
#include "server/upstream/upstream_proxy.h"

namespace switchboard::service {

struct ServiceContext {
  broker::Broker& broker;
  upstream::UpstreamProxy& upstreams;
  subscriptions::Subscriptions& subscriptions;
  const auth::ClientRegistry& clients;
  metrics::Metrics& metrics;
  StreamTracker& streams;
  StreamStatusObserver& stream_status;
  RequestLimits limits;
  // This replica's name in the fleet (empty without global limits).
  std::string replica_id;
};

// Identifies the caller from its `authorization` metadata.
absl::StatusOr<auth::ClientIdentity> AuthenticateCall(const ServiceContext& context,
                                                      const grpc::CallbackServerContext& call);

// Fails with PERMISSION_DENIED, naming `field`, when `client` may not use
// `topic`.
absl::Status CheckTopicAllowed(const auth::ClientIdentity& client, absl::string_view topic,
                               absl::string_view field);

}  // namespace switchboard::service
