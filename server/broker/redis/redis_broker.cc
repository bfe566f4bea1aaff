#include "server/broker/redis/redis_broker.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/broker/lease_table.h"
#include "server/broker/message_id.h"
#include "server/broker/redis/anchor.h"
#include "server/broker/redis/message_codec.h"
#include "server/broker/sink_guard.h"
#include "server/broker/subscriber_buffer.h"
#include "server/broker/subscriber_index.h"
#include "server/common/log.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"

namespace switchboard::broker {
namespace {

using redis::Anchor;
using redis::Command;
using redis::Connection;
using redis::HasErrorCode;
using redis::Reply;
using ConsumerGuard = SinkGuard<ConsumerSink>;
using Replies = std::vector<absl::StatusOr<Reply>>;
using RepliesHandler = absl::AnyInvocable<void(Replies replies)>;

// Ids per XCLAIM ... JUSTID when refreshing idle times.
constexpr size_t kRefreshBatch = 500;
// How soon the I/O side retries a CLIENT UNBLOCK that found the reader not
// blocked yet (its XREADGROUP still on the way).
constexpr absl::Duration kUnblockRetry = absl::Milliseconds(1);

absl::Status ShutDownError() { return absl::UnavailableError("the redis broker is shut down"); }

uint64_t RandomTag() {
  std::random_device random;
  return (uint64_t{random()} << 32) ^ random();
}

std::string DefaultConsumerName() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, ":", getpid(), ":", absl::Hex(RandomTag() & 0xffffffff));
}

// The first failure among `replies`: a transport status or a Redis error.
absl::Status FirstError(const Replies& replies) {
  for (const absl::StatusOr<Reply>& reply : replies) {
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return reply->status();
  }
  return absl::OkStatus();
}

// The command lane of the shared command connection; lane i + 1 is the
// connection of ExclusivePatterns(...)[i].
constexpr size_t kSharedLane = 0;

// The declarations configured `exclusive`, in declaration order: each gets a
// command connection of its own, named after its pattern.
std::vector<const TopicDeclaration*> ExclusiveDeclarations(const TopicPolicies& policies) {
  std::vector<const TopicDeclaration*> exclusive;
  for (const TopicDeclaration& declaration : policies.declarations()) {
    if (declaration.policy.exclusive) exclusive.push_back(&declaration);
  }
  return exclusive;
}

bool IsNoGroup(const absl::StatusOr<Reply>& reply) {
  return reply.ok() && reply->is_error() && HasErrorCode(reply->str, "NOGROUP");
}

}  // namespace

// ---------------------------------------------------------------------------
// Io: the connections, on the I/O dispatcher. Knows nothing of topics; the
// state drives it through an Anchor and gets replies back through one.

class RedisBroker::Io {
 public:
  struct Reader {
    std::unique_ptr<Connection> connection;
    bool blocking = false;        // A blocking read is pending.
    bool unblock_wanted = false;  // ... and should be interrupted.
    std::unique_ptr<event::Timer> retry;
  };

  // Connection events, delivered on the I/O thread.
  struct Events {
    absl::AnyInvocable<void(size_t lane, bool ready)> on_command_state;
    absl::AnyInvocable<void(bool ready)> on_subscriber_state;
    absl::AnyInvocable<void(Reply push)> on_push;
    absl::AnyInvocable<void(size_t reader, bool ready)> on_reader_state;
    absl::AnyInvocable<void()> on_maintenance_tick;
  };

  Io(event::DispatcherImpl& dispatcher, const RedisBrokerOptions& options,
     const TopicPolicies& policies, redis::ConnectionObserver& observer)
      : dispatcher_(dispatcher),
        options_(options),
        observer_(observer),
        command_(dispatcher, options.connection, "command", observer),
        subscriber_(dispatcher, options.connection, "subscriber", observer),
        anchor_(dispatcher, this) {
    for (const TopicDeclaration* declaration : ExclusiveDeclarations(policies)) {
      exclusive_.push_back(
          std::make_unique<Connection>(dispatcher, options.connection,
                                       absl::StrCat("exclusive:", declaration->pattern), observer));
    }
  }

  // I/O thread.
  ~Io() { anchor_.Clear(); }

  // How the state reaches this object.
  const Anchor<Io>& anchor() const { return anchor_; }

  // I/O thread. Connects and starts the maintenance ticks.
  void Start(Events events) {
    events_ = std::move(events);
    command_.Start([this](bool ready) { events_.on_command_state(kSharedLane, ready); });
    for (size_t i = 0; i < exclusive_.size(); ++i) {
      exclusive_[i]->Start(
          [this, lane = i + 1](bool ready) { events_.on_command_state(lane, ready); });
    }
    subscriber_.Start([this](bool ready) { events_.on_subscriber_state(ready); },
                      [this](Reply push) { events_.on_push(std::move(push)); });
    maintenance_timer_ = dispatcher_.CreateTimer([this] {
      maintenance_timer_->Enable(options_.maintenance_interval);
      events_.on_maintenance_tick();
    });
    maintenance_timer_->Enable(options_.maintenance_interval);
  }

  // Sends `commands` on the command connection of `lane`, pipelined, and runs
  // `done` once with every reply, in order.
  void Send(size_t lane, std::vector<Command> commands, RepliesHandler done) {
    Connection& connection = lane == kSharedLane ? command_ : *exclusive_[lane - 1];
    struct Batch {
      Replies replies;
      size_t remaining;
      RepliesHandler done;
    };
    auto batch =
        std::make_shared<Batch>(Batch{Replies(commands.size(), absl::UnknownError("no reply")),
                                      commands.size(), std::move(done)});
    for (size_t i = 0; i < commands.size(); ++i) {
      connection.Send(commands[i], [batch, i](absl::StatusOr<Reply> reply) {
        batch->replies[i] = std::move(reply);
        if (--batch->remaining == 0) batch->done(std::move(batch->replies));
      });
    }
  }

  // Sends a (P)(UN)SUBSCRIBE on the subscriber connection. A failure needs
  // no answer: the connection is down, and the state renews its
  // subscriptions when it is back.
  void SendPubSub(const Command& command) { subscriber_.SendPubSub(command).IgnoreError(); }

  // Sends a blocking read on reader `index`, opening it first if needed.
  void BlockingRead(size_t index, const Command& command, absl::Duration timeout,
                    Connection::ReplyCallback done) {
    Reader& reader = OpenReader(index);
    reader.blocking = true;
    reader.connection->Send(
        command, timeout,
        [this, index, done = std::move(done)](absl::StatusOr<Reply> reply) mutable {
          Reader& reader = readers_[index];
          reader.blocking = false;
          reader.unblock_wanted = false;
          reader.retry->Disable();
          done(std::move(reply));
        });
  }

  // Opens reader `index` when it is not open (it reports its state).
  Reader& OpenReader(size_t index);

  // Interrupts reader `index`'s blocking read (CLIENT UNBLOCK from the command
  // connection), retrying while the read has not reached Redis yet.
  void Unblock(size_t index) {
    if (index >= readers_.size() || !readers_[index].blocking) return;
    readers_[index].unblock_wanted = true;
    TryUnblock(index);
  }

  // Closes reader `index`. Freed on a later loop iteration: this may run
  // inside one of the reader's own callbacks.
  void CloseReader(size_t index) {
    if (index >= readers_.size() || readers_[index].connection == nullptr) return;
    readers_[index].connection->Close();
    dispatcher_.Post([closed = std::move(readers_[index].connection)] {});
  }

  // Closes every connection; pending commands fail with UNAVAILABLE.
  void CloseAll() {
    if (maintenance_timer_ != nullptr) maintenance_timer_->Disable();
    for (size_t i = 0; i < readers_.size(); ++i) CloseReader(i);
    subscriber_.Close();
    for (std::unique_ptr<Connection>& exclusive : exclusive_) exclusive->Close();
    command_.Close();
  }

 private:
  void TryUnblock(size_t index) {
    Reader& reader = readers_[index];
    if (!reader.blocking || !reader.unblock_wanted || !reader.connection->ready() ||
        !command_.ready()) {
      return;
    }
    command_.Send(
        Command::Of({"CLIENT", "UNBLOCK", absl::StrCat(reader.connection->client_id())}),
        [this, index](absl::StatusOr<Reply> reply) {
          Reader& reader = readers_[index];
          if (reply.ok() && reply->integer == 0 && reader.blocking && reader.unblock_wanted) {
            reader.retry->Enable(kUnblockRetry);
          }
        });
  }

