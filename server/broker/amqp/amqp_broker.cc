#include "server/broker/amqp/amqp_broker.h"

#include <unistd.h>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "server/broker/amqp/message_codec.h"
#include "server/broker/amqp/queue_source.h"
#include "server/broker/amqp/topology.h"
#include "server/broker/consumer_groups.h"
#include "server/broker/dedup_table.h"
#include "server/broker/subscriber_set.h"
#include "server/common/log.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"
#include "server/flow/sink_guard.h"

namespace switchboard::broker {
namespace {

using amqp::AmqpConnection;
using amqp::AmqpConnectionObserver;
using amqp::AmqpConnectionState;
using amqp::AmqpDelivery;
using amqp::AmqpMessage;
using amqp::BindingDeclaration;
using amqp::ExchangeDeclaration;
using amqp::QueueDeclaration;

using SubscriberGuard = flow::SinkGuard<SubscriberSink>;
using ConsumerGuard = flow::SinkGuard<ConsumerSink>;

// Deliveries the subscriber queue's consumer may hold: fan-out acks them as
// soon as they are offered to the subscriber buffers.
constexpr uint16_t kSubscriberPrefetch = 1000;

// The most dedup ids remembered within their windows, all topics together
// (about 200 bytes each), as the memory broker.
constexpr size_t kMaxDedupIds = 250000;

// How often held messages and subscriber buffers are reported (on the
// dispatcher's clock).
constexpr absl::Duration kSampleInterval = absl::Seconds(1);

// "<host>-<pid>-<random>": names this process' subscriber queue.
std::string ProcessTag() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return absl::StrCat("switchboard-", getpid());
  }
  absl::BitGen random;
  return absl::StrCat(host, "-", getpid(), "-", absl::Hex(absl::Uniform<uint32_t>(random)));
}

// Tells the broker's state and the metrics of one connection's changes.
class ConnectionEvents final : public AmqpConnectionObserver {
 public:
  ConnectionEvents(AmqpConnectionObserver& metrics,
                   absl::AnyInvocable<void(AmqpConnectionState)> on_change)
      : metrics_(metrics), on_change_(std::move(on_change)) {}

  void OnStateChanged(AmqpConnectionState state, const absl::Status& last_error) override {
    metrics_.OnStateChanged(state, last_error);
    on_change_(state);
  }

 private:
  AmqpConnectionObserver& metrics_;
  absl::AnyInvocable<void(AmqpConnectionState)> on_change_;
};

}  // namespace

// ---------------------------------------------------------------------------
// State: everything the broker knows, on the broker's dispatcher.

class AmqpBroker::State final : public amqp::AmqpConsumer {
 public:
  State(event::Dispatcher& dispatcher, AmqpBrokerOptions options, const TopicPolicies& policies,
        BrokerObserver& observer, AmqpConnectionObserver& publish_observer,
        AmqpConnectionObserver& consume_observer, std::atomic<bool>& serving)
      : clock_(dispatcher.clock()),
        options_(std::move(options)),
        policies_(policies),
        observer_(observer),
        serving_(serving),
        durable_exchange_(absl::StrCat(options_.name_prefix, ".durable")),
        ephemeral_exchange_(absl::StrCat(options_.name_prefix, ".ephemeral")),
        subscriber_queue_(absl::StrCat(options_.name_prefix, ".subscribers.", ProcessTag())),
        sync_key_(absl::StrCat(options_.name_prefix, ".sync.", ProcessTag())),
        publish_events_(publish_observer,
                        [this](AmqpConnectionState state) { OnPublishState(state); }),
        consume_events_(consume_observer,
                        [this](AmqpConnectionState state) { OnConsumeState(state); }),
        publisher_(dispatcher, options_.connection, "publish", publish_events_),
        consumer_(dispatcher, options_.connection, "consume", consume_events_),
        source_context_{consumer_,
                        nullptr,
                        options_.name_prefix,
                        durable_exchange_,
                        &clock_,
                        &observer,
                        [this](const std::string& topic, OutgoingMessage message,
                               absl::AnyInvocable<void(absl::Status)> done) {
                          std::vector<OutgoingMessage> one;
                          one.push_back(std::move(message));
                          Publish(topic, std::move(one),
                                  [done = std::move(done)](
                                      absl::StatusOr<std::vector<std::string>> ids) mutable {
                                    done(ids.status());
                                  });
                        }},
        subscribers_(observer, [this](const std::string& pattern) { OnPatternUnused(pattern); }),
        groups_(dispatcher, policies, observer,
                [this](ConsumerGroup& group) {
                  return std::make_unique<amqp::QueueSource>(source_context_, group);
                }),
        sample_timer_(dispatcher.CreateTimer([this] { Sample(); })) {
    source_context_.core = &groups_;
  }

