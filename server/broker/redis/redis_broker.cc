#include "server/broker/redis/redis_broker.h"

#include <unistd.h>

#include <optional>
#include <random>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/broker/message_id.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/connection_set.h"
#include "server/broker/redis/lease_keeper.h"
#include "server/broker/redis/message_codec.h"
#include "server/broker/redis/partitions.h"
#include "server/broker/redis/pubsub_channels.h"
#include "server/broker/redis/pubsub_commands.h"
#include "server/broker/redis/stream_groups.h"
#include "server/broker/redis/sync_barrier.h"
#include "server/common/log.h"
#include "server/common/status_macros.h"
#include "server/event/anchor.h"

namespace switchboard::broker {
namespace {

using event::Anchor;
using redis::Command;
using redis::ConnectionSet;
using redis::Replies;
using redis::Reply;
using redis::ShutDownError;

uint64_t RandomTag() {
  std::random_device random;
  return (uint64_t{random()} << 32) ^ random();
}

std::string DefaultConsumerName() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, ":", getpid(), ":", absl::Hex(RandomTag() & 0xffffffff));
}

// Topics whose average entry size a replica keeps (AverageEntryBytes).
constexpr size_t kMaxAveragedTopics = 10000;

// The messages one dedup script call appends at most: Redis runs nothing
// else while a script runs (about 5 µs a message).
constexpr size_t kMaxDedupAppendsPerScript = 100;

// How long an ordering partition's owner key lives: five maintenance passes,
// so that renewals may fail a few times before the owner must give it up.
absl::Duration PartitionTtl(const RedisBrokerOptions& options) {
  return 5 * options.maintenance_interval;
}

// FAILED_PRECONDITION for a keyed message on a durable topic without
// ordering partitions: this backend keeps keys in order across replicas only
// through them.
absl::Status CheckOrderingKeys(const std::string& topic, const TopicPolicy& policy,
                               const std::vector<OutgoingMessage>& messages) {
  if (policy.kind != TopicKind::kDurable || policy.ordering_partitions > 0) {
    return absl::OkStatus();
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].ordering_key.empty()) continue;
    return absl::FailedPreconditionError(absl::StrCat(
        "messages[", i, "].ordering_key: topic '", topic,
        "' has no ordering partitions; on the redis backend a topic keeps ordering keys only "
        "when declared with ordering_partitions (config topics[].ordering_partitions)"));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------
// State: everything the broker knows, on the broker's dispatcher. Routes the
// broker's calls and the connection events to its components, and owns
// health, publishing and shutdown.

class RedisBroker::State {
 public:
  State(event::Dispatcher& dispatcher, common::Clock& io_clock, const RedisBrokerOptions& options,
        const TopicPolicies& policies, BrokerObserver& observer, std::atomic<bool>& serving,
        Anchor<ConnectionSet> connections)
      : clock_(dispatcher.clock()),
        policies_(policies),
        address_(absl::StrCat(options.connection.host, ":", options.connection.port)),
        command_timeout_(options.connection.command_timeout),
        serving_(serving),
        self_(dispatcher, this),
        lanes_(dispatcher, connections, policies, [this] { OnLanesIdle(); }),
        channels_(connections, observer, [this] { RefreshHealth(); }),
        groups_(dispatcher, io_clock,
                options.consumer_name.empty() ? DefaultConsumerName() : options.consumer_name,
                policies, observer, lanes_, connections,
                redis::BlockingReadOptions{options.max_reader_connections, options.block_time,
                                           options.connection.command_timeout},
                PartitionTtl(options), options.maintenance_interval),
        keeper_(groups_, lanes_, observer) {
    if (options.enable_sync_barrier) {
      barrier_.emplace(absl::StrCat("switchboard:sync:", absl::Hex(RandomTag(), absl::kZeroPad16)),
                       lanes_, channels_, groups_.reads());
    }
  }

  ~State() { self_.Clear(); }

