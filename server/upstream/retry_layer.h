// RetryLayer: sends a call's attempts, one after another, until one ends it
// (DESIGN.md §4, "the retry policy").
//
// Owned by UpstreamClient, above the AdmissionLayer, so that every attempt
// is admitted and counted against the rate limit. After an attempt:
//   - a request that never reached its URL (no connection could be made)
//     goes again at once, whatever its method, once per URL: the provider
//     never saw it;
//   - a failure another attempt may cure is retried, after a backoff
//     (common/backoff.h, equal jitter, doubling from retry_backoff), for a
//     method on retry.methods only, while attempts (max_attempts) and the
//     deadline allow: a method not on the list is never sent twice;
//   - each attempt asks the transport to avoid the URL an attempt last
//     failed on (LayerCall::avoid_url).
// An answer carries the number of attempts made (Answer::upstream_attempts).
// A call in its backoff is not waiting for anything Cancel() withdraws: it
// runs to its end. The dispatcher's thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "server/event/dispatcher.h"
#include "server/upstream/call_layer.h"
#include "server/upstream/upstream_options.h"

namespace switchboard::upstream {

class RetryLayer final : public CallLayer {
 public:
  // Every argument must outlive the layer.
  RetryLayer(const UpstreamOptions& options, event::Dispatcher& dispatcher, CallLayer& next);

  void Start(CallId id, LayerCall call, OutcomeCallback done) override;
  void Cancel(CallId id) override;

 private:
  // A call that may make more than one attempt.
  struct AttemptedCall {
    LayerCall call;
    OutcomeCallback done;
    uint32_t attempts = 0;  // Ended so far.
    // Attempts that never reached their URL and went again at once.
    size_t never_sent_failovers = 0;
    std::unique_ptr<event::Timer> backoff;
  };

  bool MayRetry(const UpstreamCall& call) const;
  void Attempt(CallId id);
  void OnAttemptEnded(CallId id, CallOutcome outcome);
  // Waits for the backoff of the next attempt, or ends the call when its
  // deadline comes first.
  void RetryLater(CallId id, CallOutcome failure);
  void Finish(CallId id, CallOutcome outcome);

  const UpstreamOptions& options_;
  event::Dispatcher& dispatcher_;
  CallLayer& next_;
  absl::flat_hash_map<CallId, AttemptedCall> calls_;
  absl::BitGen random_;  // Backoff jitter.
};

}  // namespace switchboard::upstream