  ~State() override {
    if (subscriber_consumer_ != 0) consumer_.RemoveConsumer(subscriber_consumer_);
  }

  void Start() {
    publisher_.Start();
    consumer_.Start();
  }

  const AmqpConnection& publisher() const { return publisher_; }

  // -- Health, Sync and shutdown ---------------------------------------------

  void WatchHealth(absl::AnyInvocable<void(bool)> watcher) {
    watcher(serving());
    health_watchers_.push_back(std::move(watcher));
  }

  void Sync(absl::AnyInvocable<void()> done) {
    syncs_.push_back(std::move(done));
    if (syncs_.size() > 1) return;  // The marker under way answers it too.
    SendSyncMarker();
  }

  // Stops new work and runs `on_idle` once no publish is pending.
  void BeginShutdown(absl::AnyInvocable<void()> on_idle) {
    groups_.Stop();
    on_idle_ = std::move(on_idle);
    MaybeIdle();
  }

  void CloseAll(const absl::Status& status) {
    subscribers_.CloseAll(status);
    groups_.CloseAll(status);
  }

  // -- Publish ----------------------------------------------------------------

  void Publish(const std::string& topic, std::vector<OutgoingMessage> messages,
               PublishCallback done) {
    if (!serving()) {
      done(publisher_.state() == AmqpConnectionState::kReady
               ? consumer_unavailable()
               : absl::UnavailableError(absl::StrCat("rabbitmq is unreachable (",
                                                     publisher_.last_error().message(), ")")));
      return;
    }
    if (messages.empty()) {
      done(std::vector<std::string>());
      return;
    }
    const TopicPolicy& policy = policies_.Resolve(topic);
    const bool durable = policy.kind == TopicKind::kDurable;
    const absl::Time now = clock_.Now();
    auto batch = std::make_shared<Batch>();
    batch->done = std::move(done);
    batch->ids.resize(messages.size());
    std::vector<AmqpMessage> encoded;
    encoded.reserve(messages.size());
    // Dedup ids of this batch, by the index of the message stored for them.
    absl::flat_hash_map<std::string, size_t> batch_dedup_ids;
    for (size_t i = 0; i < messages.size(); ++i) {
      OutgoingMessage& outgoing = messages[i];
      if (durable && !outgoing.dedup_id.empty()) {
        if (const std::string* first = dedup_.Find(topic, outgoing.dedup_id, now)) {
          batch->ids[i] = *first;
          continue;
        }
        auto [earlier, added] = batch_dedup_ids.try_emplace(outgoing.dedup_id, i);
        if (!added) {
          batch->copies.emplace_back(i, earlier->second);
          continue;
        }
        batch->dedup_ids.emplace_back(i, outgoing.dedup_id);
      }
      Message message{ids_.Next(now),
                      topic,
                      std::move(outgoing.payload),
                      std::move(outgoing.attributes),
                      now,
                      std::move(outgoing.ordering_key)};
      absl::StatusOr<AmqpMessage> amqp =
          amqp::EncodeMessage(message, durable ? durable_exchange_ : ephemeral_exchange_, durable);
      if (!amqp.ok()) {
        batch->done(amqp.status());
        return;
      }
      batch->ids[i] = std::move(message.id);
      encoded.push_back(*std::move(amqp));
    }
    if (!dedup_.HasRoomFor(batch->dedup_ids.size())) {
      batch->done(absl::ResourceExhaustedError(
          absl::StrCat("messages[].dedup_id: this switchboard remembers ", dedup_.size(),
                       " dedup ids within their windows, its limit of ", dedup_.max_entries())));
      return;
    }
    for (const auto& [copy, original] : batch->copies) batch->ids[copy] = batch->ids[original];
    if (encoded.empty()) {
      batch->done(std::move(batch->ids));
      return;
    }
    batch->remaining = encoded.size();
    pending_publishes_ += encoded.size();
    const absl::Time window_end = now + policy.dedup_window;
    for (AmqpMessage& message : encoded) {
      publisher_.Publish(std::move(message), [this, batch, topic, window_end](absl::Status status) {
        if (!status.ok() && batch->error.ok()) batch->error = std::move(status);
        if (--batch->remaining == 0) Complete(topic, *batch, window_end);
        --pending_publishes_;
        MaybeIdle();
      });
    }
  }

