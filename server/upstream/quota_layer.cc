#include "server/upstream/quota_layer.h"

#include <optional>
#include <utility>

namespace switchboard::upstream {

QuotaLayer::QuotaLayer(absl::string_view upstream, ratelimit::ClientQuotas& quotas,
                       UpstreamObserver& observer, CallLayer& next)
    : upstream_(upstream), quotas_(quotas), observer_(observer), next_(next) {}

void QuotaLayer::Start(CallId id, LayerCall call, OutcomeCallback done) {
  std::optional<ratelimit::AdmissionResult> quota = quotas_.TryAcquire(
      call.call.client_id,
      [this, id](ratelimit::AdmissionResult result) { OnQuota(id, std::move(result)); });
  if (!quota.has_value()) {
    waiting_.emplace(id, WaitingCall{std::move(call), std::move(done)});
    return;
  }
  if (!quota->status.ok()) {
    done(CallOutcome{OverQuota(*quota)});
    return;
  }
  next_.Start(id, std::move(call), std::move(done));
}

void QuotaLayer::OnQuota(CallId id, ratelimit::AdmissionResult result) {
  auto it = waiting_.find(id);
  if (it == waiting_.end()) return;  // Cancelled.
  WaitingCall waiting = std::move(it->second);
  waiting_.erase(it);
  if (!result.status.ok()) {
    waiting.done(CallOutcome{OverQuota(result)});
    return;
  }
  next_.Start(id, std::move(waiting.call), std::move(waiting.done));
}

absl::Status QuotaLayer::OverQuota(const ratelimit::AdmissionResult& refusal) {
  observer_.OnRejected(upstream_, "client_quota");
  return WithRetryAfter(refusal.status, refusal.retry_after);
}

void QuotaLayer::Cancel(CallId id) {
  auto it = waiting_.find(id);
  if (it == waiting_.end()) {
    next_.Cancel(id);
    return;
  }
  OutcomeCallback done = std::move(it->second.done);
  waiting_.erase(it);
  done(CallOutcome{absl::CancelledError("the call was cancelled")});
}

}  // namespace switchboard::upstream
