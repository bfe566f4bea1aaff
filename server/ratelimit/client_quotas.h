// ClientQuotas: each client's own request quota (`clients[].requests_per_second`),
// checked for a call that needs an upstream request: after the cache and
// coalescing (which cost the provider nothing), before the upstream's
// admission queue.
//
// Built once at startup and shared by every UpstreamClient. Construct, use
// and destroy it on the upstream dispatcher's thread. A client's quota is a
// Limiter: a LocalLimiter (`quota_scope: local`, this process alone), or a
// GlobalLimiter shared by every replica (`quota_scope: global`), which the
// factory given at construction builds.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/dispatcher.h"
#include "server/ratelimit/admission_result.h"
#include "server/ratelimit/limiter.h"

namespace switchboard::ratelimit {

class ClientQuotas {
 public:
  // A client may burst this much of its quota at once after a quiet spell
  // (at least one request).
  static constexpr absl::Duration kBurstWindow = absl::Seconds(1);
  // Calls of one client waiting for its global quota's first tokens, at
  // most; more are refused at once.
  static constexpr size_t kMaxWaitingPerClient = 1000;

  // Builds the limiter of `client_id`'s quota; null: a LocalLimiter.
  using LimiterFactory = absl::AnyInvocable<std::unique_ptr<Limiter>(absl::string_view client_id,
                                                                     double rate, double burst)>;
  using Callback = absl::AnyInvocable<void(AdmissionResult)>;

  // `requests_per_second` by client id; a client that is absent, or at 0, has
  // no quota. Without a factory every quota is a LocalLimiter. `dispatcher`
  // must outlive this object.
  ClientQuotas(event::Dispatcher& dispatcher,
               const absl::flat_hash_map<std::string, double>& requests_per_second,
               LimiterFactory make_limiter = nullptr);

  ClientQuotas(const ClientQuotas&) = delete;
  ClientQuotas& operator=(const ClientQuotas&) = delete;

  // Takes one request from `client_id`'s quota. Returns the answer when it
  // is known now: OK, or RESOURCE_EXHAUSTED with the wait until the quota
  // allows one (nothing taken). Otherwise (a global quota whose tokens are
  // on their way) returns nullopt, and `later` runs once with the answer, on
  // the dispatcher thread, never inline.
  std::optional<AdmissionResult> TryAcquire(absl::string_view client_id, Callback later);

 private:
  struct Quota {
    std::string client_id;
    std::unique_ptr<Limiter> limiter;
    std::deque<Callback> waiting;  // For tokens on their way.
  };

  // An answer for `quota` now, or nullopt while it must wait for tokens.
  std::optional<AdmissionResult> Decide(Quota& quota, absl::Time now);
  // The limiter's answers changed: settles the calls that were waiting.
  void Settle(Quota& quota);

  event::Dispatcher& dispatcher_;
  absl::flat_hash_map<std::string, std::unique_ptr<Quota>> quotas_;
};

}  // namespace switchboard::ratelimit