  // -- Subscribers ----------------------------------------------------------

  // The subscriber is confirmed once its pattern's binding is declared
  // (again: equal declarations are cheap, and the connection runs them in
  // order, after an unbinding of the same key still under way).
  void AddSubscriber(uint64_t id, std::string pattern, const TopicPolicy& policy,
                     std::shared_ptr<SubscriberGuard> sink) {
    const std::string binding_key = amqp::BindingKeyFor(pattern);
    if (live_patterns_.insert(pattern).second) ++patterns_by_binding_[binding_key];
    subscribers_.Add(id, std::move(pattern), policy, sink);
    KeepSampling();
    consumer_.Declare(BindingDeclaration{subscriber_queue_, ephemeral_exchange_, binding_key},
                      [this, id, sink](absl::Status status) {
                        if (status.ok()) {
                          subscribers_.Confirm(id);
                          return;
                        }
                        sink->Invoke([&](SubscriberSink& closed) { closed.OnClosed(status); });
                        subscribers_.Remove(id);
                      });
  }

  void RemoveSubscriber(uint64_t id) { subscribers_.Remove(id); }

  // The last local subscriber of `pattern` left: once no pattern needs its
  // binding, the subscriber queue is unbound from it, so that it stops
  // receiving (and the connection stops replaying) what nobody reads.
  void OnPatternUnused(const std::string& pattern) {
    if (live_patterns_.erase(pattern) == 0) return;
    const std::string binding_key = amqp::BindingKeyFor(pattern);
    auto it = patterns_by_binding_.find(binding_key);
    if (it == patterns_by_binding_.end() || --it->second > 0) return;
    patterns_by_binding_.erase(it);
    consumer_.Unbind(BindingDeclaration{subscriber_queue_, ephemeral_exchange_, binding_key},
                     [](absl::Status) {});
  }
  void SubscriberReady(uint64_t id) { subscribers_.Ready(id); }

  // The subscriber queue's deliveries: fanned out, then acked.
  void OnDeliveries(uint64_t life, std::vector<AmqpDelivery> deliveries) override {
    if (deliveries.empty()) return;
    const uint64_t last = deliveries.back().delivery_tag;
    const absl::Time now = clock_.Now();
    bool synced = false;
    for (AmqpDelivery& delivery : deliveries) {
      if (delivery.routing_key == sync_key_) {
        synced = true;
        continue;
      }
      subscribers_.Offer(
          std::make_shared<const Message>(amqp::DecodeDelivery(std::move(delivery), now)));
    }
    consumer_.Ack(subscriber_consumer_, life, last, /*multiple=*/true);
    if (synced) OnSyncMarker();
  }
  void OnLifeEnded(uint64_t, const absl::Status&) override {
    // What the queue held is lost with it (ephemeral topics keep nothing);
    // a marker under way is sent again.
    if (!syncs_.empty()) SendSyncMarker();
  }

  // -- Consume sessions -------------------------------------------------------

