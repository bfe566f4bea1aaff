// LocalLimiter: an upstream's or a client's rate enforced by this process
// alone (`scope: local`), a GCRA (Gcra) steered by the provider's pushback
// (AimdRateControl).
//
// Owned by an UpstreamAdmission or ClientQuotas; not thread-safe. Exact for
// one replica; with several, each enforces the whole limit (use a
// GlobalLimiter there).
#pragma once

#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "server/ratelimit/aimd_rate_control.h"
#include "server/ratelimit/gcra.h"
#include "server/ratelimit/limiter.h"

namespace switchboard::ratelimit {

class LocalLimiter final : public Limiter {
 public:
  // `rate` cost units per second (> 0) with `burst` (>= 1).
  LocalLimiter(double rate, double burst, AimdOptions aimd = {});

  absl::Time ConformingTime(uint64_t cost, absl::Time now) const override {
    return gcra_.ConformingTime(cost, now);
  }
  absl::Time EstimateConformingTime(uint64_t cost_ahead, uint64_t cost,
                                    absl::Time now) const override {
    return gcra_.ConformingTimeAfter(cost_ahead, cost, now);
  }
  void Consume(uint64_t cost, absl::Time due, absl::Time now) override;
  bool OnThrottled(std::optional<absl::Duration> retry_after, absl::Time now) override {
    return rate_control_.OnThrottled(retry_after, now);
  }
  bool OnSucceeded(uint64_t cost, absl::Time now) override {
    return rate_control_.OnSucceeded(cost, now);
  }
  double rate() const override { return gcra_.rate(); }

  // The GCRA, for tests and for GlobalLimiter's fallback.
  const Gcra& gcra() const { return gcra_; }

 private:
  Gcra gcra_;
  AimdRateControl rate_control_;
};

}  // namespace switchboard::ratelimit