  // The connections' events, each hopping to this state.
  ConnectionSet::Events ConnectionEvents() {
    Anchor<State> self = self_;
    return ConnectionSet::Events{[self](size_t lane, bool ready) {
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
                                     if (state != nullptr) state->channels_.OnPush(std::move(push));
                                   });
                                 },
                                 [self](size_t reader, bool ready) {
                                   self.Run([reader, ready](State* state) {
                                     if (state != nullptr) {
                                       state->groups_.reads().OnReaderState(reader, ready);
                                     }
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
    if (!barrier_) {
      SB_LOG(kError, "RedisBroker::Sync needs RedisBrokerOptions::enable_sync_barrier");
      done();
      return;
    }
    barrier_->Sync(std::move(done));
  }

  // Stops starting new work and runs `on_idle` once no command is pending.
  void BeginShutdown(absl::AnyInvocable<void()> on_idle) {
    shutting_down_ = true;
    groups_.Stop();
    on_idle_ = std::move(on_idle);
    OnLanesIdle();
  }

  void CloseAll(const absl::Status& status) {
    channels_.CloseAll(status);
    groups_.core().CloseAll(status);
  }

  // -- Publish ----------------------------------------------------------------

  void Publish(const std::string& topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) {
    const TopicPolicy& policy = policies_.Resolve(topic);
    if (absl::Status keys = CheckOrderingKeys(topic, policy, messages); !keys.ok()) {
      done(std::move(keys));
      return;
    }
    const size_t lane = lanes_.LaneOf(policy);
    // A connection that is not ready refuses the commands at once with
    // UNAVAILABLE and the reason of its last attempt (refused, AUTH failed,
    // ...), so the worker learns why.
    if (!answering_) {
      done(absl::UnavailableError(
          "redis is not answering (no reply to a PING within the command timeout)"));
      return;
    }
    if (messages.empty()) {
      done(std::vector<std::string>());
      return;
    }
    if (policy.kind == TopicKind::kDurable) {
      AppendDurable(topic, policy, lane, messages, std::move(done));
      return;
    }
    std::vector<Command> commands;
    commands.reserve(messages.size());
    const absl::Time now = clock_.Now();
    std::vector<std::string> ids;
    ids.reserve(messages.size());
    for (OutgoingMessage& outgoing : messages) {
      Message message{ids_.Next(now), topic, std::move(outgoing.payload),
                      std::move(outgoing.attributes), now};
      commands.push_back(redis::PublishCommand(topic, redis::EncodeEphemeral(message)));
      ids.push_back(std::move(message.id));
    }
    lanes_.Send(lane, std::move(commands),
                [done = std::move(done), ids = std::move(ids)](Replies replies) mutable {
                  absl::Status error = redis::FirstError(replies);
                  if (error.ok()) {
                    done(std::move(ids));
                  } else {
                    done(std::move(error));
                  }
                });
  }

  // XADDs `messages` to `topic`'s streams: a keyed message to its key's
  // partition (its id says which), a run of messages with dedup_ids through
  // one dedup script call (each stored once per dedup window, across
  // replicas). Commands keep the messages' order.
  void AppendDurable(const std::string& topic, const TopicPolicy& policy, size_t lane,
                     const std::vector<OutgoingMessage>& messages, PublishCallback done) {
    const uint64_t max_len = MaxLenWithinBytes(policy, AverageEntryBytes(topic, policy, messages));
    std::vector<std::string> streams;
    std::vector<std::string> suffixes;
    streams.reserve(messages.size());
    suffixes.reserve(messages.size());
    for (const OutgoingMessage& message : messages) {
      if (message.ordering_key.empty()) {
        streams.push_back(topic);
        suffixes.emplace_back();
        continue;
      }
      const uint32_t partition =
          redis::PartitionOf(message.ordering_key, policy.ordering_partitions);
      streams.push_back(redis::PartitionStream(topic, partition));
      suffixes.push_back(redis::PartitionedId("", partition));
    }
    std::vector<Command> commands;
    // Per command, the suffix its XADD entry id needs to become a message id,
    // or nothing for a dedup script (its reply holds whole message ids).
    std::vector<std::optional<std::string>> reply_suffixes;
    std::vector<redis::DedupAppend> run;
    auto end_run = [&] {
      if (run.empty()) return;
      commands.push_back(redis::DedupAppendCommand(topic, max_len, policy.dedup_window, run));
      reply_suffixes.emplace_back();
      run.clear();
    };
    for (size_t i = 0; i < messages.size(); ++i) {
      if (messages[i].dedup_id.empty()) {
        end_run();
        commands.push_back(redis::StreamAppendCommand(streams[i], max_len, "*", messages[i]));
        reply_suffixes.push_back(std::move(suffixes[i]));
        continue;
      }
      run.push_back(redis::DedupAppend{streams[i], suffixes[i], &messages[i]});
      if (run.size() == kMaxDedupAppendsPerScript) end_run();
    }
    end_run();
    lanes_.Send(lane, std::move(commands),
                [done = std::move(done), reply_suffixes = std::move(reply_suffixes),
                 count = messages.size()](Replies replies) mutable {
                  if (absl::Status error = redis::FirstError(replies); !error.ok()) {
                    done(std::move(error));
                    return;
                  }
                  std::vector<std::string> ids;
                  ids.reserve(count);
                  for (size_t i = 0; i < replies.size(); ++i) {
                    if (reply_suffixes[i].has_value()) {
                      ids.push_back(absl::StrCat(replies[i]->str, *reply_suffixes[i]));
                      continue;
                    }
                    for (Reply& id : replies[i]->elements) ids.push_back(std::move(id.str));
                  }
                  if (ids.size() != count) {
                    done(absl::InternalError(absl::StrCat("redis: ", ids.size(), " ids for ", count,
                                                          " published messages")));
                    return;
                  }
                  done(std::move(ids));
                });
  }

  // The average size of the entries this replica published to `topic`,
  // `messages` included (payload, ordering key, attribute names and values):
  // what turns a topic's max_bytes into a MAXLEN. 0 for topics without
  // max_bytes. At most kMaxAveragedTopics topics keep an average; beyond,
  // the batch's own.
  double AverageEntryBytes(const std::string& topic, const TopicPolicy& policy,
                           const std::vector<OutgoingMessage>& messages) {
    if (policy.max_bytes == 0 || messages.empty()) return 0;
    double batch = 0;
    for (const OutgoingMessage& message : messages) {
      double bytes = static_cast<double>(message.payload.size() + message.ordering_key.size());
      for (const auto& [name, value] : message.attributes) bytes += name.size() + value.size();
      batch += bytes;
    }
    batch /= static_cast<double>(messages.size());
    auto average = average_entry_bytes_.find(topic);
    if (average == average_entry_bytes_.end()) {
      if (average_entry_bytes_.size() >= kMaxAveragedTopics) return batch;
      average_entry_bytes_.emplace(topic, batch);
      return batch;
    }
    // A moving average: recent sizes count most.
    average->second = 0.9 * average->second + 0.1 * batch;
    return average->second;
  }

  // -- Subscriptions and sessions (StateGate) ---------------------------------

  void AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                     std::shared_ptr<flow::SinkGuard<SubscriberSink>> sink) {
    channels_.AddSubscriber(id, std::move(pattern), policy, std::move(sink));
  }
  void RemoveSubscriber(uint64_t id) { channels_.RemoveSubscriber(id); }
  void SubscriberReady(uint64_t id) { channels_.SubscriberReady(id); }

  void AddSession(uint64_t id, ConsumeOptions options,
                  std::shared_ptr<flow::SinkGuard<ConsumerSink>> sink) {
    groups_.core().AddSession(id, std::move(options), std::move(sink));
  }
  void RemoveSession(uint64_t id) { groups_.core().RemoveSession(id); }
  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done) {
    groups_.core().Settle(id, update, std::move(done));
  }

