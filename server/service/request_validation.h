// Validation of Broker requests, before anything reaches the broker.
//
// Every error is INVALID_ARGUMENT (or the more specific code named below)
// and starts with the path of the offending field, in the proto's own names:
// "messages[3].payload: ...". Used by the reactors in this folder.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "google/protobuf/repeated_field.h"
#include "server/broker/broker.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::service {

// Request bounds chosen by configuration (`limits:`).
struct RequestLimits {
  uint64_t max_message_bytes = 1 << 20;  // Payload plus attribute keys and values.
  uint32_t max_batch_messages = 1000;
  uint32_t max_lease_updates = 10000;  // Acks + nacks + extensions in one ConsumeRequest.
};

inline constexpr uint32_t kMaxInFlightLimit = 10000;
inline constexpr uint32_t kMinAckDeadlineMs = 1000;
inline constexpr uint32_t kMaxAckDeadlineMs = 600000;
inline constexpr uint32_t kMaxNackDelayMs = 3600000;  // broker::kMaxNackDelay.

// Checks a batch and converts it into the broker's form. PublishRequest and
// PublishStreamRequest name the fields alike: `topic`, `messages`.
absl::StatusOr<std::vector<broker::OutgoingMessage>> ValidatePublishBatch(
    absl::string_view topic,
    const google::protobuf::RepeatedPtrField<v1::OutgoingMessage>& messages,
    const RequestLimits& limits);

// Checks the first request of a Consume stream.
absl::StatusOr<broker::ConsumeOptions> ValidateConsumeSubscription(
    const v1::ConsumeRequest& request);

// A lease update split into the items worth sending to the broker and the
// items already refused here, with field paths for both.
struct ValidatedLeaseUpdate {
  broker::LeaseUpdate update;
  // Field path of each item in `update`, index-aligned with its vectors.
  std::vector<std::string> ack_fields;
  std::vector<std::string> nack_fields;
  std::vector<std::string> extension_fields;
  // Items refused before reaching the broker.
  std::vector<v1::AckFailure> failures;
};

// Checks the acks, nacks and extensions of a later Consume request. Fails as
// a whole only when the request is malformed as a whole (a repeated
// subscription, too many items).
absl::StatusOr<ValidatedLeaseUpdate> ValidateLeaseUpdate(const v1::ConsumeRequest& request,
                                                         const RequestLimits& limits);

}  // namespace switchboard::service
