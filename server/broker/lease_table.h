// LeaseTable: the leases of every consume stream a broker serves.
//
// Used by every broker backend. Construct it on any thread; use and destroy
// it on the dispatcher's thread only (not thread-safe). Leases live in Switchboard's process for
// the Redis backend too: Redis only fetches and acks, while this table decides what an ack id
// means, who holds it and when it expires.
//
// The table issues opaque ack ids, one per lease and never reused, so an ack
// id kept past its lease's end (expired and redelivered, say) can never settle
// the new lease. Ack ids also carry a random per-table instance tag, so ids
// from an earlier process are unknown here rather than naming a different
// lease. Deadlines run on the dispatcher's clock through one dispatcher
// timer: under a SimulatedClock, leases expire when the test advances time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker {

struct Lease {
  uint64_t session = 0;  // The consume stream that holds the lease.
  std::string message_id;
  uint32_t delivery_attempt = 1;
  absl::Time deadline;
};

class LeaseTable {
 public:
  using ExpiryHandler = absl::AnyInvocable<void(Lease expired)>;

  // `on_expired` runs on the dispatcher thread for every lease whose deadline
  // has passed, after the lease has left the table; it may grant and release
  // leases. `dispatcher` must outlive the table.
  LeaseTable(event::Dispatcher& dispatcher, ExpiryHandler on_expired);

  LeaseTable(const LeaseTable&) = delete;
  LeaseTable& operator=(const LeaseTable&) = delete;

  // Records `lease` and returns its new ack id.
  std::string Grant(Lease lease);

  // Ends the lease `ack_id` names (ack or nack) and returns it. Fails with
  // INVALID_ARGUMENT when `ack_id` is malformed, NOT_FOUND when no such lease
  // is held (settled, expired, released, or never issued here), and
  // PERMISSION_DENIED when `session` does not hold it.
  absl::StatusOr<Lease> Release(absl::string_view ack_id, uint64_t session);

  // Moves the deadline of the lease `ack_id` names. Fails like Release().
  absl::Status Extend(absl::string_view ack_id, uint64_t session, absl::Time deadline);

  // Ends every lease `session` holds and returns them in grant order.
  std::vector<Lease> ReleaseSession(uint64_t session);

  // How many leases `session` holds: its used credits.
  size_t HeldBy(uint64_t session) const;

  // How many leases `sessions` (pointers to anything with an `id`) hold.
  template <typename Sessions>
  size_t HeldByAll(const Sessions& sessions) const {
    size_t held = 0;
    for (const auto* session : sessions) held += HeldBy(session->id);
    return held;
  }

 private:
  using LeaseMap = absl::flat_hash_map<uint64_t, Lease>;

  absl::StatusOr<LeaseMap::iterator> Find(absl::string_view ack_id, uint64_t session);
  Lease Remove(LeaseMap::iterator it);
  void ExpireDue();
  // Points the timer at the earliest deadline.
  void ArmTimer();

  event::Dispatcher& dispatcher_;
  ExpiryHandler on_expired_;
  const uint64_t instance_;
  uint64_t next_number_ = 1;
  LeaseMap leases_;                                    // By lease number.
  std::map<uint64_t, std::set<uint64_t>> by_session_;  // Session -> lease numbers.
  std::set<std::pair<absl::Time, uint64_t>> by_deadline_;
  // Created on first use, so the table may be constructed off the dispatcher
  // thread.
  std::unique_ptr<event::Timer> timer_;
  absl::Time armed_deadline_ = absl::InfiniteFuture();
};

}  // namespace switchboard::broker