  void AddSession(uint64_t id, ConsumeOptions options, std::shared_ptr<ConsumerGuard> sink) {
    KeepSampling();
    groups_.AddSession(id, std::move(options), std::move(sink));
  }
  void RemoveSession(uint64_t id) { groups_.RemoveSession(id); }
  void Settle(uint64_t id, const LeaseUpdate& update,
              absl::AnyInvocable<void(LeaseUpdateResult)> done) {
    groups_.Settle(id, update, std::move(done));
  }

 private:
  // A publish under way: its messages' confirms, counted down.
  struct Batch {
    std::vector<std::string> ids;  // By message; duplicates answered already.
    std::vector<std::pair<size_t, std::string>> dedup_ids;  // Of messages sent.
    std::vector<std::pair<size_t, size_t>> copies;          // Repeats within the batch, of.
    size_t remaining = 0;
    absl::Status error;
    PublishCallback done;
  };

  // Every message of `batch` is confirmed (or failed): its dedup ids are
  // remembered once all were stored, and its caller hears.
  void Complete(const std::string& topic, Batch& batch, absl::Time window_end) {
    if (!batch.error.ok()) {
      batch.done(std::move(batch.error));
      return;
    }
    for (const auto& [index, dedup_id] : batch.dedup_ids) {
      dedup_.Remember(topic, dedup_id, batch.ids[index], window_end);
    }
    batch.done(std::move(batch.ids));
  }

  // Serving: both connections ready and the topology of each declared.
  bool serving() const { return publisher_ready_ && consumer_ready_; }

  absl::Status consumer_unavailable() const {
    return absl::UnavailableError(
        absl::StrCat("rabbitmq is unreachable (", consumer_.last_error().message(), ")"));
  }

  void OnPublishState(AmqpConnectionState state) {
    if (state != AmqpConnectionState::kReady) {
      SetReady(publisher_ready_, false);
      return;
    }
    // Declared once; the connection declares them again on every reconnect.
    publisher_.Declare(ExchangeDeclaration{durable_exchange_, "direct"}, [](absl::Status) {});
    publisher_.Declare(
        ExchangeDeclaration{ephemeral_exchange_, "topic"}, [this](absl::Status status) {
          if (!status.ok()) {
            SB_LOG(kWarning, "amqp: cannot declare the exchanges: ", status.message());
            return;
          }
          SetReady(publisher_ready_, true);
        });
  }

  void OnConsumeState(AmqpConnectionState state) {
    if (state != AmqpConnectionState::kReady) {
      SetReady(consumer_ready_, false);
      return;
    }
    if (topology_declared_) {
      SetReady(consumer_ready_, true);
      return;
    }
    consumer_.Declare(ExchangeDeclaration{durable_exchange_, "direct"}, [](absl::Status) {});
    consumer_.Declare(ExchangeDeclaration{ephemeral_exchange_, "topic"}, [](absl::Status) {});
    for (const TopicDeclaration& topic : policies_.declarations()) {
      if (common::IsTopicPrefixPattern(topic.pattern)) continue;
      for (const std::string& group : topic.policy.groups) {
        const std::string queue = amqp::GroupQueueName(options_.name_prefix, topic.pattern, group);
        consumer_.Declare(amqp::GroupQueue(queue, topic.policy), [](absl::Status) {});
        consumer_.Declare(BindingDeclaration{queue, durable_exchange_, topic.pattern},
                          [](absl::Status) {});
      }
    }
    consumer_.Declare(SubscriberQueue(), [](absl::Status) {});
    // Declarations run in order, and one that fails drops the connection,
    // which starts over: the last one's outcome is the topology's.
    consumer_.Declare(
        BindingDeclaration{subscriber_queue_, ephemeral_exchange_, sync_key_},
        [this](absl::Status status) {
          if (!status.ok()) {
            SB_LOG(kWarning, "amqp: cannot declare the topology: ", status.message());
            return;
          }
          topology_declared_ = true;
          absl::StatusOr<uint64_t> id = consumer_.AddConsumer(
              amqp::AmqpConsumerOptions{subscriber_queue_, kSubscriberPrefetch}, *this);
          if (!id.ok()) {
            SB_LOG(kError, "amqp: cannot consume the subscriber queue: ", id.status().message());
            return;
          }
          subscriber_consumer_ = *id;
          SetReady(consumer_ready_, true);
        });
  }

