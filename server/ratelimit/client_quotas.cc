#include "server/ratelimit/client_quotas.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/ratelimit/local_limiter.h"

namespace switchboard::ratelimit {

ClientQuotas::ClientQuotas(event::Dispatcher& dispatcher,
                           const absl::flat_hash_map<std::string, double>& requests_per_second,
                           LimiterFactory make_limiter)
    : dispatcher_(dispatcher) {
  for (const auto& [client_id, rate] : requests_per_second) {
    if (rate <= 0) continue;
    const double burst = std::max(1.0, rate * absl::ToDoubleSeconds(kBurstWindow));
    auto quota = std::make_unique<Quota>();
    quota->client_id = client_id;
    if (make_limiter) quota->limiter = make_limiter(client_id, rate, burst);
    if (quota->limiter == nullptr) quota->limiter = std::make_unique<LocalLimiter>(rate, burst);
    quota->limiter->SetChangeCallback([this, quota = quota.get()] { Settle(*quota); });
    quotas_.emplace(client_id, std::move(quota));
  }
}

std::optional<AdmissionResult> ClientQuotas::TryAcquire(absl::string_view client_id,
                                                        Callback later) {
  auto found = quotas_.find(client_id);
  if (found == quotas_.end()) return AdmissionResult{absl::OkStatus()};
  Quota& quota = *found->second;
  const absl::Time now = dispatcher_.clock().Now();
  quota.limiter->OnDemand(1, quota.waiting.size() + 1, now);
  if (quota.waiting.empty()) {
    std::optional<AdmissionResult> result = Decide(quota, now);
    if (result.has_value()) return result;
  }
  if (quota.waiting.size() >= kMaxWaitingPerClient) {
    return AdmissionResult{absl::ResourceExhaustedError(
                               absl::StrCat("client ", client_id, " has ", kMaxWaitingPerClient,
                                            " calls waiting for its global quota")),
                           absl::Milliseconds(100)};
  }
  quota.waiting.push_back(std::move(later));
  return std::nullopt;
}

std::optional<AdmissionResult> ClientQuotas::Decide(Quota& quota, absl::Time now) {
  const absl::Time conforming = quota.limiter->ConformingTime(1, now);
  if (conforming <= now) {
    quota.limiter->Consume(1, now, now);
    return AdmissionResult{absl::OkStatus()};
  }
  // No tokens yet, but some are coming: the answer waits for them.
  if (conforming == absl::InfiniteFuture() && quota.limiter->AwaitingTokens()) return std::nullopt;
  // Refused: the call no longer waits for tokens.
  quota.limiter->OnDemand(0, quota.waiting.empty() ? 0 : quota.waiting.size() - 1, now);
  const absl::Time allowed = conforming == absl::InfiniteFuture()
                                 ? quota.limiter->EstimateConformingTime(0, 1, now)
                                 : conforming;
  return AdmissionResult{absl::ResourceExhaustedError(
                             absl::StrCat("client ", quota.client_id, " is over its quota of ",
                                          quota.limiter->rate(), " requests per second")),
                         std::max(allowed - now, absl::Milliseconds(1))};
}

void ClientQuotas::Settle(Quota& quota) {
  const absl::Time now = dispatcher_.clock().Now();
  while (!quota.waiting.empty()) {
    std::optional<AdmissionResult> result = Decide(quota, now);
    if (!result.has_value()) return;
    Callback done = std::move(quota.waiting.front());
    quota.waiting.pop_front();
    done(*std::move(result));
  }
}

}  // namespace switchboard::ratelimit
