// WeightedFairQueue: the order in which an upstream admits the calls waiting
// for its limiter, shared across clients in proportion to their weights.
//
// Owned by UpstreamAdmission and used on its dispatcher thread (not
// thread-safe). It orders tickets only; the calls themselves (callbacks,
// deadlines) stay with the owner.
//
// Self-clocked fair queueing with per-call cost. Each client with queued
// calls has a virtual start tag S; its next call, of cost C, has the virtual
// finish tag F = S + C / weight, and serving it moves S to F. The queue serves
// the client with the smallest finish tag (ties: the client queued longest).
// Virtual time V is the finish tag of the last call served, so it only grows.
// A client that starts queueing starts at V: idling earns no credit, and a
// client that empties its queue loses nothing by it (its S was at most V), so
// no state is kept for it. When several clients keep calls queued, the cost
// served to each is proportional to its weight. When the queue empties, the
// busy period ends and virtual time starts again from zero.
//
// Within one client, calls go in priority order (higher first), first in
// first out among equal priorities.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"

namespace switchboard::ratelimit {

class WeightedFairQueue {
 public:
  // The call to serve next.
  struct Head {
    uint64_t ticket = 0;
    absl::string_view client_id;  // Valid until the queue changes.
    uint32_t cost = 0;
  };

  // Queues `ticket` (unique, increasing: it also orders equal priorities)
  // for `client_id` with the client's `weight` (>= 1; the latest value
  // applies to all its queued calls) and the call's `cost` (>= 1).
  void Push(uint64_t ticket, absl::string_view client_id, uint32_t weight, uint32_t cost,
            uint32_t priority);

  // The call the fair order serves next; nullopt when empty.
  std::optional<Head> Front() const;

  // Removes Front(), which must exist, and advances virtual time.
  void PopFront();

  // Removes a queued call out of turn (a cancellation). Returns false when
  // `ticket` is not queued. Virtual time does not move.
  bool Remove(uint64_t ticket);

  // The cost the fair order would serve before a call Push() was about to
  // queue with these arguments, given the calls queued now: the client's own
  // calls of the same or higher priority, plus every other client's calls
  // that finish before it in virtual time (or with it, when that client wins
  // the tie). Each of another client's queued calls is taken to cost what its
  // next one does, so the estimate is exact when each client's queued calls
  // cost the same. O(clients with calls queued). Calls queued later with a
  // higher priority, or by clients not queued now, may still go first.
  uint64_t CostAhead(absl::string_view client_id, uint32_t weight, uint32_t cost,
                     uint32_t priority) const;

  size_t size() const { return locations_.size(); }
  bool empty() const { return locations_.empty(); }

 private:
  // Orders one client's calls: higher priority first, then by ticket.
  struct CallKey {
    uint32_t priority;
    uint64_t ticket;
    bool operator<(const CallKey& other) const {
      if (priority != other.priority) return priority > other.priority;
      return ticket < other.ticket;
    }
  };

  // A client with queued calls.
  struct Client {
    std::string id;
    uint32_t weight = 1;
    double start_tag = 0;               // Of its next call.
    uint64_t order = 0;                 // Breaks finish-tag ties: lower (queued longer) first.
    std::map<CallKey, uint32_t> costs;  // Queued calls in service order.
    // Queued cost by priority and in all, for CostAhead().
    std::map<uint32_t, uint64_t> cost_by_priority;
    uint64_t queued_cost = 0;

    double FinishTag() const {
      return start_tag + costs.begin()->second / static_cast<double>(weight);
    }
  };

  struct Location {
    Client* client;
    uint32_t priority;
  };

  void AddToReady(Client& client);
  void RemoveFromReady(Client& client);
  // Removes one queued call; forgets the client when it was its last.
  void RemoveCall(Client& client, std::map<CallKey, uint32_t>::iterator call);

  double virtual_time_ = 0;
  uint64_t next_order_ = 0;
  absl::node_hash_map<std::string, Client> clients_;
  // Every client, by (finish tag of its next call, order).
  std::set<std::tuple<double, uint64_t, Client*>> ready_;
  absl::flat_hash_map<uint64_t, Location> locations_;  // By ticket.
};

}  // namespace switchboard::ratelimit
