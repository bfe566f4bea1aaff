#include "server/ratelimit/client_quotas.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace switchboard::ratelimit {

ClientQuotas::ClientQuotas(const absl::flat_hash_map<std::string, double>& requests_per_second,
                           common::Clock& clock)
    : clock_(clock) {
  for (const auto& [client_id, rate] : requests_per_second) {
    if (rate <= 0) continue;
    const double burst = std::max(1.0, rate * absl::ToDoubleSeconds(kBurstWindow));
    quotas_.emplace(client_id, std::make_unique<Quota>(rate, burst));
  }
}

AdmissionResult ClientQuotas::TryAcquire(absl::string_view client_id) {
  auto found = quotas_.find(client_id);
  if (found == quotas_.end()) return {absl::OkStatus()};
  Quota& quota = *found->second;
  absl::MutexLock lock(&quota.mu);
  const absl::Duration wait = quota.limiter.TryConsume(1, clock_.Now());
  if (wait == absl::ZeroDuration()) return {absl::OkStatus()};
  return {absl::ResourceExhaustedError(absl::StrCat("client ", client_id, " is over its quota of ",
                                                    quota.limiter.rate(), " requests per second")),
          wait};
}

}  // namespace switchboard::ratelimit
