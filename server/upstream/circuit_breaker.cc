#include "server/upstream/circuit_breaker.h"

namespace switchboard::upstream {

bool CircuitBreaker::Allow(absl::Time now) {
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (now < open_until_) return false;
      state_ = State::kHalfOpen;
      probe_in_flight_ = true;
      return true;
    case State::kHalfOpen:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::OnSuccess() {
  state_ = State::kClosed;
  consecutive_failures_ = 0;
  probe_in_flight_ = false;
}

void CircuitBreaker::OnFailure(absl::Time now) {
  probe_in_flight_ = false;
  if (state_ == State::kClosed && ++consecutive_failures_ < failure_threshold_) return;
  state_ = State::kOpen;
  open_until_ = now + open_duration_;
}

CircuitBreaker::State CircuitBreaker::state(absl::Time now) const {
  if (state_ == State::kOpen && now >= open_until_) return State::kHalfOpen;
  return state_;
}

absl::string_view CircuitBreakerStateName(CircuitBreaker::State state) {
  switch (state) {
    case CircuitBreaker::State::kClosed:
      return "closed";
    case CircuitBreaker::State::kOpen:
      return "open";
    case CircuitBreaker::State::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

}  // namespace switchboard::upstream
