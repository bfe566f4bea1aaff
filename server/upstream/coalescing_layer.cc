#include "server/upstream/coalescing_layer.h"

#include <utility>

#include "server/upstream/json_rpc.h"

namespace switchboard::upstream {
namespace {

// A coalescer waiter that answers `done`, marking an answer it shares with
// the call that made the request (every waiter but the first) coalesced.
CallCoalescer<CallOutcome>::Waiter CoalescingWaiter(OutcomeCallback done) {
  return [done = std::move(done)](const CallOutcome& outcome, bool shared) mutable {
    CallOutcome copy = outcome;
    if (copy.result.ok() && shared) copy.result->coalesced = true;
    done(std::move(copy));
  };
}

}  // namespace

CoalescingLayer::CoalescingLayer(const UpstreamOptions& options, UpstreamObserver& observer,
                                 CallLayer& next)
    : options_(options), observer_(observer), next_(next) {}

bool CoalescingLayer::MayCoalesce(const UpstreamCall& call) const {
  if (!options_.coalescing || !call.raw_body.empty()) return false;
  return !IsTransactionSubmission(call.method) && !options_.never_coalesce.contains(call.method);
}

void CoalescingLayer::Start(CallId id, LayerCall call, OutcomeCallback done) {
  if (!MayCoalesce(call.call)) {
    next_.Start(id, std::move(call), std::move(done));
    return;
  }
  std::string key = SharingKey(call.call.method, call.call.params_json);
  if (!coalescer_.Join(key, CoalescingWaiter(std::move(done)))) {
    observer_.OnCoalesced(options_.name, call.call.method);
    return;
  }
  leaders_.emplace(id, key);
  next_.Start(id, std::move(call), [this, id, key = std::move(key)](CallOutcome outcome) {
    leaders_.erase(id);
    coalescer_.Complete(key, outcome);
  });
}

void CoalescingLayer::Cancel(CallId id) {
  auto leader = leaders_.find(id);
  // Others wait for this call's answer.
  if (leader != leaders_.end() && coalescer_.waiters(leader->second) > 1) return;
  // A call that joined another is not known below: Cancel() does nothing there.
  next_.Cancel(id);
}

}  // namespace switchboard::upstream