 private:
  void OnLanesIdle() {
    if (!lanes_.idle()) return;
    if (barrier_) barrier_->MaybeRelease();
    if (on_idle_) {
      absl::AnyInvocable<void()> on_idle = std::move(on_idle_);
      on_idle_ = nullptr;
      on_idle();
    }
  }

  // -- Connection events ----------------------------------------------------------

  // After a reconnect, serving waits until the subscriptions are back, so a
  // publisher that trusts health never publishes past a subscriber. A Redis
  // that holds its connections open but answers nothing (hung, stopped) is
  // not serving either.
  bool serving() const { return lanes_.shared_ready() && channels_.serving() && answering_; }

  // Tells the watchers when serving() changed since it was last reported.
  void RefreshHealth() {
    const bool now_serving = serving();
    if (now_serving == reported_serving_) return;
    reported_serving_ = now_serving;
    serving_.store(now_serving);
    for (auto& watcher : health_watchers_) watcher(now_serving);
  }

  void OnCommandState(size_t lane, bool ready) {
    lanes_.SetReady(lane, ready);
    // A connection that came back has answered its handshake.
    if (lane == redis::kSharedLane && ready) answering_ = true;
    if (lane == redis::kSharedLane) RefreshHealth();
    if (ready) groups_.OnLaneReady(lane);
  }

  void OnSubscriberState(bool ready) {
    channels_.OnConnectionState(ready);
    if (!ready && barrier_) barrier_->OnSubscriberLost();
  }

  // Every maintenance_interval, real time.
  void Maintain() {
    if (shutting_down_) return;
    groups_.core().ReportLeasesInFlight();
    channels_.SampleBufferFill();
    if (!lanes_.shared_ready()) return;
    ProbeLiveness();
    keeper_.Pass();
  }

