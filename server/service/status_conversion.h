// Conversion between absl::Status (used everywhere inside Switchboard) and
// the gRPC wire forms. This is the one place where the two meet.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::service {

grpc::Status ToGrpcStatus(const absl::Status& status);

// For errors reported inside a stream response.
v1::ErrorStatus ToErrorStatus(const absl::Status& status);

// "INVALID_ARGUMENT" etc., for metric labels.
std::string StatusCodeName(absl::StatusCode code);

}  // namespace switchboard::service
