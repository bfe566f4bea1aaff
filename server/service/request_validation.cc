#include "server/service/request_validation.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"
#include "server/service/status_conversion.h"

namespace switchboard::service {
namespace {

static_assert(absl::Milliseconds(kMaxNackDelayMs) == broker::kMaxNackDelay);

v1::AckFailure MakeFailure(const std::string& ack_id, const std::string& field,
                           absl::string_view problem) {
  v1::AckFailure failure;
  failure.set_ack_id(ack_id);
  *failure.mutable_status() =
      ToErrorStatus(absl::InvalidArgumentError(absl::StrCat(field, ": ", problem)));
  return failure;
}

// 1 to kMaxDedupIdBytes printable ASCII characters without spaces, or none.
absl::Status ValidateDedupId(const std::string& dedup_id, int index) {
  if (dedup_id.size() > broker::kMaxDedupIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("messages[", index, "].dedup_id: ", dedup_id.size(),
                     " bytes exceeds the limit of ", broker::kMaxDedupIdBytes));
  }
  for (size_t c = 0; c < dedup_id.size(); ++c) {
    if (dedup_id[c] <= ' ' || dedup_id[c] > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", index, "].dedup_id: character ", c,
                       " is not printable ASCII (spaces and control characters are not allowed)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<broker::OutgoingMessage>> ValidatePublishBatch(
    absl::string_view topic,
    const google::protobuf::RepeatedPtrField<v1::OutgoingMessage>& messages,
    const RequestLimits& limits) {
  if (absl::Status status = common::ValidateTopicName(topic, "topic"); !status.ok()) return status;
  if (messages.empty()) {
    return absl::InvalidArgumentError("messages: must hold at least one message");
  }
  if (static_cast<uint32_t>(messages.size()) > limits.max_batch_messages) {
    return absl::InvalidArgumentError(absl::StrCat("messages: ", messages.size(),
                                                   " messages exceeds the batch limit of ",
                                                   limits.max_batch_messages));
  }
  std::vector<broker::OutgoingMessage> batch;
  batch.reserve(messages.size());
  for (int i = 0; i < messages.size(); ++i) {
    const v1::OutgoingMessage& message = messages[i];
    const uint64_t payload_bytes = message.payload().size();
    if (static_cast<size_t>(message.attributes().size()) > broker::kMaxAttributes) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].attributes: ", message.attributes().size(),
                       " attributes exceed the limit of ", broker::kMaxAttributes));
    }
    uint64_t attribute_bytes = 0;
    for (const auto& [key, value] : message.attributes()) {
      if (key.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("messages[", i, "].attributes: keys must not be empty"));
      }
      attribute_bytes += key.size() + value.size();
    }
    if (message.ordering_key().size() > broker::kMaxOrderingKeyBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].ordering_key: ", message.ordering_key().size(),
                       " bytes exceeds the limit of ", broker::kMaxOrderingKeyBytes));
    }
    // The error names the field that took the message past the limit: the
    // payload when it is too large alone, else the attributes added to it,
    // else the ordering key.
    if (payload_bytes > limits.max_message_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].payload: ", payload_bytes, " bytes exceeds the ",
                       limits.max_message_bytes, "-byte message limit"));
    }
    if (payload_bytes + attribute_bytes > limits.max_message_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", i, "].attributes: ", attribute_bytes, " bytes of keys and values with the ",
          payload_bytes, "-byte payload exceed the ", limits.max_message_bytes,
          "-byte message limit"));
    }
    const uint64_t key_bytes = message.ordering_key().size();
    if (payload_bytes + attribute_bytes + key_bytes > limits.max_message_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", i, "].ordering_key: ", key_bytes, " bytes with the ",
          payload_bytes + attribute_bytes, " bytes of payload and attributes exceed the ",
          limits.max_message_bytes, "-byte message limit"));
    }
    SB_RETURN_IF_ERROR(ValidateDedupId(message.dedup_id(), i));
    batch.push_back(broker::OutgoingMessage{
        message.payload(),
        broker::Attributes(message.attributes().begin(), message.attributes().end()),
        message.ordering_key(), message.dedup_id()});
  }
  return batch;
}

