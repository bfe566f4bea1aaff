// ConnectionSet: every hiredis connection of one RedisBroker, on the I/O
// dispatcher (DESIGN.md §3).
//
// Owned by RedisBroker; knows nothing of topics or groups. The broker's
// components reach it through an event::Anchor<ConnectionSet> (CommandLanes,
// PubSubChannels, BlockingReads), and it reports connection events back
// through the Events the broker gives Start().
//
// Command lanes: lane kSharedLane is the shared command connection; lane
// i + 1 is the connection of ExclusiveDeclarations(...)[i].
//
// Threading: construct anywhere; Start(), every other call, every callback
// and destruction on the I/O dispatcher's thread only.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/broker/redis/command.h"
#include "server/broker/redis/connection.h"
#include "server/broker/redis/reply.h"
#include "server/broker/topic_policy.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher_impl.h"

namespace switchboard::broker::redis {

using Replies = std::vector<absl::StatusOr<Reply>>;
using RepliesHandler = absl::AnyInvocable<void(Replies replies)>;

// The command lane of the shared command connection.
constexpr size_t kSharedLane = 0;

// The declarations configured `exclusive`, in declaration order: each gets a
// command connection of its own, named after its pattern.
std::vector<const TopicDeclaration*> ExclusiveDeclarations(const TopicPolicies& policies);

class ConnectionSet {
 public:
  // Connection events, delivered on the I/O thread.
  struct Events {
    absl::AnyInvocable<void(size_t lane, bool ready)> on_command_state;
    absl::AnyInvocable<void(bool ready)> on_subscriber_state;
    absl::AnyInvocable<void(Reply push)> on_push;
    absl::AnyInvocable<void(size_t reader, bool ready)> on_reader_state;
    absl::AnyInvocable<void()> on_maintenance_tick;
  };

  // `options` and `observer` must outlive this set. A released reader stays
  // open for `reader_linger`, so a group that comes back soon (a worker
  // restarting, consumers that come and go) reuses it instead of making a
  // new connection.
  ConnectionSet(event::DispatcherImpl& dispatcher, const ConnectionOptions& options,
                absl::Duration maintenance_interval, absl::Duration reader_linger,
                const TopicPolicies& policies, ConnectionObserver& observer);
  ~ConnectionSet();

  ConnectionSet(const ConnectionSet&) = delete;
  ConnectionSet& operator=(const ConnectionSet&) = delete;

  // How the broker's components reach this set.
  const event::Anchor<ConnectionSet>& anchor() const { return anchor_; }

  // Why the command connection's last attempt failed; empty while it is
  // ready. Any thread.
  std::string CommandFailure() const { return command_.LastFailure(); }

  // Connects, and ticks every `maintenance_interval`. Call once.
  void Start(Events events);

  // Sends `commands` on the command connection of `lane`, pipelined, and runs
  // `done` once with every reply, in order.
  void Send(size_t lane, std::vector<Command> commands, RepliesHandler done);

  // Sends a (P)(UN)SUBSCRIBE on the subscriber connection. A failure needs
  // no answer: the connection is down, and its subscriptions are renewed
  // when it is back.
  void SendPubSub(const Command& command);

  // Sends a blocking read on reader `index`, opening it first if needed.
  void BlockingRead(size_t index, const Command& command, absl::Duration timeout,
                    Connection::ReplyCallback done);

  // Opens reader `index` when it is not open (it reports its state). A
  // reader released but still lingering is kept, and reports nothing: its
  // state is the one it last reported.
  void OpenReader(size_t index);

  // Interrupts reader `index`'s blocking read (CLIENT UNBLOCK from the command
  // connection), retrying while the read has not reached Redis yet.
  void Unblock(size_t index);

  // Reader `index` has no group left: it closes after the linger unless
  // opened again meanwhile, and then reports itself down.
  void ReleaseReader(size_t index);

  // Closes every connection; pending commands fail with UNAVAILABLE.
  void CloseAll();

 private:
  struct Reader {
    std::unique_ptr<Connection> connection;
    bool blocking = false;        // A blocking read is pending.
    bool unblock_wanted = false;  // ... and should be interrupted.
    std::unique_ptr<event::Timer> retry;
    std::unique_ptr<event::Timer> linger;  // Armed while released.
  };

  Reader& Open(size_t index);
  // Closes reader `index` at once. Freed on a later loop iteration: this may
  // run inside one of the reader's own callbacks.
  void CloseReader(size_t index);
  void TryUnblock(size_t index);

  event::DispatcherImpl& dispatcher_;
  const ConnectionOptions& options_;
  const absl::Duration maintenance_interval_;
  const absl::Duration reader_linger_;
  ConnectionObserver& observer_;
  Events events_;
  Connection command_;
  Connection subscriber_;
  std::vector<std::unique_ptr<Connection>> exclusive_;  // Lane i + 1 is exclusive_[i].
  std::deque<Reader> readers_;  // By index; a deque keeps references stable.
  std::unique_ptr<event::Timer> maintenance_timer_;
  event::Anchor<ConnectionSet> anchor_;
};

}  // namespace switchboard::broker::redis
