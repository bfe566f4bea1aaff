#include "server/ratelimit/global_limiter.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/common/log.h"

namespace switchboard::ratelimit {
namespace {

// The time constant of the demand estimate.
constexpr double kDemandSeconds = 1.0;
// Tokens one lease asks for at most, in horizons of the configured rate
// (the service caps the grant at one horizon anyway).
constexpr double kMaxLeaseHorizons = 2.0;

}  // namespace

GlobalLimiter::GlobalLimiter(event::Dispatcher& dispatcher, LeaseService& service,
                             SharedLimit limit, GlobalLimitObserver& observer)
    : dispatcher_(dispatcher),
      service_(service),
      limit_(std::move(limit)),
      observer_(observer),
      rate_(limit_.rate),
      live_replicas_(service.live_replicas()),
      self_(std::make_shared<GlobalLimiter*>(this)) {
  std::weak_ptr<GlobalLimiter*> self = self_;
  service_.Watch(limit_, [self](PauseNotice notice) {
    if (std::shared_ptr<GlobalLimiter*> limiter = self.lock()) (*limiter)->OnPause(notice);
  });
  observer_.OnFallback(limit_.kind, limit_.name, false);
}

GlobalLimiter::~GlobalLimiter() { service_.Unwatch(limit_); }

uint64_t GlobalLimiter::TokensDueAtOnce(uint64_t cost) const {
  return std::min<uint64_t>(cost,
                            std::max<uint64_t>(1, static_cast<uint64_t>(std::floor(limit_.burst))));
}

size_t GlobalLimiter::FirstUsable(absl::Time now) const {
  size_t first = 0;
  while (first < slots_.size() &&
         (slots_[first].expires < now || slots_[first].at < resume_after_)) {
    ++first;
  }
  return first;
}

void GlobalLimiter::DropExpired(absl::Time now) {
  const size_t expired = FirstUsable(now);
  if (expired == 0) return;
  slots_.erase(slots_.begin(), slots_.begin() + expired);
  observer_.OnTokensReturned(limit_.kind, limit_.name, expired);
}

void GlobalLimiter::DropAll() {
  if (slots_.empty()) return;
  observer_.OnTokensReturned(limit_.kind, limit_.name, slots_.size());
  slots_.clear();
}

absl::Time GlobalLimiter::ConformingTime(uint64_t cost, absl::Time now) const {
  if (fallback_ != nullptr) return fallback_->ConformingTime(cost, now);
  if (now < paused_until_) return absl::InfiniteFuture();  // Woken at the pause's end.
  const size_t first = FirstUsable(now);
  if (slots_.size() - first < cost) {
    cost_short_ = cost;
    return absl::InfiniteFuture();  // Woken when tokens come.
  }
  return std::max(now, slots_[first + TokensDueAtOnce(cost) - 1].at);
}

absl::Time GlobalLimiter::EstimateConformingTime(uint64_t cost_ahead, uint64_t cost,
                                                 absl::Time now) const {
  if (fallback_ != nullptr) return fallback_->EstimateConformingTime(cost_ahead, cost, now);
  const absl::Time start = std::max(now, paused_until_);
  const size_t first = FirstUsable(now);
  const uint64_t held = slots_.size() - first;
  const uint64_t needed = cost_ahead + TokensDueAtOnce(cost);
  if (needed <= held) return std::max(start, slots_[first + needed - 1].at);
  const absl::Time last = held > 0 ? std::max(start, slots_.back().at) : start;
  // Beyond the held tokens: what leases brought lately, and at least this
  // replica's even share of the fleet's rate.
  const double expected_rate = std::max(granted_rate_, rate_ / std::max(1u, live_replicas_));
  return last + absl::Seconds((needed - held) / expected_rate);
}

void GlobalLimiter::Consume(uint64_t cost, absl::Time due, absl::Time now) {
  if (fallback_ != nullptr) {
    fallback_->Consume(cost, due, now);
    return;
  }
  DropExpired(now);
  const size_t taken = std::min<size_t>(cost, slots_.size());
  slots_.erase(slots_.begin(), slots_.begin() + taken);
  // The call admitted was waiting: the tokens still wanted are for others.
  waiting_cost_ -= std::min(waiting_cost_, cost);
  MaybeLease(now);
}

double GlobalLimiter::DemandAt(absl::Time now) const {
  if (demand_updated_ == absl::InfinitePast()) return 0;
  return demand_rate_ * std::exp(-absl::ToDoubleSeconds(now - demand_updated_) / kDemandSeconds);
}

void GlobalLimiter::OnDemand(uint64_t arrived_cost, uint64_t waiting_cost, absl::Time now) {
  demand_rate_ = DemandAt(now) + arrived_cost / kDemandSeconds;
  demand_updated_ = now;
  waiting_cost_ = waiting_cost;
  MaybeLease(now);
}

bool GlobalLimiter::OnThrottled(std::optional<absl::Duration> retry_after, absl::Time now) {
  if (fallback_ != nullptr) return fallback_->OnThrottled(retry_after, now);
  const absl::Duration pause = retry_after.value_or(limit_.aimd.default_pause);
  const bool already_paused = now < paused_until_;
  paused_until_ = std::max(paused_until_, now + pause);
  DropAll();
  service_.ReportThrottle(limit_, pause);
  WakeAt(paused_until_);
  if (already_paused) return false;
  // What the service does to the shared rate; its next answer confirms it.
  const double lowered =
      std::max(rate_ * limit_.aimd.decrease_factor, limit_.rate * limit_.aimd.min_rate_fraction);
  if (lowered == rate_) return false;
  rate_ = lowered;
  return true;
}

bool GlobalLimiter::OnSucceeded(uint64_t cost, absl::Time now) {
  if (fallback_ != nullptr) return fallback_->OnSucceeded(cost, now);
  // The shared rate rises in the service, by every replica's successes.
  if (rate_ < limit_.rate) succeeded_since_lease_ += cost;
  return false;
}

double GlobalLimiter::rate() const { return fallback_ != nullptr ? fallback_->rate() : rate_; }

void GlobalLimiter::MaybeLease(absl::Time now) {
  if (lease_pending_) return;
  if (fallback_ == nullptr) {
    if (now < paused_until_) {
      WakeAt(paused_until_);
      return;
    }
    DropExpired(now);
  }
  const uint64_t held = fallback_ != nullptr ? 0 : slots_.size();
  uint64_t wanted = std::max<uint64_t>(waiting_cost_, cost_short_);
  const double demand = DemandAt(now);
  if (uncontended_) {
    // Spare capacity: calls at a steady rate find a grace period's worth
    // at hand.
    wanted = std::max<uint64_t>(
        wanted, static_cast<uint64_t>(std::ceil(demand * absl::ToDoubleSeconds(kSlotGrace))));
  } else {
    // Contended: enough for the demand until the next lease (whole tokens
    // only, so that a replica with a trickle of calls holds none in stock
    // to expire).
    wanted = std::max<uint64_t>(
        wanted, static_cast<uint64_t>(
                    std::floor(demand * absl::ToDoubleSeconds(service_.horizon() * 3 / 4))));
  }
  if (fallback_ == nullptr && wanted <= held) return;
  if (now < next_lease_allowed_) {
    WakeAt(next_lease_allowed_);
    return;
  }
  const uint64_t most = std::max<uint64_t>(
      static_cast<uint64_t>(std::ceil(limit_.burst)),
      static_cast<uint64_t>(
          std::ceil(limit_.rate * kMaxLeaseHorizons * absl::ToDoubleSeconds(service_.horizon()))));
  LeaseRequest request;
  request.tokens = static_cast<uint32_t>(
      std::clamp<uint64_t>(wanted > held ? wanted - held : 1, 1, std::max(most, cost_short_)));
  request.at_once = static_cast<uint32_t>(std::clamp<uint64_t>(cost_short_, 1, request.tokens));
  request.succeeded_cost = std::exchange(succeeded_since_lease_, 0);
  request.recovering = fallback_ != nullptr;
  request.live_replicas = live_replicas_;
  lease_pending_ = true;
  std::weak_ptr<GlobalLimiter*> self = self_;
  service_.Lease(limit_, request, [self, wanted = request.tokens](absl::StatusOr<Lease> lease) {
    if (std::shared_ptr<GlobalLimiter*> limiter = self.lock()) {
      (*limiter)->OnLease(wanted, std::move(lease));
    }
  });
}

void GlobalLimiter::OnLease(uint32_t wanted, absl::StatusOr<Lease> lease) {
  lease_pending_ = false;
  const absl::Time now = dispatcher_.clock().Now();
  observer_.OnLeaseRoundTrip(limit_.kind, limit_.name, lease.ok(), lease.ok() ? lease->tokens : 0);
  if (!lease.ok()) {
    if (fallback_ == nullptr) EnterFallback(now, lease.status());
    next_lease_allowed_ = now + kFallbackRetry;
    WakeAt(next_lease_allowed_);
    return;
  }
  if (fallback_ != nullptr) LeaveFallback();
  live_replicas_ = std::max(1u, lease->live_replicas);
  rate_ = lease->rate;
  paused_until_ = std::max(paused_until_, lease->paused_until);
  for (uint32_t k = 0; k < lease->tokens; ++k) {
    const absl::Time at = lease->Slot(k);
    slots_.push_back({at, std::max(at, now) + kSlotGrace});
  }
  if (lease->tokens > 0) {
    cost_short_ = 0;
    // Tokens per second that leases bring, halfway towards each new lease.
    const absl::Duration span = std::max(lease->Slot(lease->tokens - 1) - now, kSlotGrace);
    granted_rate_ = 0.5 * granted_rate_ + 0.5 * lease->tokens / absl::ToDoubleSeconds(span);
  }
  uncontended_ = lease->tokens == wanted && lease->first_slot <= now;
  // Round trips are paced, whatever the call rate: a contended lease got
  // what was free up to a horizon ahead, and the next one comes while a
  // quarter of it is left; after a full grant, calls that arrive meanwhile
  // wait at most a quarter horizon for the next.
  next_lease_allowed_ =
      now + (lease->tokens < wanted ? service_.horizon() * 3 / 4 : service_.horizon() / 4);
  if (lease->tokens == 0) {
    // The schedule is taken a whole horizon ahead: ask again as soon as its
    // first free slot comes within the horizon, not later, so that a
    // replica with a trickle of calls is not starved by a busy one.
    next_lease_allowed_ =
        std::max(now + absl::Milliseconds(1), lease->first_slot - service_.horizon());
  }
  Changed();
  MaybeLease(now);
}

void GlobalLimiter::OnPause(PauseNotice notice) {
  const absl::Time now = dispatcher_.clock().Now();
  if (notice.paused_until <= paused_until_ || notice.paused_until <= now) return;
  paused_until_ = notice.paused_until;
  rate_ = notice.rate;
  DropAll();
  if (fallback_ == nullptr) WakeAt(paused_until_);
  Changed();
}

void GlobalLimiter::EnterFallback(absl::Time now, const absl::Status& why) {
  live_replicas_ = std::max(1u, service_.live_replicas());
  const double share = rate_ / live_replicas_;
  const double share_burst = std::max(1.0, limit_.burst / live_replicas_);
  fallback_ = std::make_unique<LocalLimiter>(share, share_burst, limit_.aimd);
  // Starts full, so the switch sends no burst; the leased tokens go.
  fallback_->Consume(static_cast<uint64_t>(std::ceil(share_burst)), now, now);
  DropAll();
  observer_.OnFallback(limit_.kind, limit_.name, true);
  SB_LOG(kWarning, "global limit ", limit_.key(), ": the coordination store failed (",
         why.message(), "); falling back to this replica's ", "share: ", share, "/s (",
         live_replicas_, " replicas last seen)");
  Changed();
}

void GlobalLimiter::LeaveFallback() {
  // The fallback bucket spent the time up to its debt: tokens before then
  // would be a second helping.
  resume_after_ = fallback_->gcra().ConformingTime(1, dispatcher_.clock().Now());
  fallback_.reset();
  observer_.OnFallback(limit_.kind, limit_.name, false);
  SB_LOG(kInfo, "global limit ", limit_.key(), ": back to global coordination");
}

void GlobalLimiter::WakeAt(absl::Time at) {
  if (wake_timer_ == nullptr) {
    wake_timer_ = dispatcher_.CreateTimer([this] {
      wake_at_ = absl::InfiniteFuture();
      const absl::Time now = dispatcher_.clock().Now();
      MaybeLease(now);
      Changed();
    });
  }
  if (wake_timer_->Enabled() && wake_at_ <= at) return;
  wake_at_ = at;
  wake_timer_->EnableAt(at);
}

}  // namespace switchboard::ratelimit