  QueueDeclaration SubscriberQueue() const {
    QueueDeclaration queue;
    queue.name = subscriber_queue_;
    queue.durable = false;
    queue.exclusive = true;
    queue.auto_delete = true;
    return queue;
  }

  void SetReady(bool& flag, bool ready) {
    const bool was = serving();
    flag = ready;
    const bool now = serving();
    if (now == was) return;
    serving_.store(now);
    for (auto& watcher : health_watchers_) watcher(now);
  }

  // The marker goes once every declaration asked for so far (a group's
  // queue among them) is done: a declaration on the consume connection
  // answers only after the earlier ones.
  void SendSyncMarker() {
    consumer_.Declare(SubscriberQueue(), [this](absl::Status) { PublishSyncMarker(); });
  }

  void PublishSyncMarker() {
    AmqpMessage marker;
    marker.exchange = ephemeral_exchange_;
    marker.routing_key = sync_key_;
    marker.persistent = false;
    ++pending_publishes_;
    publisher_.Publish(std::move(marker), [this](absl::Status status) {
      --pending_publishes_;
      if (!status.ok()) OnSyncMarker();  // Nothing more to wait for.
      MaybeIdle();
    });
  }

  void OnSyncMarker() {
    std::deque<absl::AnyInvocable<void()>> done;
    done.swap(syncs_);
    for (auto& sync : done) sync();
  }

  void MaybeIdle() {
    if (on_idle_ && pending_publishes_ == 0) {
      auto on_idle = std::move(on_idle_);
      on_idle_ = nullptr;
      on_idle();
    }
  }

  void KeepSampling() {
    if (!sample_timer_->Enabled()) sample_timer_->Enable(kSampleInterval);
  }

  // Reports each group's lag (counted by RabbitMQ, so a moment later), the
  // leases in flight and the subscriber buffers; rearms while streams are
  // open.
  void Sample() {
    for (auto& [key, group] : groups_.groups()) {
      if (!group.has_sessions()) continue;
      static_cast<amqp::QueueSource&>(group.source())
          .SampleLag([this, topic = key.first, name = key.second](uint64_t lag) {
            observer_.OnConsumerLag(topic, name, lag);
          });
    }
    groups_.ReportLeasesInFlight();
    subscribers_.ReportBufferFill();
    if (groups_.has_sessions() || !subscribers_.empty()) sample_timer_->Enable(kSampleInterval);
  }

  common::Clock& clock_;
  const AmqpBrokerOptions options_;
  const TopicPolicies& policies_;
  BrokerObserver& observer_;
  std::atomic<bool>& serving_;
  const std::string durable_exchange_;
  const std::string ephemeral_exchange_;
  const std::string subscriber_queue_;
  const std::string sync_key_;
  ConnectionEvents publish_events_;
  ConnectionEvents consume_events_;
  AmqpConnection publisher_;
  AmqpConnection consumer_;
  amqp::QueueSourceContext source_context_;
  MessageIdGenerator ids_ = amqp::ReplicaMessageIds();
  DedupTable dedup_{kMaxDedupIds};
  bool publisher_ready_ = false;
  bool consumer_ready_ = false;
  bool topology_declared_ = false;
  uint64_t subscriber_consumer_ = 0;
  size_t pending_publishes_ = 0;
  std::vector<absl::AnyInvocable<void(bool)>> health_watchers_;
  std::deque<absl::AnyInvocable<void()>> syncs_;
  absl::AnyInvocable<void()> on_idle_;
  // Patterns with local subscribers, and how many of them need each binding
  // key of the subscriber queue ("news.a*" and "news.b*" both bind "news.#").
  std::set<std::string> live_patterns_;
  std::map<std::string, size_t> patterns_by_binding_;
  SubscriberSet subscribers_;
  ConsumerGroups groups_;  // After the connection and context its sources use.
  std::unique_ptr<event::Timer> sample_timer_;
};

