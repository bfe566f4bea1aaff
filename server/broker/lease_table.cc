#include "server/broker/lease_table.h"

#include <algorithm>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace switchboard::broker {
namespace {

// Ack ids read "<instance: 16 hex digits>.<lease number: decimal>".
constexpr size_t kInstanceDigits = 16;

bool AllOf(absl::string_view text, bool (*predicate)(unsigned char)) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [predicate](char c) {
    return predicate(static_cast<unsigned char>(c));
  });
}

uint64_t RandomInstance() {
  std::random_device random;
  return (uint64_t{random()} << 32) ^ random();
}

}  // namespace

LeaseTable::LeaseTable(event::Dispatcher& dispatcher, ExpiryHandler on_expired)
    : dispatcher_(dispatcher), on_expired_(std::move(on_expired)), instance_(RandomInstance()) {}

std::string LeaseTable::Grant(Lease lease) {
  const uint64_t number = next_number_++;
  by_session_[lease.session].insert(number);
  by_deadline_.emplace(lease.deadline, number);
  leases_.emplace(number, std::move(lease));
  ArmTimer();
  return absl::StrCat(absl::Hex(instance_, absl::kZeroPad16), ".", number);
}

absl::StatusOr<LeaseTable::LeaseMap::iterator> LeaseTable::Find(absl::string_view ack_id,
                                                                uint64_t session) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(ack_id, absl::MaxSplits('.', 1));
  uint64_t instance = 0;
  uint64_t number = 0;
  if (parts.first.size() != kInstanceDigits || !AllOf(parts.first, absl::ascii_isxdigit) ||
      !AllOf(parts.second, absl::ascii_isdigit) || !absl::SimpleHexAtoi(parts.first, &instance) ||
      !absl::SimpleAtoi(parts.second, &number)) {
    return absl::InvalidArgumentError("malformed ack id");
  }
  auto it = instance == instance_ ? leases_.find(number) : leases_.end();
  if (it == leases_.end()) {
    return absl::NotFoundError("no such lease: it was settled, expired or released");
  }
  if (it->second.session != session) {
    return absl::PermissionDeniedError("the lease is held by another consume stream");
  }
  return it;
}

Lease LeaseTable::Remove(LeaseMap::iterator it) {
  const uint64_t number = it->first;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  by_deadline_.erase({lease.deadline, number});
  auto session = by_session_.find(lease.session);
  session->second.erase(number);
  if (session->second.empty()) by_session_.erase(session);
  return lease;
}

absl::StatusOr<Lease> LeaseTable::Release(absl::string_view ack_id, uint64_t session) {
  absl::StatusOr<LeaseMap::iterator> it = Find(ack_id, session);
  if (!it.ok()) return it.status();
  Lease lease = Remove(*it);
  ArmTimer();
  return lease;
}

absl::Status LeaseTable::Extend(absl::string_view ack_id, uint64_t session, absl::Time deadline) {
  absl::StatusOr<LeaseMap::iterator> it = Find(ack_id, session);
  if (!it.ok()) return it.status();
  Lease& lease = (*it)->second;
  by_deadline_.erase({lease.deadline, (*it)->first});
  by_deadline_.emplace(deadline, (*it)->first);
  lease.deadline = deadline;
  ArmTimer();
  return absl::OkStatus();
}

std::vector<Lease> LeaseTable::ReleaseSession(uint64_t session) {
  std::vector<Lease> released;
  auto held = by_session_.find(session);
  if (held == by_session_.end()) return released;
  // Remove() erases the session's entry with its last lease.
  const std::set<uint64_t> numbers = held->second;
  released.reserve(numbers.size());
  for (uint64_t number : numbers) released.push_back(Remove(leases_.find(number)));
  ArmTimer();
  return released;
}

size_t LeaseTable::HeldBy(uint64_t session) const {
  auto held = by_session_.find(session);
  return held == by_session_.end() ? 0 : held->second.size();
}

void LeaseTable::ExpireDue() {
  armed_deadline_ = absl::InfiniteFuture();
  const absl::Time now = dispatcher_.clock().Now();
  std::vector<Lease> expired;
  while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
    expired.push_back(Remove(leases_.find(by_deadline_.begin()->second)));
  }
  ArmTimer();
  for (Lease& lease : expired) on_expired_(std::move(lease));
}

void LeaseTable::ArmTimer() {
  if (timer_ == nullptr) timer_ = dispatcher_.CreateTimer([this] { ExpireDue(); });
  if (by_deadline_.empty()) {
    timer_->Disable();
    armed_deadline_ = absl::InfiniteFuture();
    return;
  }
  const absl::Time earliest = by_deadline_.begin()->first;
  if (earliest == armed_deadline_) return;
  timer_->EnableAt(earliest);
  armed_deadline_ = earliest;
}

}  // namespace switchboard::broker
