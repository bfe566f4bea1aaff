#include "server/service/consume_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"
#include "server/service/message_conversion.h"
#include "server/service/status_conversion.h"

namespace switchboard::service {
namespace {

// Adds the refused items of one vector of a LeaseUpdate to `failures`, and
// returns how many succeeded.
size_t CollectFailures(const std::vector<std::string>& ack_ids,
                       const std::vector<std::string>& fields,
                       const std::vector<absl::Status>& results,
                       std::vector<v1::AckFailure>& failures) {
  size_t succeeded = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].ok()) {
      ++succeeded;
      continue;
    }
    v1::AckFailure& failure = failures.emplace_back();
    failure.set_ack_id(ack_ids[i]);
    *failure.mutable_status() = ToErrorStatus(
        absl::Status(results[i].code(), absl::StrCat(fields[i], ": ", results[i].message())));
  }
  return succeeded;
}

// The ack ids of a LeaseUpdate's nacks or extensions.
template <typename Items>
std::vector<std::string> AckIdsOf(const Items& items) {
  std::vector<std::string> ids;
  ids.reserve(items.size());
  for (const auto& item : items) ids.push_back(item.ack_id);
  return ids;
}

}  // namespace

ConsumeReactor::ConsumeReactor(ServiceContext& context, grpc::CallbackServerContext& call)
    : context_(context), registration_(context, metrics::StreamMethod::kConsume, *this) {
  absl::StatusOr<auth::ClientIdentity> client = registration_.Open(call);
  if (!client.ok()) {
    FinishWithError(client.status());
    return;
  }
  client_ = *std::move(client);
  StreamLock lock(*this);
  MaybeReadLocked();
}

void ConsumeReactor::MaybeReadLocked() {
  if (read_in_flight_ || settle_in_flight_ || finishing() ||
      failures_.size() >= kMaxQueuedFailures) {
    return;
  }
  read_in_flight_ = true;
  StartRead(&request_);
}

void ConsumeReactor::OnReadDone(bool ok) {
  if (!ok) {  // The client half-closed: the stream is over.
    StreamLock lock(*this);
    read_in_flight_ = false;
    RequestFinishLocked(grpc::Status::OK);
    return;
  }
  // read_in_flight_ stays set until request_ is handled, so no other thread
  // starts the next read into it.
  const bool opening = session_ == nullptr;
  const absl::Status status = opening ? OpenSession() : SettleRequest();
  if (!status.ok()) {
    FinishWithError(status);
    return;
  }
  StreamLock lock(*this);
  if (opening) {
    // Joined: the client learns the stream is live now, not at the first
    // delivery. Deliveries that came first waited for this (the metadata
    // must go before any write), and may go now.
    joined_ = true;
    if (!finishing()) StartSendInitialMetadata();
    MaybeWriteLocked();
  }
  read_in_flight_ = false;
  MaybeReadLocked();
}

absl::Status ConsumeReactor::OpenSession() {
  absl::StatusOr<broker::ConsumeOptions> options = ValidateConsumeSubscription(request_);
  if (!options.ok()) return options.status();
  if (absl::Status allowed = CheckTopicAllowed(*client_, options->topic, "subscription.topic");
      !allowed.ok()) {
    return allowed;
  }
  topic_metrics_ = &context_.metrics.ForTopic(options->topic);
  absl::StatusOr<std::unique_ptr<broker::ConsumerSession>> session =
      context_.broker.Consume(*std::move(options), *this);
  if (!session.ok()) return session.status();
  session_ = *std::move(session);
  return absl::OkStatus();
}

absl::Status ConsumeReactor::SettleRequest() {
  SB_ASSIGN_OR_RETURN(ValidatedLeaseUpdate validated,
                      ValidateLeaseUpdate(request_, context_.limits));
  const broker::LeaseUpdate& update = validated.update;
  const bool nothing_to_settle =
      update.acks.empty() && update.nacks.empty() && update.extensions.empty();
  broker::LeaseUpdate to_broker = update;
  {
    StreamLock lock(*this);
    for (v1::AckFailure& failure : validated.failures) failures_.push_back(std::move(failure));
    validated.failures.clear();
    if (nothing_to_settle) {
      MaybeWriteLocked();
      return absl::OkStatus();
    }
    settle_in_flight_ = true;
  }
  // The session runs the callback on a dispatcher thread, and never after it
  // is destroyed in OnDone.
  session_->Settle(std::move(to_broker), [this, validated = std::move(validated)](
                                             broker::LeaseUpdateResult result) mutable {
    OnSettled(std::move(validated), std::move(result));
  });
  return absl::OkStatus();
}

void ConsumeReactor::OnSettled(ValidatedLeaseUpdate validated, broker::LeaseUpdateResult result) {
  StreamLock lock(*this);
  settle_in_flight_ = false;
  const broker::LeaseUpdate& update = validated.update;
  topic_metrics_->acks.Increment(static_cast<double>(
      CollectFailures(update.acks, validated.ack_fields, result.acks, failures_)));
  topic_metrics_->nacks.Increment(static_cast<double>(
      CollectFailures(AckIdsOf(update.nacks), validated.nack_fields, result.nacks, failures_)));
  CollectFailures(AckIdsOf(update.extensions), validated.extension_fields, result.extensions,
                  failures_);
  MaybeWriteLocked();
  MaybeReadLocked();
}

void ConsumeReactor::OnDeliveries(std::vector<broker::Delivery> deliveries) {
  StreamLock lock(*this);
  for (broker::Delivery& delivery : deliveries) deliveries_.push_back(std::move(delivery));
  MaybeWriteLocked();
}

bool ConsumeReactor::TakeNextResponseLocked(v1::ConsumeResponse& response) {
  if (!joined_ || (deliveries_.empty() && failures_.empty())) return false;
  const size_t count = std::min(deliveries_.size(), kMaxDeliveriesPerResponse);
  for (size_t i = 0; i < count; ++i) {
    broker::Delivery& delivery = deliveries_.front();
    v1::Delivery& out = *response.add_deliveries();
    out.set_ack_id(std::move(delivery.ack_id));
    out.set_delivery_attempt(static_cast<int32_t>(delivery.delivery_attempt));
    ToReceivedMessage(std::move(delivery.message), *out.mutable_message());
    deliveries_.pop_front();
  }
  if (count > 0) topic_metrics_->delivered.Increment(static_cast<double>(count));
  for (v1::AckFailure& failure : failures_) *response.add_ack_failures() = std::move(failure);
  failures_.clear();
  return true;
}

void ConsumeReactor::OnWriteCompleted() {
  StreamLock lock(*this);
  MaybeReadLocked();  // Reading may have paused on queued failures.
}

void ConsumeReactor::OnClosed(absl::Status status) {
  StreamLock lock(*this);
  RequestFinishLocked(ToGrpcStatus(status));
}

void ConsumeReactor::Drain() {
  StreamLock lock(*this);
  RequestFinishLocked(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down; reconnect elsewhere"));
}

void ConsumeReactor::FinishWithError(const absl::Status& status) {
  context_.metrics.CountRejected("Consume", StatusCodeName(status.code()));
  StreamLock lock(*this);
  RequestFinishLocked(ToGrpcStatus(status));
}

void ConsumeReactor::OnDone() {
  session_.reset();  // Releases every lease still held; no callback after this.
  AwaitLockedSections();
  delete this;
}

}  // namespace switchboard::service
