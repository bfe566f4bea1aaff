// The one place where the client library turns the server's wire statuses
// into absl::Status. Used by every stream and call in client/src.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client::internal {

// A gRPC call's final status. The codes are the same numbers in both worlds.
absl::Status FromGrpcStatus(const grpc::Status& status);

// An error reported inside a stream response (PublishStreamResponse.error,
// AckFailure.status).
absl::Status FromErrorStatus(const v1::ErrorStatus& status);

}  // namespace switchboard::client::internal