  event::DispatcherImpl& dispatcher_;
  const RedisBrokerOptions& options_;
  redis::ConnectionObserver& observer_;
  Events events_;
  Connection command_;
  Connection subscriber_;
  std::vector<std::unique_ptr<Connection>> exclusive_;  // Lane i + 1 is exclusive_[i].
  std::deque<Reader> readers_;  // By index; a deque keeps references stable.
  std::unique_ptr<event::Timer> maintenance_timer_;
  Anchor<Io> anchor_;
};

RedisBroker::Io::Reader& RedisBroker::Io::OpenReader(size_t index) {
  while (readers_.size() <= index) {
    Reader& added = readers_.emplace_back();
    const size_t added_index = readers_.size() - 1;
    added.retry = dispatcher_.CreateTimer([this, added_index] { TryUnblock(added_index); });
  }
  Reader& reader = readers_[index];
  if (reader.connection == nullptr) {
    reader.connection =
        std::make_unique<Connection>(dispatcher_, options_.connection, "reader", observer_);
    reader.connection->Start([this, index](bool ready) { events_.on_reader_state(index, ready); });
  }
  return reader;
}

// ---------------------------------------------------------------------------
// State: everything the broker knows, on the broker's dispatcher.

class RedisBroker::State {
 public:
  State(event::Dispatcher& dispatcher, common::Clock& io_clock, const RedisBrokerOptions& options,
        const TopicPolicies& policies, BrokerObserver& observer, std::atomic<bool>& serving,
        Anchor<Io> io)
      : clock_(dispatcher.clock()),
        io_clock_(io_clock),
        options_(options),
        consumer_(options.consumer_name.empty() ? DefaultConsumerName() : options.consumer_name),
        policies_(policies),
        observer_(observer),
        serving_(serving),
        io_(std::move(io)),
        self_(dispatcher, this),
        sync_channel_(absl::StrCat("switchboard:sync:", absl::Hex(RandomTag(), absl::kZeroPad16))),
        leases_(dispatcher, [this](Lease lease) { OnLeaseExpired(std::move(lease)); }) {
    channels_[sync_channel_].wanted = true;
    for (const TopicDeclaration* declaration : ExclusiveDeclarations(policies)) {
      exclusive_lanes_[&declaration->policy] = lane_ready_.size();
      lane_ready_.push_back(false);
    }
  }

  ~State() { self_.Clear(); }

  // The I/O side's events, each hopping to this state.
  Io::Events IoEvents() {
    Anchor<State> self = self_;
    return Io::Events{[self](size_t lane, bool ready) {
                        self.Run([lane, ready](State* state) {
                          if (state != nullptr) state->OnCommandState(lane, ready);
                        });
                      },
                      [self](bool ready) {
                        self.Run([ready](State* state) {
                          if (state != nullptr) state->OnSubscriberState(ready);
                        });
                      },
                      [self](Reply push) {
                        self.Run([push = std::move(push)](State* state) mutable {
                          if (state != nullptr) state->OnPush(std::move(push));
                        });
                      },
                      [self](size_t reader, bool ready) {
                        self.Run([reader, ready](State* state) {
                          if (state != nullptr) state->OnReaderState(reader, ready);
                        });
                      },
                      [self] {
                        self.Run([](State* state) {
                          if (state != nullptr) state->Maintain();
                        });
                      }};
  }

  // -- Health, Sync and Shutdown --------------------------------------------

  void WatchHealth(absl::AnyInvocable<void(bool)> watcher) {
    watcher(serving());
    health_watchers_.push_back(std::move(watcher));
  }

  void Sync(absl::AnyInvocable<void()> done) {
    // A barrier already under way may have started before the work this
    // caller waits for: join the next one.
    if (barrier_started_) {
      next_sync_waiters_.push_back(std::move(done));
      return;
    }
    sync_waiters_.push_back(std::move(done));
    StartBarrier();
  }

  // Stops starting new work and runs `on_idle` once no command is pending.
  void BeginShutdown(absl::AnyInvocable<void()> on_idle) {
    shutting_down_ = true;
    on_idle_ = std::move(on_idle);
    MaybeIdle();
  }

