#include "server/ratelimit/weighted_fair_queue.h"

#include <algorithm>
#include <cmath>

namespace switchboard::ratelimit {
namespace {

// Virtual tags are sums of cost / weight quotients: two tags closer than this
// are equal.
constexpr double kTagTolerance = 1e-6;

}  // namespace

void WeightedFairQueue::AddToReady(Client& client) {
  ready_.emplace(client.FinishTag(), client.order, &client);
}

void WeightedFairQueue::RemoveFromReady(Client& client) {
  ready_.erase({client.FinishTag(), client.order, &client});
}

void WeightedFairQueue::Push(uint64_t ticket, absl::string_view client_id, uint32_t weight,
                             uint32_t cost, uint32_t priority) {
  auto found = clients_.find(client_id);
  if (found == clients_.end()) {
    found = clients_.try_emplace(std::string(client_id)).first;
    Client& client = found->second;
    client.id = found->first;
    client.start_tag = virtual_time_;
    client.order = next_order_++;
  } else {
    RemoveFromReady(found->second);
  }
  Client& client = found->second;
  client.weight = weight;
  client.costs.emplace(CallKey{priority, ticket}, cost);
  client.cost_by_priority[priority] += cost;
  client.queued_cost += cost;
  locations_.emplace(ticket, Location{&client, priority});
  AddToReady(client);
}

std::optional<WeightedFairQueue::Head> WeightedFairQueue::Front() const {
  if (ready_.empty()) return std::nullopt;
  const Client& client = *std::get<Client*>(*ready_.begin());
  const auto& [key, cost] = *client.costs.begin();
  return Head{key.ticket, client.id, cost};
}

void WeightedFairQueue::PopFront() {
  Client& client = *std::get<Client*>(*ready_.begin());
  ready_.erase(ready_.begin());
  virtual_time_ = client.FinishTag();
  client.start_tag = virtual_time_;
  RemoveCall(client, client.costs.begin());
}

bool WeightedFairQueue::Remove(uint64_t ticket) {
  auto location = locations_.find(ticket);
  if (location == locations_.end()) return false;
  Client& client = *location->second.client;
  RemoveFromReady(client);
  RemoveCall(client, client.costs.find(CallKey{location->second.priority, ticket}));
  return true;
}

void WeightedFairQueue::RemoveCall(Client& client, std::map<CallKey, uint32_t>::iterator call) {
  const uint32_t priority = call->first.priority;
  const uint32_t cost = call->second;
  locations_.erase(call->first.ticket);
  client.costs.erase(call);
  auto level = client.cost_by_priority.find(priority);
  level->second -= cost;
  if (level->second == 0) client.cost_by_priority.erase(level);
  client.queued_cost -= cost;
  if (!client.costs.empty()) {
    AddToReady(client);
    return;
  }
  clients_.erase(clients_.find(client.id));
  // The busy period is over: start virtual time afresh.
  if (clients_.empty()) virtual_time_ = 0;
}

uint64_t WeightedFairQueue::CostAhead(absl::string_view client_id, uint32_t weight, uint32_t cost,
                                      uint32_t priority) const {
  auto found = clients_.find(client_id);
  const Client* own = found == clients_.end() ? nullptr : &found->second;
  uint64_t ahead = 0;
  double start_tag = virtual_time_;
  if (own != nullptr) {
    for (auto level = own->cost_by_priority.lower_bound(priority);
         level != own->cost_by_priority.end(); ++level) {
      ahead += level->second;
    }
    start_tag = own->start_tag;
  }
  const double finish_tag = start_tag + (ahead + cost) / static_cast<double>(weight);
  for (const auto& [tag, order, client] : ready_) {
    if (client == own) continue;
    // Its calls finish every `call_cost / weight` of virtual time from its
    // start tag on.
    const double call_cost = client->costs.begin()->second;
    const double calls_by_finish = (finish_tag - client->start_tag) * client->weight / call_cost;
    const bool wins_ties = own == nullptr || client->order < own->order;
    const double calls = wins_ties ? std::floor(calls_by_finish + kTagTolerance)
                                   : std::ceil(calls_by_finish - kTagTolerance) - 1;
    if (calls > 0) {
      ahead += std::min(client->queued_cost, static_cast<uint64_t>(calls * call_cost));
    }
  }
  return ahead;
}

}  // namespace switchboard::ratelimit
