// CommandLanes: how the Redis backend's components send commands and get
// their replies back on the broker's dispatcher.
//
// Owned by RedisBroker's state and shared by reference with every component
// that sends commands (PubSubChannels for ephemeral publishes, StreamGroups,
// BlockingReads, LeaseKeeper). Tracks which lane's connection is ready (see
// connection_set.h for the lanes) and how many commands wait for a reply, so
// the broker can wait until it is idle (Sync, Shutdown).
//
// Threading: construction, every call and every reply handler on the broker's
// dispatcher thread. A handler never runs after the lanes are destroyed.
#pragma once

#include <cstddef>
#include <map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "server/broker/redis/connection_set.h"
#include "server/broker/topic_policy.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker::redis {

using ReplyHandler = absl::AnyInvocable<void(absl::StatusOr<Reply> reply)>;

// What the broker's calls and commands get once it is shut down.
absl::Status ShutDownError();

class CommandLanes {
 public:
  // `on_idle` runs whenever the handler of the last pending command returned.
  // `policies` must outlive the lanes.
  CommandLanes(event::Dispatcher& dispatcher, event::Anchor<ConnectionSet> connections,
               const TopicPolicies& policies, absl::AnyInvocable<void()> on_idle);
  ~CommandLanes();

  CommandLanes(const CommandLanes&) = delete;
  CommandLanes& operator=(const CommandLanes&) = delete;

  // The lane of topics with `policy`: their own connection for an exclusive
  // declaration, else the shared one.
  size_t LaneOf(const TopicPolicy& policy) const;

  // Whether `lane`'s connection is ready. The shared lane's decides health,
  // and blocking reads need it (CLIENT UNBLOCK).
  bool ready(size_t lane) const { return ready_[lane]; }
  bool shared_ready() const { return ready_[kSharedLane]; }
  void SetReady(size_t lane, bool ready) { ready_[lane] = ready; }

  // Sends `commands` pipelined on the connection of `lane` and runs `handler`
  // here with their replies, in order.
  void Send(size_t lane, std::vector<Command> commands, RepliesHandler handler);
  void Send(size_t lane, Command command, ReplyHandler handler);

  // No command waits for its reply.
  bool idle() const { return pending_ == 0; }

 private:
  void EndCommand();

  event::Anchor<ConnectionSet> connections_;
  absl::AnyInvocable<void()> on_idle_;
  // By lane: the shared connection, then one per exclusive declaration.
  std::vector<bool> ready_ = {false};
  std::map<const TopicPolicy*, size_t> exclusive_lanes_;
  size_t pending_ = 0;  // Commands sent whose replies are not handled yet.
  event::Anchor<CommandLanes> self_;
};

}  // namespace switchboard::broker::redis
