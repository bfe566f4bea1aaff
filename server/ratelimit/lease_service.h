// LeaseService: where a GlobalLimiter leases its tokens, the fleet's shared
// rate limits (DESIGN.md §4, "One limit for the fleet").
//
// Every replica on the same coordination store shares one GCRA state per
// limit. A lease reserves the next `tokens` slots of that shared schedule, up
// to the service's horizon ahead: slot k of a lease may be used from
// max(not_before, first_slot + k * interval) on. Slots that different
// replicas hold never overlap, so whatever the replicas send at their slots
// conforms to the shared limit. The implementation is fleet::RedisLeaseService
// (server/fleet); unit tests use a fake.
//
// Threading: used on one dispatcher thread, the one its users run on.
// Callbacks run on that thread, never inline in the call that asked for them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/ratelimit/aimd_rate_control.h"

namespace switchboard::ratelimit {

// One shared limit and its configuration. Every replica must configure the
// same rate and burst for the same limit (a change is picked up by the first
// replica to lease with it).
struct SharedLimit {
  // "upstream" or "client": with `name`, the limit's identity in the fleet
  // and its metric labels.
  std::string kind;
  std::string name;
  double rate = 1;   // Configured cost units per second (> 0).
  double burst = 1;  // Cost units at one instant after a quiet spell (>= 1).
  AimdOptions aimd;

  std::string key() const { return kind + ":" + name; }
};

struct LeaseRequest {
  // Tokens wanted; the service grants those whose slots fall within its
  // horizon, possibly none.
  uint32_t tokens = 0;
  // Granted together or not at all, even past the horizon when the first
  // slot falls within it: a call costing more than a horizon's worth still
  // gets its tokens (<= tokens).
  uint32_t at_once = 1;
  // Cost units the provider answered since this replica's last lease: the
  // shared rate's additive increase (AIMD) after a throttle.
  uint64_t succeeded_cost = 0;
  // Set by a replica coming back from its fallback share: the replicas
  // still on theirs keep sending meanwhile, unseen by the shared schedule,
  // which runs at the share of the replicas back until all are.
  bool recovering = false;
  // The replicas this one last knew alive, for that share.
  uint32_t live_replicas = 1;
};

// What a lease granted, on this process's clock.
struct Lease {
  uint32_t tokens = 0;
  absl::Time not_before;
  absl::Time first_slot;
  absl::Duration interval;
  // The shared limit's current rate (lowered by throttles, AIMD).
  double rate = 0;
  absl::Time paused_until = absl::InfinitePast();
  // Replicas alive in the fleet, this one included (>= 1).
  uint32_t live_replicas = 1;

  // When slot `k` may be used.
  absl::Time Slot(uint32_t k) const { return std::max(not_before, first_slot + k * interval); }
};

// A throttle that some replica reported: every replica pauses until then.
struct PauseNotice {
  absl::Time paused_until;
  double rate = 0;  // The shared rate after the throttle.
};

// One replica's part of a shared limit, for `sbctl limit`.
struct ReplicaLease {
  std::string replica_id;
  uint32_t tokens_ahead = 0;  // Leased tokens whose slots are still to come.
  absl::Duration age;         // Since the latest lease's last slot (negative: ahead).
};

// A shared limit as Redis holds it.
struct SharedLimitState {
  double configured_rate = 0;
  double rate = 0;  // 0: no replica leased since the state expired.
  absl::Time paused_until = absl::InfinitePast();
  uint32_t live_replicas = 0;
  std::vector<ReplicaLease> replicas;
};

class LeaseService {
 public:
  using LeaseCallback = absl::AnyInvocable<void(absl::StatusOr<Lease> lease)>;
  using PauseCallback = absl::AnyInvocable<void(PauseNotice notice)>;
  using DescribeCallback = absl::AnyInvocable<void(absl::StatusOr<SharedLimitState> state)>;

  virtual ~LeaseService() = default;

  // Leases tokens of `limit`. `done` runs once: with the lease, or with
  // UNAVAILABLE or DEADLINE_EXCEEDED when the store did not answer in time.
  // It may run after its caller is gone: callers guard it.
  virtual void Lease(const SharedLimit& limit, LeaseRequest request, LeaseCallback done) = 0;

  // A provider throttled a call of `limit` here: pauses every replica for
  // `pause` and lowers the shared rate, once per throttle episode, as
  // AimdRateControl does for one process. Every watcher of the limit, this
  // replica's included, gets the PauseNotice. Fire and forget.
  virtual void ReportThrottle(const SharedLimit& limit, absl::Duration pause) = 0;

  // Sends `limit`'s pause notices, whichever replica reported them, to
  // `on_pause` until Unwatch(). One watcher per limit.
  virtual void Watch(const SharedLimit& limit, PauseCallback on_pause) = 0;
  virtual void Unwatch(const SharedLimit& limit) = 0;

  // How far ahead of now a lease reaches: about the time a replica that
  // dies or goes idle keeps its share from the others.
  virtual absl::Duration horizon() const = 0;

  // Replicas alive as last heard (>= 1), for the fallback share.
  virtual uint32_t live_replicas() const = 0;

  // Reads `limit`'s shared state, for `sbctl limit`. `done` runs once.
  virtual void Describe(const SharedLimit& limit, DescribeCallback done) = 0;
};

// Metric hooks of global limiters, called on their dispatcher thread.
// `kind` and `name` come from configuration (bounded).
class GlobalLimitObserver {
 public:
  virtual ~GlobalLimitObserver() = default;

  // A lease round trip ended: `ok`, granting `tokens`.
  virtual void OnLeaseRoundTrip(absl::string_view kind, absl::string_view name, bool ok,
                                uint32_t tokens) = 0;
  // Leased tokens given back unused: they expired, or a pause voided them.
  virtual void OnTokensReturned(absl::string_view kind, absl::string_view name,
                                uint32_t tokens) = 0;
  // The limiter left global coordination for its fallback share (true), or
  // came back (false).
  virtual void OnFallback(absl::string_view kind, absl::string_view name, bool fallback) = 0;
};

class NullGlobalLimitObserver final : public GlobalLimitObserver {
 public:
  void OnLeaseRoundTrip(absl::string_view, absl::string_view, bool, uint32_t) override {}
  void OnTokensReturned(absl::string_view, absl::string_view, uint32_t) override {}
  void OnFallback(absl::string_view, absl::string_view, bool) override {}
};

}  // namespace switchboard::ratelimit