absl::StatusOr<broker::ConsumeOptions> ValidateConsumeSubscription(
    const v1::ConsumeRequest& request) {
  if (!request.has_subscription()) {
    return absl::InvalidArgumentError(
        "subscription: the first request of a Consume stream must carry it");
  }
  if (!request.ack_ids().empty() || !request.nack_ids().empty() || !request.extensions().empty()) {
    return absl::InvalidArgumentError(
        "ack_ids: the first request of a Consume stream carries only the subscription");
  }
  const v1::ConsumeSubscription& subscription = request.subscription();
  if (absl::Status status = common::ValidateTopicName(subscription.topic(), "subscription.topic");
      !status.ok()) {
    return status;
  }
  if (absl::Status status = common::ValidateGroupName(subscription.group(), "subscription.group");
      !status.ok()) {
    return status;
  }
  if (subscription.max_in_flight() < 1 || subscription.max_in_flight() > kMaxInFlightLimit) {
    return absl::InvalidArgumentError(absl::StrCat("subscription.max_in_flight: must be 1 to ",
                                                   kMaxInFlightLimit, ", got ",
                                                   subscription.max_in_flight()));
  }
  const uint32_t deadline_ms = subscription.ack_deadline_ms();
  if (deadline_ms != 0 && (deadline_ms < kMinAckDeadlineMs || deadline_ms > kMaxAckDeadlineMs)) {
    return absl::InvalidArgumentError(
        absl::StrCat("subscription.ack_deadline_ms: must be 0 (topic default) or ",
                     kMinAckDeadlineMs, " to ", kMaxAckDeadlineMs, ", got ", deadline_ms));
  }
  broker::ConsumeOptions options;
  options.topic = subscription.topic();
  options.group = subscription.group();
  options.max_in_flight = subscription.max_in_flight();
  options.ack_deadline = absl::Milliseconds(deadline_ms);
  return options;
}

absl::StatusOr<ValidatedLeaseUpdate> ValidateLeaseUpdate(const v1::ConsumeRequest& request,
                                                         const RequestLimits& limits) {
  if (request.has_subscription()) {
    return absl::InvalidArgumentError(
        "subscription: only the first request of a Consume stream may carry it");
  }
  const size_t items = static_cast<size_t>(request.ack_ids_size()) + request.nack_ids_size() +
                       request.extensions_size() + request.nacks_size();
  if (items > limits.max_lease_updates) {
    return absl::InvalidArgumentError(absl::StrCat("ack_ids: ", items,
                                                   " acks, nacks and extensions exceed the "
                                                   "per-request limit of ",
                                                   limits.max_lease_updates));
  }
  ValidatedLeaseUpdate result;
  for (int i = 0; i < request.ack_ids_size(); ++i) {
    std::string field = absl::StrCat("ack_ids[", i, "]");
    if (request.ack_ids(i).empty()) {
      result.failures.push_back(MakeFailure(request.ack_ids(i), field, "must not be empty"));
      continue;
    }
    result.update.acks.push_back(request.ack_ids(i));
    result.ack_fields.push_back(std::move(field));
  }
  for (int i = 0; i < request.nack_ids_size(); ++i) {
    std::string field = absl::StrCat("nack_ids[", i, "]");
    if (request.nack_ids(i).empty()) {
      result.failures.push_back(MakeFailure(request.nack_ids(i), field, "must not be empty"));
      continue;
    }
    result.update.nacks.push_back({request.nack_ids(i), absl::ZeroDuration()});
    result.nack_fields.push_back(std::move(field));
  }
  for (int i = 0; i < request.nacks_size(); ++i) {
    const v1::Nack& nack = request.nacks(i);
    if (nack.ack_id().empty()) {
      result.failures.push_back(
          MakeFailure(nack.ack_id(), absl::StrCat("nacks[", i, "].ack_id"), "must not be empty"));
      continue;
    }
    if (nack.delay_ms() > kMaxNackDelayMs) {
      result.failures.push_back(
          MakeFailure(nack.ack_id(), absl::StrCat("nacks[", i, "].delay_ms"),
                      absl::StrCat("must be 0 to ", kMaxNackDelayMs, ", got ", nack.delay_ms())));
      continue;
    }
    result.update.nacks.push_back({nack.ack_id(), absl::Milliseconds(nack.delay_ms())});
    result.nack_fields.push_back(absl::StrCat("nacks[", i, "]"));
  }
  for (int i = 0; i < request.extensions_size(); ++i) {
    const v1::DeadlineExtension& extension = request.extensions(i);
    if (extension.ack_id().empty()) {
      result.failures.push_back(MakeFailure(
          extension.ack_id(), absl::StrCat("extensions[", i, "].ack_id"), "must not be empty"));
      continue;
    }
    if (extension.deadline_ms() > kMaxAckDeadlineMs) {
      result.failures.push_back(MakeFailure(
          extension.ack_id(), absl::StrCat("extensions[", i, "].deadline_ms"),
          absl::StrCat("must be 0 to ", kMaxAckDeadlineMs, ", got ", extension.deadline_ms())));
      continue;
    }
    result.update.extensions.push_back(
        {extension.ack_id(), absl::Milliseconds(extension.deadline_ms())});
    result.extension_fields.push_back(absl::StrCat("extensions[", i, "]"));
  }
  return result;
}

}  // namespace switchboard::service