// ---------------------------------------------------------------------------
// The public surface.

AmqpBroker::AmqpBroker(event::Dispatcher& dispatcher, AmqpBrokerOptions options,
                       TopicPolicies policies, BrokerObserver& observer,
                       AmqpConnectionObserver& connection_observer)
    : AmqpBroker(dispatcher, std::move(options), std::move(policies), observer, connection_observer,
                 connection_observer) {}

AmqpBroker::AmqpBroker(event::Dispatcher& dispatcher, AmqpBrokerOptions options,
                       TopicPolicies policies, BrokerObserver& observer,
                       AmqpConnectionObserver& publish_observer,
                       AmqpConnectionObserver& consume_observer)
    : dispatcher_(dispatcher),
      policies_(std::move(policies)),
      state_(std::make_unique<State>(dispatcher, std::move(options), policies_, observer,
                                     publish_observer, consume_observer, serving_)),
      gate_(dispatcher, state_.get(), absl::UnavailableError("the rabbitmq broker is shut down")) {
  {
    absl::MutexLock lock(&publisher_mu_);
    publisher_ = &state_->publisher();
  }
  gate_.Post([](State* state) {
    if (state != nullptr) state->Start();
  });
}

AmqpBroker::~AmqpBroker() { Shutdown(); }

void AmqpBroker::Publish(std::string topic, std::vector<OutgoingMessage> messages,
                         PublishCallback done) {
  gate_.Publish(std::move(topic), std::move(messages), std::move(done));
}

absl::StatusOr<std::unique_ptr<Subscription>> AmqpBroker::Subscribe(absl::string_view topic,
                                                                    SubscriberSink& sink) {
  SB_ASSIGN_OR_RETURN(const TopicPolicy* policy, policies_.ResolveSubscribable(topic));
  if (!serving_.load()) return absl::UnavailableError("rabbitmq is unreachable");
  return gate_.Subscribe(std::string(topic), *policy, sink);
}

absl::StatusOr<std::unique_ptr<ConsumerSession>> AmqpBroker::Consume(ConsumeOptions options,
                                                                     ConsumerSink& sink) {
  SB_RETURN_IF_ERROR(policies_.CheckConsumable(options.topic));
  if (!serving_.load()) return absl::UnavailableError("rabbitmq is unreachable");
  return gate_.Consume(std::move(options), sink);
}

void AmqpBroker::WatchHealth(absl::AnyInvocable<void(bool serving)> watcher) {
  gate_.Post([watcher = std::move(watcher)](State* state) mutable {
    if (state == nullptr) {
      watcher(false);
      return;
    }
    state->WatchHealth(std::move(watcher));
  });
}

void AmqpBroker::Sync(absl::AnyInvocable<void()> done) {
  gate_.Post([done = std::move(done)](State* state) mutable {
    if (state == nullptr) {
      done();
      return;
    }
    state->Sync(std::move(done));
  });
}

void AmqpBroker::Shutdown() {
  if (!gate_.Close()) return;
  // Let pending publishes finish, end the handles, then free the state (and
  // with it the connections) on the dispatcher. Each step is posted, never
  // inline, so no step frees what runs it.
  absl::Notification stopped;
  dispatcher_.Post([this, &stopped] {
    state_->BeginShutdown([this, &stopped] {
      state_->CloseAll(gate_.shut_down_error());
      dispatcher_.Post([this, &stopped] {
        {
          absl::MutexLock lock(&publisher_mu_);
          publisher_ = nullptr;
        }
        state_.reset();
        stopped.Notify();
      });
    });
  });
  stopped.WaitForNotification();
}

size_t AmqpBroker::unconfirmed_publishes() const {
  absl::MutexLock lock(&publisher_mu_);
  return publisher_ == nullptr ? 0 : publisher_->unconfirmed_publishes();
}

}  // namespace switchboard::broker
