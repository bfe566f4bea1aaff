#include "server/broker/redis/command_lanes.h"

#include <utility>

namespace switchboard::broker::redis {

absl::Status ShutDownError() { return absl::UnavailableError("the redis broker is shut down"); }

CommandLanes::CommandLanes(event::Dispatcher& dispatcher, event::Anchor<ConnectionSet> connections,
                           const TopicPolicies& policies, absl::AnyInvocable<void()> on_idle)
    : connections_(std::move(connections)), on_idle_(std::move(on_idle)), self_(dispatcher, this) {
  for (const TopicDeclaration* declaration : ExclusiveDeclarations(policies)) {
    exclusive_lanes_[&declaration->policy] = ready_.size();
    ready_.push_back(false);
  }
}

CommandLanes::~CommandLanes() { self_.Clear(); }

size_t CommandLanes::LaneOf(const TopicPolicy& policy) const {
  auto it = exclusive_lanes_.find(&policy);
  return it == exclusive_lanes_.end() ? kSharedLane : it->second;
}

void CommandLanes::Send(size_t lane, std::vector<Command> commands, RepliesHandler handler) {
  ++pending_;
  connections_.Run([lane, commands = std::move(commands), self = self_,
                    handler = std::move(handler)](ConnectionSet* connections) mutable {
    RepliesHandler back = [self, handler = std::move(handler)](Replies replies) mutable {
      self.Run([handler = std::move(handler),
                replies = std::move(replies)](CommandLanes* lanes) mutable {
        if (lanes == nullptr) return;
        handler(std::move(replies));
        lanes->EndCommand();
      });
    };
    if (connections == nullptr) {
      back(Replies(commands.size(), ShutDownError()));
      return;
    }
    connections->Send(lane, std::move(commands), std::move(back));
  });
}

void CommandLanes::Send(size_t lane, Command command, ReplyHandler handler) {
  std::vector<Command> commands;
  commands.push_back(std::move(command));
  Send(lane, std::move(commands),
       [handler = std::move(handler)](Replies replies) mutable { handler(std::move(replies[0])); });
}

void CommandLanes::EndCommand() {
  if (--pending_ == 0) on_idle_();
}

}  // namespace switchboard::broker::redis
