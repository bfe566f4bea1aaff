#include "server/upstream/retry_layer.h"

#include <utility>

#include "common/backoff.h"

namespace switchboard::upstream {

RetryLayer::RetryLayer(const UpstreamOptions& options, event::Dispatcher& dispatcher,
                       CallLayer& next)
    : options_(options), dispatcher_(dispatcher), next_(next) {}

bool RetryLayer::MayRetry(const UpstreamCall& call) const {
  return call.raw_body.empty() && options_.max_attempts > 1 &&
         options_.retry_methods.contains(call.method);
}

void RetryLayer::Start(CallId id, LayerCall call, OutcomeCallback done) {
  // A call that can make only one attempt passes through: the transport
  // marks its answer as one attempt's.
  if (options_.urls.size() < 2 && !MayRetry(call.call)) {
    next_.Start(id, std::move(call), std::move(done));
    return;
  }
  AttemptedCall attempted;
  call.may_repeat = MayRetry(call.call);
  attempted.call = std::move(call);
  attempted.done = std::move(done);
  calls_.emplace(id, std::move(attempted));
  Attempt(id);
}

void RetryLayer::Attempt(CallId id) {
  next_.Start(id, calls_.at(id).call,
              [this, id](CallOutcome outcome) { OnAttemptEnded(id, std::move(outcome)); });
}

void RetryLayer::OnAttemptEnded(CallId id, CallOutcome outcome) {
  AttemptedCall& call = calls_.at(id);
  ++call.attempts;
  if (outcome.failed_url.has_value()) call.call.avoid_url = outcome.failed_url;
  if (outcome.never_sent && call.never_sent_failovers + 1 < options_.urls.size()) {
    ++call.never_sent_failovers;
    Attempt(id);
    return;
  }
  if (outcome.retryable && MayRetry(call.call.call) && call.attempts < options_.max_attempts) {
    RetryLater(id, std::move(outcome));
    return;
  }
  Finish(id, std::move(outcome));
}

void RetryLayer::RetryLater(CallId id, CallOutcome failure) {
  AttemptedCall& call = calls_.at(id);
  // Equal jitter under a ceiling that doubles per attempt, 1024 times the
  // first at most.
  const common::BackoffOptions backoff{options_.retry_backoff, options_.retry_backoff * 1024, 2.0,
                                       common::Jitter::kEqual};
  const absl::Duration delay =
      common::BackoffDelay(backoff, static_cast<int>(call.attempts) - 1, random_);
  if (dispatcher_.clock().Now() + delay >= call.call.call.deadline) {
    Finish(id, std::move(failure));
    return;
  }
  call.backoff = dispatcher_.CreateTimer([this, id] { Attempt(id); });
  call.backoff->Enable(delay);
}

void RetryLayer::Finish(CallId id, CallOutcome outcome) {
  auto it = calls_.find(id);
  AttemptedCall call = std::move(it->second);
  calls_.erase(it);
  if (outcome.result.ok()) outcome.result->upstream_attempts = call.attempts;
  call.done(std::move(outcome));
}

void RetryLayer::Cancel(CallId id) {
  auto it = calls_.find(id);
  if (it != calls_.end() && it->second.backoff != nullptr && it->second.backoff->Enabled()) return;
  next_.Cancel(id);
}

}  // namespace switchboard::upstream
