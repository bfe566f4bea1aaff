#include "status_conversion.h"

namespace switchboard::client::internal {

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::Status FromErrorStatus(const v1::ErrorStatus& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.code()), status.message());
}

}  // namespace switchboard::client::internal