  // A PING on the shared command connection, one at a time: without a reply
  // within the command timeout Redis is not answering, and health says so
  // within command_timeout + maintenance_interval of the hang; the first
  // reply after that brings it back.
  void ProbeLiveness() {
    if (probing_) return;
    probing_ = true;
    lanes_.Send(
        redis::kSharedLane, redis::Command::Of({"PING"}),
        [this](absl::StatusOr<redis::Reply> reply) {
          probing_ = false;
          if (reply.ok() && !answering_) {
            answering_ = true;
            SB_LOG(kInfo, "redis at ", address_, " answers again");
            RefreshHealth();
          } else if (reply.status().code() == absl::StatusCode::kDeadlineExceeded && answering_) {
            answering_ = false;
            SB_LOG(kWarning, "redis at ", address_, " has not answered a PING within ",
                   absl::FormatDuration(command_timeout_),
                   " (hung or stopped?): Broker health is NOT_SERVING and publishes "
                   "fail with UNAVAILABLE until it answers");
            RefreshHealth();
          }
        });
  }

  // -- Members --------------------------------------------------------------------

  common::Clock& clock_;  // Ephemeral ids.
  const TopicPolicies& policies_;
  const std::string address_;  // host:port, for logs.
  const absl::Duration command_timeout_;
  std::atomic<bool>& serving_;
  Anchor<State> self_;
  bool reported_serving_ = false;
  bool answering_ = true;  // Redis answered the last liveness PING.
  bool probing_ = false;   // A liveness PING is in flight.
  std::vector<absl::AnyInvocable<void(bool)>> health_watchers_;
  bool shutting_down_ = false;
  absl::AnyInvocable<void()> on_idle_;
  MessageIdGenerator ids_;
  absl::flat_hash_map<std::string, double> average_entry_bytes_;  // By topic with max_bytes.

  redis::CommandLanes lanes_;
  redis::PubSubChannels channels_;
  redis::StreamGroups groups_;
  redis::LeaseKeeper keeper_;
  std::optional<redis::SyncBarrier> barrier_;  // Only with enable_sync_barrier.
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
      connections_(
          std::make_unique<ConnectionSet>(io, options_.connection, options_.maintenance_interval,
                                          options_.reader_linger, policies_, connection_observer)),
      state_(std::make_unique<State>(dispatcher, io.clock(), options_, policies_, observer,
                                     serving_, connections_->anchor())),
      gate_(dispatcher, state_.get(), ShutDownError()) {
  io_dispatcher_.Post(
      [connections = connections_.get(), events = state_->ConnectionEvents()]() mutable {
        connections->Start(std::move(events));
      });
}

RedisBroker::~RedisBroker() { Shutdown(); }

void RedisBroker::Publish(std::string topic, std::vector<OutgoingMessage> messages,
                          PublishCallback done) {
  gate_.Publish(std::move(topic), std::move(messages), std::move(done));
}

absl::StatusOr<std::unique_ptr<Subscription>> RedisBroker::Subscribe(absl::string_view topic,
                                                                     SubscriberSink& sink) {
  SB_ASSIGN_OR_RETURN(const TopicPolicy* policy, policies_.ResolveSubscribable(topic));
  if (!serving_.load()) return Unreachable();
  return gate_.Subscribe(std::string(topic), *policy, sink);
}

absl::StatusOr<std::unique_ptr<ConsumerSession>> RedisBroker::Consume(ConsumeOptions options,
                                                                      ConsumerSink& sink) {
  SB_RETURN_IF_ERROR(policies_.CheckConsumable(options.topic));
  if (!serving_.load()) return Unreachable();
  return gate_.Consume(std::move(options), sink);
}

absl::Status RedisBroker::Unreachable() const {
  const std::string failure = connections_->CommandFailure();
  return absl::UnavailableError(
      absl::StrCat("redis is unreachable",
                   failure.empty() ? "" : absl::StrCat(" (last attempt: ", failure, ")")));
}

void RedisBroker::WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) {
  gate_.Post([watcher = std::move(watcher)](State* state) mutable {
    if (state == nullptr) {
      watcher(false);
      return;
    }
    state->WatchHealth(std::move(watcher));
  });
}

void RedisBroker::Sync(absl::AnyInvocable<void()> done) {
  gate_.Post([done = std::move(done)](State* state) mutable {
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
        connections_->CloseAll();
        dispatcher_.Post([this, &stopped] {
          state_.reset();
          io_dispatcher_.Post([this, &stopped] {
            connections_.reset();
            stopped.Notify();
          });
        });
      });
    });
  });
  stopped.WaitForNotification();
}

}  // namespace switchboard::broker