  void CloseAll(const absl::Status& status) {
    for (auto& [id, subscriber] : subscribers_) {
      subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(status); });
    }
    for (auto& [id, session] : sessions_) {
      session.sink->Invoke([&](ConsumerSink& sink) { sink.OnClosed(status); });
    }
  }

  // -- Publish ----------------------------------------------------------------

  void Publish(const std::string& topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) {
    const TopicPolicy& policy = policies_.Resolve(topic);
    const size_t lane = LaneOf(policy);
    if (!lane_ready_[lane]) {
      done(absl::UnavailableError("redis is unreachable"));
      return;
    }
    if (messages.empty()) {
      done(std::vector<std::string>());
      return;
    }
    std::vector<Command> commands;
    commands.reserve(messages.size());
    if (policy.kind == TopicKind::kDurable) {
      for (const OutgoingMessage& message : messages) {
        commands.push_back(redis::StreamAppendCommand(topic, policy.max_len, "*", message));
      }
      SendCommands(lane, std::move(commands), [done = std::move(done)](Replies replies) mutable {
        if (absl::Status error = FirstError(replies); !error.ok()) {
          done(std::move(error));
          return;
        }
        std::vector<std::string> ids;
        ids.reserve(replies.size());
        for (absl::StatusOr<Reply>& reply : replies) ids.push_back(std::move(reply->str));
        done(std::move(ids));
      });
      return;
    }
    const absl::Time now = clock_.Now();
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    for (OutgoingMessage& outgoing : messages) {
      Message message{ids_.Next(now), topic, std::move(outgoing.payload),
                      std::move(outgoing.attributes), now};
      commands.push_back(Command::Of({"PUBLISH", topic, redis::EncodeEphemeral(message)}));
      ids.push_back(std::move(message.id));
    }
    SendCommands(lane, std::move(commands),
                 [done = std::move(done), ids = std::move(ids)](Replies replies) mutable {
                   absl::Status error = FirstError(replies);
                   if (error.ok()) {
                     done(std::move(ids));
                   } else {
                     done(std::move(error));
                   }
                 });
  }

  // -- Subscriptions ------------------------------------------------------------

  void AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                     std::shared_ptr<SinkGuard<SubscriberSink>> sink) {
    Subscriber& subscriber =
        subscribers_
            .try_emplace(
                id, Subscriber{pattern, SubscriberBuffer(policy.subscriber_buffer, policy.overflow),
                               std::move(sink), /*confirmed=*/false})
            .first->second;
    subscriber_index_.Add(pattern, id);
    Channel& channel = channels_[pattern];
    channel.wanted = true;
    if (channel.upstream == Upstream::kSubscribed) {
      Confirm(subscriber);
    } else {
      channel.waiting.push_back(id);
      Reconcile(pattern);
    }
  }

  void RemoveSubscriber(uint64_t id) {
    auto it = subscribers_.find(id);
    if (it != subscribers_.end()) EraseSubscriber(it);
  }

  void SubscriberReady(uint64_t id) {
    auto it = subscribers_.find(id);
    if (it == subscribers_.end()) return;
    if (std::optional<SubscriberBuffer::Handoff> next = it->second.buffer.Ready()) {
      HandOver(it->second, *next);
    }
  }

  // -- Consume ---------------------------------------------------------------

  void AddSession(uint64_t id, ConsumeOptions options, std::shared_ptr<ConsumerGuard> sink) {
    TopicGroup& topic_group = GetTopicGroup(options.topic, options.group);
    const absl::Duration ack_deadline = options.ack_deadline > absl::ZeroDuration()
                                            ? options.ack_deadline
                                            : topic_group.policy.ack_deadline;
    Session& session = sessions_
                           .try_emplace(id, Session{id, &topic_group, options.max_in_flight,
                                                    ack_deadline, std::move(sink)})
                           .first->second;
    topic_group.sessions.push_back(&session);
    GroupReads& group = groups_[topic_group.group];
    if (group.reader == kNoReader) AssignReader(topic_group.group, group);
    Kick(topic_group);
  }

  // Releases every lease the session holds: its messages go to the group's
  // other consumers now.
  void RemoveSession(uint64_t id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    TopicGroup& topic_group = *it->second.topic_group;
    std::vector<Session*>& members = topic_group.sessions;
    const size_t index = std::find(members.begin(), members.end(), &it->second) - members.begin();
    members.erase(members.begin() + index);
    if (index < topic_group.next_turn) --topic_group.next_turn;
    if (topic_group.next_turn >= members.size()) topic_group.next_turn = 0;
    for (const Lease& lease : leases_.ReleaseSession(id)) FailDelivery(topic_group, lease);
    sessions_.erase(it);
    Kick(topic_group);
    ReleaseReaderIfIdle(topic_group.group);
  }

  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    Session& session = it->second;
    TopicGroup& topic_group = *session.topic_group;
    LeaseUpdateResult result;
    std::vector<std::string> acked;
    for (const std::string& ack_id : update.acks) {
      absl::StatusOr<Lease> lease = leases_.Release(ack_id, id);
      result.acks.push_back(lease.status());
      if (!lease.ok()) continue;
      topic_group.owned.erase(lease->message_id);
      acked.push_back(std::move(lease->message_id));
    }
    for (const std::string& ack_id : update.nacks) {
      result.nacks.push_back(Fail(session, ack_id));
    }
    for (const LeaseUpdate::Extension& extension : update.extensions) {
      result.extensions.push_back(
          extension.deadline > absl::ZeroDuration()
              ? leases_.Extend(extension.ack_id, id, clock_.Now() + extension.deadline)
              : Fail(session, extension.ack_id));
    }
    if (!acked.empty()) Acknowledge(topic_group, acked);
    session.sink->Invoke([&](ConsumerSink&) { done(std::move(result)); });
    Kick(topic_group);
  }

 private:
  // -- Types -------------------------------------------------------------------

  struct TopicGroup;

  struct Session {
    uint64_t id;
    TopicGroup* topic_group;
    uint32_t max_in_flight;
    absl::Duration ack_deadline;
    std::shared_ptr<ConsumerGuard> sink;
  };

  // A message this process holds for a group, waiting for a session.
  struct Held {
    std::string id;
    uint32_t attempt;  // Redis' delivery count once delivered.
  };

  // One Redis consumer group: a Switchboard group on one topic's stream.
  struct TopicGroup {
    TopicGroup(std::string topic, std::string group, const TopicPolicy& policy, size_t lane)
        : topic(std::move(topic)), group(std::move(group)), policy(policy), lane(lane) {}

    enum class Existence { kUnknown, kCreating, kReady, kFailed };

    const std::string topic;
    const std::string group;
    const TopicPolicy& policy;
    const size_t lane;               // Where its commands go.
    std::vector<Session*> sessions;  // In joining order; deliveries take turns.
    size_t next_turn = 0;
    Existence existence = Existence::kUnknown;
    // Every entry of this group's pending list that this process holds
    // (leased, waiting in `ready`, or being claimed), with its message.
    std::map<std::string, std::shared_ptr<const Message>> owned;
    std::deque<Held> ready;         // Read or claimed, waiting for credit.
    std::deque<Held> redeliveries;  // To claim again (XCLAIM) and deliver.
    uint32_t reserved = 0;          // Credits promised to reads and claims in flight.
    bool probing = false;           // A non-blocking read is in flight.
    bool drained = false;           // The last read found nothing new: wait in a blocking read.
    bool reclaiming = false;        // An XAUTOCLAIM is in flight.
    std::string reclaim_cursor = "0-0";
  };

  static constexpr size_t kNoReader = std::numeric_limits<size_t>::max();

  // A group name's blocking reads, over all its topics.
  struct GroupReads {
    size_t reader = kNoReader;
    std::vector<TopicGroup*> topics;
    bool blocking = false;
    std::vector<TopicGroup*> blocking_topics;
    uint32_t blocking_count = 0;  // The read's COUNT, per topic.
    bool unblock_requested = false;
  };

  struct ReaderSlot {
    bool ready = false;
    std::vector<std::string> groups;  // Group names assigned to it.
    std::string reading;              // The group whose blocking read is pending.
    std::deque<std::string> waiting;  // Groups waiting for their turn.
    bool in_barrier = false;          // Sync() waits for the pending read.
  };

  struct Subscriber {
    std::string pattern;
    SubscriberBuffer buffer;
    std::shared_ptr<SinkGuard<SubscriberSink>> sink;
    bool confirmed;
  };

  enum class Upstream { kNone, kSubscribing, kSubscribed, kUnsubscribing };

  // One SUBSCRIBE (exact topic) or PSUBSCRIBE (prefix pattern) on Redis.
  struct Channel {
    bool wanted = false;
    Upstream upstream = Upstream::kNone;
    std::vector<uint64_t> waiting;  // Subscribers waiting for the confirmation.
  };

  // -- Commands -----------------------------------------------------------------

  // The command lane of topics with `policy`: their own connection for an
  // exclusive declaration, else the shared one.
  size_t LaneOf(const TopicPolicy& policy) const {
    auto it = exclusive_lanes_.find(&policy);
    return it == exclusive_lanes_.end() ? kSharedLane : it->second;
  }

  bool command_ready() const { return lane_ready_[kSharedLane]; }

  // Sends `commands` pipelined on the command connection of `lane` and runs
  // `handler` here with their replies. Pending commands keep the broker busy
  // (Sync, Shutdown).
  void SendCommands(size_t lane, std::vector<Command> commands, RepliesHandler handler) {
    ++busy_;
    Anchor<State> self = self_;
    io_.Run(
        [lane, commands = std::move(commands), self, handler = std::move(handler)](Io* io) mutable {
          RepliesHandler back = [self, handler = std::move(handler)](Replies replies) mutable {
            self.Run(
                [handler = std::move(handler), replies = std::move(replies)](State* state) mutable {
                  if (state == nullptr) return;
                  handler(std::move(replies));
                  state->EndCommand();
                });
          };
          if (io == nullptr) {
            back(Replies(commands.size(), ShutDownError()));
            return;
          }
          io->Send(lane, std::move(commands), std::move(back));
        });
  }

  void SendCommand(size_t lane, Command command,
                   absl::AnyInvocable<void(absl::StatusOr<Reply>)> handler) {
    std::vector<Command> commands;
    commands.push_back(std::move(command));
    SendCommands(lane, std::move(commands),
                 [handler = std::move(handler)](Replies replies) mutable {
                   handler(std::move(replies[0]));
                 });
  }

  void EndCommand() {
    --busy_;
    MaybeIdle();
  }

  void MaybeIdle() {
    if (busy_ > 0) return;
    if (barrier_started_ && barrier_waits_ == 0) {
      barrier_started_ = false;
      std::vector<absl::AnyInvocable<void()>> waiters;
      waiters.swap(sync_waiters_);
      for (auto& waiter : waiters) waiter();
      if (!next_sync_waiters_.empty() && !barrier_started_) {
        sync_waiters_.swap(next_sync_waiters_);
        StartBarrier();
      }
    }
    if (on_idle_) {
      absl::AnyInvocable<void()> on_idle = std::move(on_idle_);
      on_idle_ = nullptr;
      on_idle();
    }
  }

  // A Sync() barrier: interrupt every pending blocking read and send a
  // message through the subscriber connection, then wait for all of them and
  // for every command.
  void StartBarrier() {
    barrier_started_ = true;
    for (size_t index = 0; index < readers_.size(); ++index) {
      ReaderSlot& slot = readers_[index];
      if (slot.reading.empty() || slot.in_barrier) continue;
      slot.in_barrier = true;
      ++barrier_waits_;
      io_.Run([index](Io* io) {
        if (io != nullptr) io->Unblock(index);
      });
    }
    if (subscriber_ready_ && channels_[sync_channel_].upstream == Upstream::kSubscribed) {
      ++barrier_waits_;
      awaiting_sync_message_ = true;
      SendCommand(kSharedLane, Command::Of({"PUBLISH", sync_channel_, "sync"}),
                  [this](absl::StatusOr<Reply> reply) {
                    // Without a receiver the message never comes.
                    if ((!reply.ok() || reply->integer == 0) && awaiting_sync_message_) {
                      SyncMessageArrived();
                    }
                  });
    }
    MaybeIdle();
  }

  void SyncMessageArrived() {
    awaiting_sync_message_ = false;
    --barrier_waits_;
    MaybeIdle();
  }

  // -- Connection events ----------------------------------------------------------

  // After a reconnect, serving waits until the subscriptions are back, so a
  // publisher that trusts health never publishes past a subscriber.
  bool serving() const { return command_ready() && subscriber_ready_ && !restoring_; }

  void UpdateHealth(absl::AnyInvocable<void()> change) {
    const bool before = serving();
    change();
    const bool after = serving();
    if (before == after) return;
    serving_.store(after);
    for (auto& watcher : health_watchers_) watcher(after);
  }

  void OnCommandState(size_t lane, bool ready) {
    if (lane == kSharedLane) {
      UpdateHealth([&] { lane_ready_[kSharedLane] = ready; });
    } else {
      lane_ready_[lane] = ready;
    }
    if (!ready) return;
    // Reads and claims resume; lost groups show up as NOGROUP. Blocking reads
    // need the shared lane (CLIENT UNBLOCK), so it resumes every group.
    for (auto& [key, topic_group] : topic_groups_) {
      if (lane == kSharedLane || topic_group.lane == lane) Kick(topic_group);
    }
  }

  void OnSubscriberState(bool ready) {
    UpdateHealth([&] {
      subscriber_ready_ = ready;
      restoring_ = ready;
    });
    if (!ready) {
      // Redis dropped every subscription with the connection.
      for (auto& [pattern, channel] : channels_) channel.upstream = Upstream::kNone;
      if (awaiting_sync_message_) SyncMessageArrived();
      return;
    }
    std::vector<std::string> patterns;
    for (const auto& [pattern, channel] : channels_) patterns.push_back(pattern);
    for (const std::string& pattern : patterns) Reconcile(pattern);
    EndRestoringIfDone();
  }

  // Serving again once every wanted channel is subscribed.
  void EndRestoringIfDone() {
    if (!restoring_) return;
    for (const auto& [pattern, channel] : channels_) {
      if (channel.wanted && channel.upstream != Upstream::kSubscribed) return;
    }
    UpdateHealth([&] { restoring_ = false; });
  }

  void OnReaderState(size_t index, bool ready) {
    if (index >= readers_.size()) return;
    readers_[index].ready = ready;
    if (!ready) return;
    const std::vector<std::string> groups = readers_[index].groups;
    for (const std::string& name : groups) EnsureBlocking(name);
  }

  // -- Pub/Sub --------------------------------------------------------------------

  // Brings the Redis subscription of `pattern` toward what is wanted, one
  // step at a time: a (P)SUBSCRIBE or (P)UNSUBSCRIBE is sent only once the
  // previous one was confirmed.
  void Reconcile(const std::string& pattern) {
    auto it = channels_.find(pattern);
    if (it == channels_.end()) return;
    Channel& channel = it->second;
    if (!channel.wanted && channel.upstream == Upstream::kNone) {
      channels_.erase(it);
      EndRestoringIfDone();
      return;
    }
    if (!subscriber_ready_) return;
    const bool prefix = common::IsTopicPrefixPattern(pattern);
    // Topic names have no glob characters, so a prefix pattern "news.*" is
    // its own Redis glob.
    if (channel.wanted && channel.upstream == Upstream::kNone) {
      channel.upstream = Upstream::kSubscribing;
      SendPubSub(Command::Of({prefix ? "PSUBSCRIBE" : "SUBSCRIBE", pattern}));
    } else if (!channel.wanted && channel.upstream == Upstream::kSubscribed) {
      channel.upstream = Upstream::kUnsubscribing;
      SendPubSub(Command::Of({prefix ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", pattern}));
    }
  }

  void SendPubSub(Command command) {
    io_.Run([command = std::move(command)](Io* io) {
      if (io != nullptr) io->SendPubSub(command);
    });
  }

  void OnPush(Reply push) {
    if (!push.is_array() || push.elements.size() < 3) return;
    const std::string& kind = push.elements[0].str;
    if (kind == "message") {
      OnMessage(push.elements[1].str, push.elements[1].str, push.elements[2].str);
    } else if (kind == "pmessage" && push.elements.size() == 4) {
      OnMessage(push.elements[1].str, push.elements[2].str, push.elements[3].str);
    } else if (kind == "subscribe" || kind == "psubscribe") {
      OnSubscribed(push.elements[1].str);
    } else if (kind == "unsubscribe" || kind == "punsubscribe") {
      auto it = channels_.find(push.elements[1].str);
      if (it == channels_.end()) return;
      it->second.upstream = Upstream::kNone;
      Reconcile(it->first);
    }
  }

  void OnSubscribed(const std::string& pattern) {
    auto it = channels_.find(pattern);
    if (it == channels_.end()) return;
    Channel& channel = it->second;
    channel.upstream = Upstream::kSubscribed;
    std::vector<uint64_t> waiting;
    waiting.swap(channel.waiting);
    for (uint64_t id : waiting) {
      auto subscriber = subscribers_.find(id);
      if (subscriber != subscribers_.end()) Confirm(subscriber->second);
    }
    Reconcile(pattern);
    EndRestoringIfDone();
  }

  void Confirm(Subscriber& subscriber) {
    subscriber.confirmed = true;
    subscriber.sink->Invoke([](SubscriberSink& sink) { sink.OnSubscribed(); });
  }

  // A message on `topic`, delivered by the Redis subscription `pattern`.
  void OnMessage(const std::string& pattern, const std::string& topic, absl::string_view value) {
    if (pattern == sync_channel_) {
      if (awaiting_sync_message_) SyncMessageArrived();
      return;
    }
    absl::StatusOr<Message> decoded = redis::DecodeEphemeral(topic, value);
    if (!decoded.ok()) {
      SB_LOG(kDebug, "dropping a message on ", topic, ": ", decoded.status().message());
      return;
    }
    auto message = std::make_shared<const Message>(*std::move(decoded));
    for (uint64_t id : subscriber_index_.Match(topic)) {
      auto it = subscribers_.find(id);
      if (it->second.pattern == pattern && it->second.confirmed) Offer(it, message);
    }
  }

  void Offer(std::map<uint64_t, Subscriber>::iterator it,
             const std::shared_ptr<const Message>& message) {
    Subscriber& subscriber = it->second;
    SubscriberBuffer::PushResult pushed = subscriber.buffer.Push(message);
    if (pushed.dropped > 0) observer_.OnSubscriberDropped(message->topic, pushed.dropped);
    if (pushed.disconnect) {
      const absl::Status overflow = absl::ResourceExhaustedError(
          absl::StrCat("subscriber buffer of ", subscriber.buffer.capacity(),
                       " messages overflowed on topic '", message->topic, "'"));
      subscriber.sink->Invoke([&](SubscriberSink& sink) { sink.OnClosed(overflow); });
      EraseSubscriber(it);
    } else if (pushed.handoff) {
      HandOver(subscriber, *pushed.handoff);
    }
  }

  static void HandOver(Subscriber& subscriber, const SubscriberBuffer::Handoff& handoff) {
    subscriber.sink->Invoke([&](SubscriberSink& sink) {
      sink.OnMessage(*handoff.message, handoff.dropped_since_last);
    });
  }

  void EraseSubscriber(std::map<uint64_t, Subscriber>::iterator it) {
    const uint64_t id = it->first;
    const std::string pattern = std::move(it->second.pattern);
    subscribers_.erase(it);
    Channel& channel = channels_[pattern];
    channel.waiting.erase(std::remove(channel.waiting.begin(), channel.waiting.end(), id),
                          channel.waiting.end());
    if (subscriber_index_.Remove(pattern, id)) {
      channel.wanted = false;
      Reconcile(pattern);
    }
  }

  // -- Durable topics -------------------------------------------------------------

  TopicGroup& GetTopicGroup(const std::string& topic, const std::string& group) {
    auto key = std::make_pair(topic, group);
    auto it = topic_groups_.find(key);
    if (it != topic_groups_.end()) return it->second;
    const TopicPolicy& policy = policies_.Resolve(topic);
    TopicGroup& created =
        topic_groups_.try_emplace(key, topic, group, policy, LaneOf(policy)).first->second;
    groups_[group].topics.push_back(&created);
    return created;
  }

  // Credits the group's sessions have left, beyond the leases they hold, the
  // reads and claims in flight for them and the messages waiting for them.
  uint32_t FreeCredits(const TopicGroup& topic_group) const {
    int64_t free = 0;
    for (const Session* session : topic_group.sessions) {
      free += int64_t{session->max_in_flight} - int64_t(leases_.HeldBy(session->id));
    }
    free -= int64_t{topic_group.reserved} + int64_t(topic_group.ready.size());
    return free > 0 ? static_cast<uint32_t>(free) : 0;
  }

  // Moves a group forward: hands out waiting messages, claims redeliveries,
  // and reads new entries, as far as its credits go.
  void Kick(TopicGroup& topic_group) {
    if (shutting_down_ || !command_ready() || !lane_ready_[topic_group.lane]) return;
    if (topic_group.sessions.empty()) {
      ReleaseHeld(topic_group);
      return;
    }
    if (topic_group.existence != TopicGroup::Existence::kReady) {
      EnsureGroupExists(topic_group);
      return;
    }
    HandOutReady(topic_group);
    if (!topic_group.redeliveries.empty()) ClaimRedeliveries(topic_group);
    if (FreeCredits(topic_group) == 0) return;
    if (!topic_group.drained) {
      if (!topic_group.probing) Probe(topic_group);
      return;
    }
    EnsureBlocking(topic_group.group);
  }

  // A group without local sessions gives back what this process holds for
  // it (read or released entries waiting for a consumer): marked idle past
  // the ack deadline, they are reclaimed by the next pass of any replica,
  // this one included, instead of waiting here for a local consumer.
  void ReleaseHeld(TopicGroup& topic_group) {
    std::vector<std::string> ids;
    for (const std::deque<Held>* held : {&topic_group.ready, &topic_group.redeliveries}) {
      for (const Held& entry : *held) ids.push_back(entry.id);
    }
    topic_group.ready.clear();
    topic_group.redeliveries.clear();
    if (ids.empty()) return;
    Command command(8 + ids.size());
    command.Add("XCLAIM").Add(topic_group.topic).Add(topic_group.group).Add(consumer_).Add("0");
    for (const std::string& id : ids) {
      command.Add(id);
      topic_group.owned.erase(id);
    }
    command.Add("IDLE").Add(absl::ToInt64Milliseconds(topic_group.policy.ack_deadline));
    command.Add("JUSTID");
    SendCommand(topic_group.lane, std::move(command),
                [this, &topic_group](absl::StatusOr<Reply> reply) {
                  if (IsNoGroup(reply)) OnGroupLost(topic_group);
                });
  }

  // XGROUP CREATE ... 0 MKSTREAM: the group reads from the start of retained
  // history. An existing group (BUSYGROUP) is fine.
  void EnsureGroupExists(TopicGroup& topic_group) {
    if (topic_group.existence != TopicGroup::Existence::kUnknown) return;
    topic_group.existence = TopicGroup::Existence::kCreating;
    SendCommand(
        topic_group.lane,
        Command::Of({"XGROUP", "CREATE", topic_group.topic, topic_group.group, "0", "MKSTREAM"}),
        [this, &topic_group](absl::StatusOr<Reply> reply) {
          if (reply.ok() && (!reply->is_error() || HasErrorCode(reply->str, "BUSYGROUP"))) {
            topic_group.existence = TopicGroup::Existence::kReady;
            topic_group.drained = false;
            Kick(topic_group);
            return;
          }
          const absl::Status error = reply.ok() ? reply->status() : reply.status();
          // UNAVAILABLE: retried when the connection is back. Anything
          // else: retried by the next maintenance pass.
          topic_group.existence = error.code() == absl::StatusCode::kUnavailable
                                      ? TopicGroup::Existence::kUnknown
                                      : TopicGroup::Existence::kFailed;
          if (topic_group.existence == TopicGroup::Existence::kFailed) {
            SB_LOG(kWarning, "cannot create consumer group '", topic_group.group, "' on '",
                   topic_group.topic, "': ", error.message());
          }
        });
  }

  // The group vanished from Redis (a flush, or a restart without
  // persistence): create it again. What this process held went with it.
  void OnGroupLost(TopicGroup& topic_group) {
    if (topic_group.existence != TopicGroup::Existence::kReady) return;
    SB_LOG(kWarning, "consumer group '", topic_group.group, "' on '", topic_group.topic,
           "' is gone from redis; creating it again");
    topic_group.existence = TopicGroup::Existence::kUnknown;
    Kick(topic_group);
  }

  // A non-blocking XREADGROUP on the command connection for the group's free
  // credits.
  void Probe(TopicGroup& topic_group) {
    const uint32_t count = FreeCredits(topic_group);
    topic_group.probing = true;
    topic_group.reserved += count;
    SendCommand(topic_group.lane,
                ReadCommand(topic_group.group, {&topic_group}, count, std::nullopt),
                [this, &topic_group, count](absl::StatusOr<Reply> reply) {
                  topic_group.probing = false;
                  topic_group.reserved -= count;
                  if (IsNoGroup(reply)) {
                    OnGroupLost(topic_group);
                    return;
                  }
                  // Transport failures: reads resume when the connection is
                  // back, or on the next maintenance pass.
                  if (!reply.ok()) return;
                  if (reply->is_error()) {
                    SB_LOG(kWarning, "reading group '", topic_group.group, "' of '",
                           topic_group.topic, "' failed: ", reply->str);
                    topic_group.existence = TopicGroup::Existence::kFailed;
                    return;
                  }
                  const size_t read = TakeReadEntries(reply, {&topic_group})[0];
                  // Fewer than asked: nothing more is there for now.
                  topic_group.drained = read < count;
                  Kick(topic_group);
                });
  }

  Command ReadCommand(const std::string& group, const std::vector<TopicGroup*>& topics,
                      uint32_t count, std::optional<absl::Duration> block) {
    Command command(7 + (block ? 2 : 0) + 2 * topics.size());
    command.Add("XREADGROUP").Add("GROUP").Add(group).Add(consumer_);
    command.Add("COUNT").Add(int64_t{count});
    if (block) command.Add("BLOCK").Add(absl::ToInt64Milliseconds(*block));
    command.Add("STREAMS");
    for (const TopicGroup* topic_group : topics) command.Add(topic_group->topic);
    for (size_t i = 0; i < topics.size(); ++i) command.Add(">");
    return command;
  }

  // Queues the entries of an XREADGROUP reply ([[stream, [entry...]]...],
  // nil when there were none) for their groups. Returns how many per topic,
  // index-aligned with `topics`.
  std::vector<size_t> TakeReadEntries(const absl::StatusOr<Reply>& reply,
                                      const std::vector<TopicGroup*>& topics) {
    std::vector<size_t> taken(topics.size(), 0);
    if (!reply.ok() || !reply->is_array()) return taken;
    for (const Reply& stream : reply->elements) {
      if (!stream.is_array() || stream.elements.size() != 2) continue;
      auto topic_group = std::find_if(topics.begin(), topics.end(), [&](const TopicGroup* t) {
        return t->topic == stream.elements[0].str;
      });
      if (topic_group == topics.end()) continue;
      for (const Reply& entry : stream.elements[1].elements) {
        std::optional<Message> message =
            redis::MessageFromStreamEntry(entry, (*topic_group)->topic);
        if (!message) continue;
        Own(**topic_group, std::move(*message), /*attempt=*/1);
        ++taken[topic_group - topics.begin()];
      }
    }
    return taken;
  }

  // Takes `message` into the group's waiting messages.
  void Own(TopicGroup& topic_group, Message message, uint32_t attempt) {
    std::string id = message.id;
    topic_group.owned[id] = std::make_shared<const Message>(std::move(message));
    topic_group.ready.push_back(Held{std::move(id), attempt});
  }

  // Hands waiting messages to the sessions with credit, taking turns.
  void HandOutReady(TopicGroup& topic_group) {
    const size_t members = topic_group.sessions.size();
    std::vector<std::vector<Delivery>> batches(members);
    const absl::Time now = clock_.Now();
    for (size_t without_credit = 0; without_credit < members && !topic_group.ready.empty();) {
      const size_t turn = topic_group.next_turn;
      topic_group.next_turn = (turn + 1) % members;
      const Session& session = *topic_group.sessions[turn];
      if (leases_.HeldBy(session.id) >= session.max_in_flight) {
        ++without_credit;
        continue;
      }
      without_credit = 0;
      Held held = std::move(topic_group.ready.front());
      topic_group.ready.pop_front();
      if (held.attempt > 1) observer_.OnRedelivered(topic_group.topic, topic_group.group);
      Delivery& delivery = batches[turn].emplace_back();
      delivery.ack_id =
          leases_.Grant(Lease{session.id, held.id, held.attempt, now + session.ack_deadline});
      delivery.message = *topic_group.owned.at(held.id);
      delivery.delivery_attempt = held.attempt;
    }
    for (size_t i = 0; i < members; ++i) {
      if (batches[i].empty()) continue;
      topic_group.sessions[i]->sink->Invoke(
          [&](ConsumerSink& sink) { sink.OnDeliveries(std::move(batches[i])); });
    }
  }

  // XCLAIM to this process' consumer: Redis counts the delivery, and entries
  // trimmed away meanwhile are not returned (they are gone for good).
  void ClaimRedeliveries(TopicGroup& topic_group) {
    const size_t count =
        std::min<size_t>(FreeCredits(topic_group), topic_group.redeliveries.size());
    if (count == 0) return;
    std::vector<Held> claimed(topic_group.redeliveries.begin(),
                              topic_group.redeliveries.begin() + count);
    topic_group.redeliveries.erase(topic_group.redeliveries.begin(),
                                   topic_group.redeliveries.begin() + count);
    topic_group.reserved += count;
    Command command(5 + count);
    command.Add("XCLAIM").Add(topic_group.topic).Add(topic_group.group).Add(consumer_).Add("0");
    for (const Held& held : claimed) command.Add(held.id);
    SendCommand(topic_group.lane, std::move(command),
                [this, &topic_group, claimed = std::move(claimed)](absl::StatusOr<Reply> reply) {
                  topic_group.reserved -= claimed.size();
                  if (!reply.ok() || reply->is_error()) {
                    // Try again later; a lost group took them with it.
                    if (IsNoGroup(reply)) {
                      for (const Held& held : claimed) topic_group.owned.erase(held.id);
                      OnGroupLost(topic_group);
                      return;
                    }
                    topic_group.redeliveries.insert(topic_group.redeliveries.begin(),
                                                    claimed.begin(), claimed.end());
                    return;
                  }
                  std::set<std::string> present;
                  for (const Reply& entry : reply->elements) {
                    if (entry.is_array() && !entry.elements.empty())
                      present.insert(entry.elements[0].str);
                  }
                  for (const Held& held : claimed) {
                    if (present.count(held.id) > 0) {
                      topic_group.ready.push_back(held);
                    } else {
                      topic_group.owned.erase(held.id);
                    }
                  }
                  Kick(topic_group);
                });
  }

  absl::Status Fail(Session& session, absl::string_view ack_id) {
    absl::StatusOr<Lease> lease = leases_.Release(ack_id, session.id);
    if (!lease.ok()) return lease.status();
    FailDelivery(*session.topic_group, *lease);
    return absl::OkStatus();
  }

  // A delivery ended without an ack (nack, expiry, release): redeliver it, or
  // dead-letter it when it used the last attempt.
  void FailDelivery(TopicGroup& topic_group, const Lease& lease) {
    if (lease.delivery_attempt < topic_group.policy.max_delivery_attempts) {
      topic_group.redeliveries.push_back(Held{lease.message_id, lease.delivery_attempt + 1});
      return;
    }
    DeadLetter(topic_group, lease.message_id, lease.delivery_attempt);
  }

  // XADDs the message to the dead-letter topic, then XACKs it. When the XADD
  // fails the entry stays pending, unrefreshed, and is reclaimed later.
  void DeadLetter(TopicGroup& topic_group, const std::string& id, uint32_t attempts) {
    auto owned = topic_group.owned.find(id);
    if (owned == topic_group.owned.end()) return;
    const Message& message = *owned->second;
    OutgoingMessage dead_letter{message.payload, message.attributes};
    dead_letter.attributes[kDeadLetterAttemptsAttribute] = absl::StrCat(attempts);
    dead_letter.attributes[kDeadLetterOriginalIdAttribute] = message.id;
    dead_letter.attributes[kDeadLetterOriginalTopicAttribute] = message.topic;
    // Stream ids are per stream: a dead letter written in the millisecond of
    // its original would repeat the original's id. Asking for a later
    // millisecond (by Redis' time, which this host's real clock estimates)
    // keeps it a new message.
    const int64_t original_ms = absl::ToUnixMillis(message.publish_time);
    const std::string dead_letter_id =
        absl::StrCat(std::max(absl::ToUnixMillis(io_clock_.Now()), original_ms + 1), "-*");
    topic_group.owned.erase(owned);
    AppendDeadLetter(topic_group, id, dead_letter_id, std::move(dead_letter));
  }

  void AppendDeadLetter(TopicGroup& topic_group, const std::string& id,
                        const std::string& dead_letter_id, OutgoingMessage dead_letter) {
    const std::string dead_letter_topic =
        absl::StrCat(topic_group.topic, topic_group.policy.dead_letter_suffix);
    Command command =
        redis::StreamAppendCommand(dead_letter_topic, policies_.Resolve(dead_letter_topic).max_len,
                                   dead_letter_id, dead_letter);
    SendCommand(topic_group.lane, std::move(command),
                [this, &topic_group, id, dead_letter_id,
                 dead_letter = std::move(dead_letter)](absl::StatusOr<Reply> reply) mutable {
                  // The dead-letter stream is ahead of this host's clock: let Redis pick.
                  if (reply.ok() && reply->is_error() && dead_letter_id != "*" &&
                      absl::StrContains(reply->str, "equal or smaller")) {
                    AppendDeadLetter(topic_group, id, "*", std::move(dead_letter));
                    return;
                  }
                  if (!reply.ok() || reply->is_error()) {
                    SB_LOG(kWarning, "cannot dead-letter ", id, " of '", topic_group.topic,
                           "': ", (reply.ok() ? reply->status() : reply.status()).message());
                    return;
                  }
                  observer_.OnDeadLettered(topic_group.topic, topic_group.group);
                  Acknowledge(topic_group, {id});
                });
  }

  void Acknowledge(TopicGroup& topic_group, const std::vector<std::string>& ids) {
    Command command(3 + ids.size());
    command.Add("XACK").Add(topic_group.topic).Add(topic_group.group);
    for (const std::string& id : ids) command.Add(id);
    // An ack that fails leaves the entry pending, unrefreshed: it is reclaimed
    // and delivered again after the ack deadline (at-least-once).
    SendCommand(topic_group.lane, std::move(command), [](absl::StatusOr<Reply>) {});
  }

  void OnLeaseExpired(Lease lease) {
    TopicGroup& topic_group = *sessions_.at(lease.session).topic_group;
    observer_.OnLeaseExpired(topic_group.topic, topic_group.group);
    FailDelivery(topic_group, lease);
    Kick(topic_group);
  }

  // -- Blocking reads -----------------------------------------------------------

  // Gives group `name` a reader connection: a free one while fewer than the
  // cap are in use, else the least shared.
  void AssignReader(const std::string& name, GroupReads& group) {
    size_t chosen = kNoReader;
    for (size_t i = 0; i < readers_.size() && chosen == kNoReader; ++i) {
      if (readers_[i].groups.empty()) chosen = i;
    }
    if (chosen == kNoReader &&
        readers_.size() < std::max<uint32_t>(1, options_.max_reader_connections)) {
      readers_.emplace_back();
      chosen = readers_.size() - 1;
    }
    if (chosen == kNoReader) {
      chosen = 0;
      for (size_t i = 1; i < readers_.size(); ++i) {
        if (readers_[i].groups.size() < readers_[chosen].groups.size()) chosen = i;
      }
    }
    group.reader = chosen;
    readers_[chosen].groups.push_back(name);
    io_.Run([chosen](Io* io) {
      if (io != nullptr) io->OpenReader(chosen);
    });
  }

  // A group without sessions gives its reader back, and an unused reader
  // closes (DESIGN.md §3: one per active group).
  void ReleaseReaderIfIdle(const std::string& name) {
    GroupReads& group = groups_[name];
    if (group.reader == kNoReader) return;
    for (const TopicGroup* topic_group : group.topics) {
      if (!topic_group->sessions.empty()) return;
    }
    if (group.blocking) {
      Unblock(group);  // Released when the read returns.
      return;
    }
    ReaderSlot& slot = readers_[group.reader];
    slot.groups.erase(std::find(slot.groups.begin(), slot.groups.end(), name));
    slot.waiting.erase(std::remove(slot.waiting.begin(), slot.waiting.end(), name),
                       slot.waiting.end());
    const size_t index = group.reader;
    group.reader = kNoReader;
    if (!slot.groups.empty()) return;
    slot.ready = false;
    io_.Run([index](Io* io) {
      if (io != nullptr) io->CloseReader(index);
    });
  }

  void Unblock(GroupReads& group) {
    if (group.unblock_requested) return;
    group.unblock_requested = true;
    io_.Run([index = group.reader](Io* io) {
      if (io != nullptr) io->Unblock(index);
    });
  }

  // Starts (or widens) the blocking read of group `name` over its drained
  // topics that have credit.
  void EnsureBlocking(const std::string& name) {
    if (shutting_down_) return;
    GroupReads& group = groups_[name];
    if (group.reader == kNoReader) return;
    std::vector<TopicGroup*> wanted;
    for (TopicGroup* topic_group : group.topics) {
      const bool covered = std::find(group.blocking_topics.begin(), group.blocking_topics.end(),
                                     topic_group) != group.blocking_topics.end();
      if (topic_group->existence == TopicGroup::Existence::kReady && topic_group->drained &&
          (covered || FreeCredits(*topic_group) > 0)) {
        wanted.push_back(topic_group);
      }
    }
    if (group.blocking) {
      // A topic the pending read does not cover needs a new read.
      for (TopicGroup* topic_group : wanted) {
        if (std::find(group.blocking_topics.begin(), group.blocking_topics.end(), topic_group) ==
            group.blocking_topics.end()) {
          Unblock(group);
          break;
        }
      }
      return;
    }
    if (wanted.empty()) return;
    ReaderSlot& slot = readers_[group.reader];
    if (!slot.ready || !command_ready()) return;
    if (!slot.reading.empty()) {
      if (std::find(slot.waiting.begin(), slot.waiting.end(), name) == slot.waiting.end()) {
        slot.waiting.push_back(name);
      }
      return;
    }
    uint32_t count = std::numeric_limits<uint32_t>::max();
    for (TopicGroup* topic_group : wanted) count = std::min(count, FreeCredits(*topic_group));
    const absl::Duration block =
        options_.block_time / static_cast<int64_t>(std::max<size_t>(1, slot.groups.size()));
    // The read holds no credits: claims and reclaims may use them meanwhile,
    // and what it brings beyond them waits in `ready` (at most `count` per
    // topic).
    group.blocking = true;
    group.blocking_topics = wanted;
    group.blocking_count = count;
    slot.reading = name;
    Anchor<State> self = self_;
    io_.Run([index = group.reader, command = ReadCommand(name, wanted, count, block),
             timeout = block + options_.connection.command_timeout, self, name](Io* io) {
      auto back = [self, name](absl::StatusOr<Reply> reply) {
        self.Run([name, reply = std::move(reply)](State* state) mutable {
          if (state != nullptr) state->OnBlockingRead(name, std::move(reply));
        });
      };
      if (io == nullptr) return;
      io->BlockingRead(index, command, timeout, std::move(back));
    });
  }

  void OnBlockingRead(const std::string& name, absl::StatusOr<Reply> reply) {
    GroupReads& group = groups_[name];
    ReaderSlot& slot = readers_[group.reader];
    const std::vector<TopicGroup*> topics = std::move(group.blocking_topics);
    group.blocking_topics.clear();
    group.blocking = false;
    group.unblock_requested = false;
    slot.reading.clear();
    if (IsNoGroup(reply)) {
      for (TopicGroup* topic_group : topics) OnGroupLost(*topic_group);
    } else if (reply.ok() && reply->is_error()) {
      SB_LOG(kWarning, "blocking read of group '", name, "' failed: ", reply->str);
      for (TopicGroup* topic_group : topics) {
        topic_group->existence = TopicGroup::Existence::kFailed;
      }
    } else {
      // A topic that filled the read's COUNT may have more waiting behind:
      // probe it before blocking again.
      const std::vector<size_t> taken = TakeReadEntries(reply, topics);
      for (size_t i = 0; i < topics.size(); ++i) {
        topics[i]->drained = taken[i] < group.blocking_count;
      }
    }
    ReleaseReaderIfIdle(name);
    // Another group's turn on a shared reader, then this group's next read.
    if (!slot.waiting.empty()) {
      std::string next = std::move(slot.waiting.front());
      slot.waiting.pop_front();
      EnsureBlocking(next);
    }
    for (TopicGroup* topic_group : topics) Kick(*topic_group);
    if (slot.in_barrier) {
      slot.in_barrier = false;
      --barrier_waits_;
      MaybeIdle();
    }
  }

  // -- Maintenance (every maintenance_interval, real time) ------------------------

  void Maintain() {
    if (shutting_down_) return;
    SampleLocalState();
    if (!command_ready()) return;
    for (auto& [key, topic_group] : topic_groups_) {
      if (!lane_ready_[topic_group.lane]) continue;
      if (topic_group.existence == TopicGroup::Existence::kFailed) {
        topic_group.existence = TopicGroup::Existence::kUnknown;
      }
      RefreshOwned(topic_group);
      Reclaim(topic_group);
      SampleLag(topic_group);
      Kick(topic_group);
    }
  }

  // What this process holds, whatever Redis' state: every group's leases in
  // flight, and the subscriber buffers.
  void SampleLocalState() {
    for (const auto& [key, topic_group] : topic_groups_) {
      observer_.OnLeasesInFlight(topic_group.topic, topic_group.group,
                                 leases_.HeldByAll(topic_group.sessions));
    }
    observer_.OnSubscriberBufferFill(FullestBufferByPattern(subscribers_));
  }

  // Redis' own count of the entries the group has not read yet (XINFO
  // GROUPS `lag`; nil while Redis cannot tell, after deletions).
  void SampleLag(TopicGroup& topic_group) {
    if (topic_group.existence != TopicGroup::Existence::kReady || topic_group.sessions.empty()) {
      return;
    }
    SendCommand(topic_group.lane, Command::Of({"XINFO", "GROUPS", topic_group.topic}),
                [this, &topic_group](absl::StatusOr<Reply> reply) {
                  if (!reply.ok() || !reply->is_array()) return;
                  for (const Reply& group : reply->elements) {
                    std::optional<int64_t> lag = GroupLag(group, topic_group.group);
                    if (lag.has_value()) {
                      observer_.OnConsumerLag(topic_group.topic, topic_group.group,
                                              static_cast<uint64_t>(*lag));
                    }
                  }
                });
  }

  // The `lag` of one XINFO GROUPS element (a flat field/value array) if it
  // describes group `name` and Redis knows it.
  static std::optional<int64_t> GroupLag(const Reply& group, absl::string_view name) {
    bool named = false;
    std::optional<int64_t> lag;
    for (size_t i = 0; i + 1 < group.elements.size(); i += 2) {
      const std::string& field = group.elements[i].str;
      const Reply& value = group.elements[i + 1];
      if (field == "name") named = value.str == name;
      if (field == "lag" && value.type == Reply::Type::kInteger) lag = value.integer;
    }
    return named ? lag : std::nullopt;
  }

  // XCLAIM ... JUSTID resets the idle time of the entries this process holds
  // without counting a delivery, so no replica reclaims a live lease.
  void RefreshOwned(TopicGroup& topic_group) {
    if (topic_group.existence != TopicGroup::Existence::kReady) return;
    auto next = topic_group.owned.begin();
    while (next != topic_group.owned.end()) {
      std::vector<std::string> ids;
      for (; next != topic_group.owned.end() && ids.size() < kRefreshBatch; ++next) {
        ids.push_back(next->first);
      }
      Command command(6 + ids.size());
      command.Add("XCLAIM").Add(topic_group.topic).Add(topic_group.group).Add(consumer_).Add("0");
      for (const std::string& id : ids) command.Add(id);
      command.Add("JUSTID");
      SendCommand(topic_group.lane, std::move(command),
                  [this, &topic_group](absl::StatusOr<Reply> reply) {
                    if (IsNoGroup(reply)) OnGroupLost(topic_group);
                  });
    }
  }

  // XAUTOCLAIM takes entries idle longer than the ack deadline: leases of a
  // process that died (or entries this one could not ack). Their attempt is
  // Redis' delivery count (XPENDING); one past the last attempt dead-letters.
  void Reclaim(TopicGroup& topic_group) {
    if (topic_group.existence != TopicGroup::Existence::kReady || topic_group.reclaiming ||
        topic_group.sessions.empty()) {
      return;
    }
    const uint32_t count = FreeCredits(topic_group);
    if (count == 0) return;
    topic_group.reclaiming = true;
    topic_group.reserved += count;
    SendCommand(
        topic_group.lane,
        Command::Of({"XAUTOCLAIM", topic_group.topic, topic_group.group, consumer_,
                     absl::StrCat(absl::ToInt64Milliseconds(topic_group.policy.ack_deadline)),
                     topic_group.reclaim_cursor, "COUNT", absl::StrCat(count)}),
        [this, &topic_group, count](absl::StatusOr<Reply> reply) {
          if (!reply.ok() || !reply->is_array() || reply->elements.size() < 2) {
            if (IsNoGroup(reply)) OnGroupLost(topic_group);
            EndReclaim(topic_group, count);
            return;
          }
          topic_group.reclaim_cursor = reply->elements[0].str;
          std::vector<Message> reclaimed;
          for (const Reply& entry : reply->elements[1].elements) {
            std::optional<Message> message =
                redis::MessageFromStreamEntry(entry, topic_group.topic);
            // Held here already: a refresh came late; keep the local lease.
            if (message && topic_group.owned.count(message->id) == 0) {
              reclaimed.push_back(*std::move(message));
            }
          }
          CountReclaimed(topic_group, count, std::move(reclaimed));
        });
  }

  // Looks up Redis' delivery count of each reclaimed entry, then queues them.
  void CountReclaimed(TopicGroup& topic_group, uint32_t reserved, std::vector<Message> reclaimed) {
    if (reclaimed.empty()) {
      EndReclaim(topic_group, reserved);
      return;
    }
    std::vector<Command> commands;
    for (const Message& message : reclaimed) {
      commands.push_back(Command::Of(
          {"XPENDING", topic_group.topic, topic_group.group, message.id, message.id, "1"}));
    }
    SendCommands(
        topic_group.lane, std::move(commands),
        [this, &topic_group, reserved, reclaimed = std::move(reclaimed)](Replies replies) mutable {
          for (size_t i = 0; i < reclaimed.size(); ++i) {
            const absl::StatusOr<Reply>& pending = replies[i];
            // [[id, consumer, idle, count]]
            if (!pending.ok() || !pending->is_array() || pending->elements.size() != 1 ||
                pending->elements[0].elements.size() != 4) {
              continue;  // Left pending: reclaimed again later.
            }
            const uint32_t attempt =
                static_cast<uint32_t>(pending->elements[0].elements[3].integer);
            const std::string id = reclaimed[i].id;
            Own(topic_group, std::move(reclaimed[i]), attempt);
            if (attempt > topic_group.policy.max_delivery_attempts) {
              // Its attempts were used up on the process that died.
              topic_group.ready.pop_back();
              DeadLetter(topic_group, id, attempt - 1);
            }
          }
          EndReclaim(topic_group, reserved);
        });
  }

  // The reclaim pass is over: its credits go back to reads and claims, which
  // it may have held up meanwhile.
  void EndReclaim(TopicGroup& topic_group, uint32_t reserved) {
    topic_group.reclaiming = false;
    topic_group.reserved -= reserved;
    Kick(topic_group);
  }

  // -- Members --------------------------------------------------------------------

  common::Clock& clock_;     // Leases and ephemeral ids.
  common::Clock& io_clock_;  // Real time, close to Redis' own.
  const RedisBrokerOptions& options_;
  const std::string consumer_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  std::atomic<bool>& serving_;
  Anchor<Io> io_;
  Anchor<State> self_;
  // Subscribed for Sync() barriers; never carries user messages.
  const std::string sync_channel_;

  // Whether each command lane's connection is ready: the shared one (which
  // decides health), then one per exclusive declaration.
  std::vector<bool> lane_ready_ = {false};
  std::map<const TopicPolicy*, size_t> exclusive_lanes_;
  bool subscriber_ready_ = false;
  bool restoring_ = false;  // Subscriptions are being renewed after a reconnect.
  std::vector<absl::AnyInvocable<void(bool)>> health_watchers_;
  bool shutting_down_ = false;
  absl::AnyInvocable<void()> on_idle_;

  size_t busy_ = 0;  // Commands sent whose replies are not handled yet.
  bool barrier_started_ = false;
  size_t barrier_waits_ = 0;
  bool awaiting_sync_message_ = false;
  std::vector<absl::AnyInvocable<void()>> sync_waiters_;       // Of the barrier under way.
  std::vector<absl::AnyInvocable<void()>> next_sync_waiters_;  // Of the next one.

  MessageIdGenerator ids_;
  std::map<uint64_t, Subscriber> subscribers_;
  SubscriberIndex subscriber_index_;
  std::map<std::string, Channel> channels_;  // By subscription pattern.

  // std::map keeps addresses stable: sessions and reads point at groups.
  std::map<std::pair<std::string, std::string>, TopicGroup> topic_groups_;
  std::map<std::string, GroupReads> groups_;  // By group name.
  std::deque<ReaderSlot> readers_;            // By index; a deque keeps references stable.
  std::map<uint64_t, Session> sessions_;
  // Last: its expiry callback uses the members above.
  LeaseTable leases_;
};

// ---------------------------------------------------------------------------
// Handles and the public surface.

RedisBroker::RedisBroker(event::Dispatcher& dispatcher, event::DispatcherImpl& io,
                         RedisBrokerOptions options, TopicPolicies policies,
                         BrokerObserver& observer, redis::ConnectionObserver& connection_observer)
    : dispatcher_(dispatcher),
      io_dispatcher_(io),
      options_(std::move(options)),
      policies_(std::move(policies)),
      io_(std::make_unique<Io>(io, options_, policies_, connection_observer)),
      state_(std::make_unique<State>(dispatcher, io.clock(), options_, policies_, observer,
                                     serving_, io_->anchor())),
      gate_(dispatcher, state_.get(), ShutDownError()) {
  io_dispatcher_.Post(
      [io = io_.get(), events = state_->IoEvents()]() mutable { io->Start(std::move(events)); });
}

RedisBroker::~RedisBroker() { Shutdown(); }

void RedisBroker::Publish(std::string topic, std::vector<OutgoingMessage> messages,
                          PublishCallback done) {
  gate_.Publish(std::move(topic), std::move(messages), std::move(done));
}

absl::StatusOr<std::unique_ptr<Subscription>> RedisBroker::Subscribe(absl::string_view topic,
                                                                     SubscriberSink& sink) {
  SB_ASSIGN_OR_RETURN(const TopicPolicy* policy, policies_.ResolveSubscribable(topic));
  if (!serving_.load()) return absl::UnavailableError("redis is unreachable");
  return gate_.Subscribe(std::string(topic), *policy, sink);
}

absl::StatusOr<std::unique_ptr<ConsumerSession>> RedisBroker::Consume(ConsumeOptions options,
                                                                      ConsumerSink& sink) {
  SB_RETURN_IF_ERROR(policies_.CheckConsumable(options.topic));
  if (!serving_.load()) return absl::UnavailableError("redis is unreachable");
  return gate_.Consume(std::move(options), sink);
}

void RedisBroker::WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) {
  gate_.Run([watcher = std::move(watcher)](State* state) mutable {
    if (state == nullptr) {
      watcher(false);
      return;
    }
    state->WatchHealth(std::move(watcher));
  });
}

void RedisBroker::Sync(absl::AnyInvocable<void()> done) {
  gate_.Run([done = std::move(done)](State* state) mutable {
    if (state == nullptr) {
      done();
      return;
    }
    state->Sync(std::move(done));
  });
}

void RedisBroker::Shutdown() {
  if (!gate_.Close()) return;
  // In order: let pending commands finish, end the handles, close the
  // connections, then free the state and the I/O side on their threads.
  // Each step is posted, never inline, so no step frees what runs it.
  absl::Notification stopped;
  dispatcher_.Post([this, &stopped] {
    state_->BeginShutdown([this, &stopped] {
      state_->CloseAll(gate_.shut_down_error());
      io_dispatcher_.Post([this, &stopped] {
        io_->CloseAll();
        dispatcher_.Post([this, &stopped] {
          state_.reset();
          io_dispatcher_.Post([this, &stopped] {
            io_.reset();
            stopped.Notify();
          });
        });
      });
    });
  });
  stopped.WaitForNotification();
}

}  // namespace switchboard::broker
