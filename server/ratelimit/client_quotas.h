// ClientQuotas: each client's own request quota (`clients[].requests_per_second`),
// checked before a call queues for any upstream.
//
// Built once at startup from the configured clients and shared by every RPC
// handler. Thread-safe: TryAcquire may be called from any thread; each client's
// quota is a Gcra behind its own mutex, so clients never contend with each
// other. Time comes from the injected clock.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/clock.h"
#include "server/ratelimit/admission_result.h"
#include "server/ratelimit/gcra.h"

namespace switchboard::ratelimit {

class ClientQuotas {
 public:
  // A client may burst this much of its quota at once after a quiet spell
  // (at least one request).
  static constexpr absl::Duration kBurstWindow = absl::Seconds(1);

  // `requests_per_second` by client id; a client that is absent, or at 0, has
  // no quota. `clock` must outlive this object.
  ClientQuotas(const absl::flat_hash_map<std::string, double>& requests_per_second,
               common::Clock& clock);

  // Takes one request from `client_id`'s quota: OK, or RESOURCE_EXHAUSTED
  // with the wait until the quota allows one (nothing taken).
  AdmissionResult TryAcquire(absl::string_view client_id);

 private:
  struct Quota {
    Quota(double requests_per_second, double burst) : limiter(requests_per_second, burst) {}

    absl::Mutex mu;
    Gcra limiter ABSL_GUARDED_BY(mu);
  };

  common::Clock& clock_;
  // Immutable after construction: looked up without a lock.
  absl::flat_hash_map<std::string, std::unique_ptr<Quota>> quotas_;
};

}  // namespace switchboard::ratelimit
