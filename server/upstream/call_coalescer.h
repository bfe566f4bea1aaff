// CallCoalescer: identical calls in flight share one upstream request.
//
// Owned by the CoalescingLayer (coalescing_layer.h) and used on its
// dispatcher thread only (not thread-safe). The first call with a key leads:
// it makes the request and calls Complete(). Calls that join while it is in
// flight wait, and every waiter, the leader included, gets the leader's
// result. The owner decides which calls may coalesce (read methods only,
// never a transaction submission) and builds the key (upstream, method and
// params text).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"

namespace switchboard::upstream {

template <typename Result>
class CallCoalescer {
 public:
  // `shared` is false for the leader, true for the calls that joined it.
  using Waiter = absl::AnyInvocable<void(const Result& result, bool shared)>;

  // Adds `waiter` under `key`. True when no call with this key was in
  // flight: the caller leads and must Complete(key, ...) once.
  bool Join(const std::string& key, Waiter waiter) {
    auto [it, leads] = in_flight_.try_emplace(key);
    it->second.push_back(std::move(waiter));
    return leads;
  }

  // Ends the call in flight under `key`: every waiter gets `result`, in
  // joining order. Returns how many there were.
  size_t Complete(const std::string& key, const Result& result) {
    auto it = in_flight_.find(key);
    if (it == in_flight_.end()) return 0;
    std::vector<Waiter> waiters = std::move(it->second);
    in_flight_.erase(it);
    for (size_t i = 0; i < waiters.size(); ++i) waiters[i](result, /*shared=*/i > 0);
    return waiters.size();
  }

  // Calls waiting under `key`, the leader included.
  size_t waiters(const std::string& key) const {
    auto it = in_flight_.find(key);
    return it == in_flight_.end() ? 0 : it->second.size();
  }

  size_t in_flight() const { return in_flight_.size(); }

 private:
  absl::flat_hash_map<std::string, std::vector<Waiter>> in_flight_;
};

}  // namespace switchboard::upstream
