// AmqpConnection: one AMQP 0-9-1 connection to RabbitMQ, driven by an I/O
// thread of its own (issue 16; DESIGN.md §3's rules for broker connections).
//
// The RabbitMQ backend holds a small fixed set of these, each named
// `switchboard:<role>` (client property connection_name, which
// `rabbitmqctl list_connections client_properties` shows). rabbitmq-c is
// synchronous, so each connection owns one thread that does all of its
// socket I/O: it polls the socket and an eventfd that wakes it when work is
// posted, reads frames without blocking, and never waits on the broker
// longer than an operation's timeout. Each connection:
//   * declares topology (topology.h) on one channel, and remembers every
//     declaration that succeeded: on every reconnect they are all declared
//     again, in order, before any new operation runs;
//   * publishes on a second channel in publisher-confirm mode. Publishes are
//     pipelined: many are on the wire at once, and each completes when its
//     basic.ack arrives (basic.nack, the channel closing or the connection
//     dropping fail it). At most kMaxUnconfirmedPublishes are unconfirmed at
//     a time; later ones wait, in order, for a slot (within their timeout);
//   * consumes (consumers.h): each consumer on a channel of its own (3 and
//     up), with its own prefetch; deliveries reach the owner in batches,
//     one per consumer per read; acks and rejects name the consumer's life
//     (one basic.consume on one channel), and those of a life that ended
//     are dropped. Consumers outlive connections: on every reconnect, once
//     the topology is declared again, each starts a new life;
//   * gives every operation a timeout (DEADLINE_EXCEEDED). A publish that
//     timed out still holds its slot until the broker answers it (its late
//     confirm is dropped unseen). A declaration that times out leaves the
//     connection in an unknown state: the connection is dropped and made
//     again;
//   * fails fast: while not ready, operations fail at once with UNAVAILABLE
//     naming the broker's address and the last error (never the password);
//     when the connection drops, every pending operation fails with
//     UNAVAILABLE;
//   * reconnects by itself with common/backoff (full jitter), and reports
//     its state changes to an AmqpConnectionObserver.
//
// Threading and ownership: the connection belongs to its owner dispatcher.
// Construct it, call it and destroy it on that dispatcher's thread. Every
// callback (operation results, observer calls) is posted to that
// dispatcher: none runs inline in the call that caused it, and none runs
// once the connection is destroyed (the callbacks of operations still
// pending then are destroyed without running). The destructor stops the I/O
// thread and waits for it: for a connection attempt under way to end (each
// of its steps is bounded by connect_timeout), then for the broker to
// acknowledge connection.close (at most kCloseTimeout). The owner dispatcher
// and the observer must outlive the connection.
//
// A connection starts in kConnecting; Declare() and Publish() fail with
// UNAVAILABLE until it is kReady. AddConsumer() does not: its consumer
// starts once the connection is ready.
//
// Time is real time (absl::Now()), read on the I/O thread: the broker does
// not run on a simulated clock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "server/broker/amqp/topology.h"
#include "server/event/dispatcher.h"

struct amqp_connection_state_t_;
struct amqp_frame_t_;

namespace switchboard::broker::amqp {

class Consumers;
struct ConsumerCommand;

// Where the broker is, who to log in as, and how long to wait.
struct AmqpConnectionOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 5672;
  std::string vhost = "/";
  std::string user = "guest";
  std::string password = "guest";  // Secret: never logged, never in a status.
  // amqps: TLS, verifying the broker's certificate against `ca_file` (PEM)
  // and its host name against `host`. Not exercised by the tests yet: the
  // test node has no TLS listener.
  bool tls = false;
  std::string ca_file;
  // Default timeout of an operation, from the call to its result.
  absl::Duration operation_timeout = absl::Seconds(5);
  // Bounds each step of a connection attempt: TCP connect, login, opening a
  // channel, each declaration replayed.
  absl::Duration connect_timeout = absl::Seconds(5);
  // Heartbeat interval asked of the broker (whole seconds; zero: none). With
  // nothing heard for two intervals the connection is dropped, which also
  // bounds a publish blocked on a full socket buffer.
  absl::Duration heartbeat = absl::Seconds(10);
  // Reconnect delays: full jitter under a ceiling that starts here and
  // doubles per failed attempt, up to reconnect_max.
  absl::Duration reconnect_initial = absl::Milliseconds(100);
  absl::Duration reconnect_max = absl::Seconds(5);
};

// A message to publish: basic.publish of `body` to `exchange` with
// `routing_key`.
struct AmqpMessage {
  std::string exchange;
  std::string routing_key;
  std::string body;  // Any bytes.
  // basic.properties message_id (AMQP gives a message no id of its own);
  // empty: none.
  std::string message_id;
  // basic.properties headers, sent as long strings.
  std::map<std::string, std::string> headers;
  // delivery_mode 2: a durable queue keeps the message across a restart.
  bool persistent = true;
};

// A message the broker delivered to a consumer (basic.deliver and its
// content), read on the I/O thread and handed to the owner whole.
struct AmqpDelivery {
  // Of the consumer's channel in its current life (AmqpConsumer): Ack() and
  // Reject() name it with that life.
  uint64_t delivery_tag = 0;
  std::string exchange;
  std::string routing_key;
  std::string body;        // Any bytes.
  std::string message_id;  // basic.properties message_id; empty: none.
  // basic.properties headers whose values are strings (long strings or
  // bytes); headers of other types are not copied.
  std::map<std::string, std::string> headers;
  // x-delivery-count (quorum queues): how many times the broker delivered
  // the message before and got it back. 0 when absent.
  uint32_t delivery_count = 0;
  bool redelivered = false;  // basic.deliver's redelivered flag.
};

// basic.consume of `queue`, on a channel of the consumer's own.
struct AmqpConsumerOptions {
  std::string queue;
  // basic.qos prefetch_count of this consumer: the most deliveries the
  // broker sends it that are neither acked nor rejected. 1 to 65535.
  uint16_t prefetch = 100;
};

// Receives one consumer's deliveries, on the owner dispatcher's thread.
//
// A consumer lives through *lives*: each is one basic.consume on one channel
// of one connection, numbered from 1 (0 is never a life). A life ends when
// the connection drops, the broker closes the consumer's channel (for
// example, its queue was deleted) or the broker cancels the consumer
// (basic.cancel): the broker then takes back every delivery of that life
// that was not acked or rejected, and Ack() or Reject() of them is ignored.
// While the consumer is not removed, the connection starts its next life:
// after a drop, as soon as it is ready again (after the topology is
// redeclared); after the broker ended the life, once a backoff of the
// consumer's own has passed (full jitter under a ceiling that doubles from
// reconnect_initial to reconnect_max; a delivery resets it).
class AmqpConsumer {
 public:
  virtual ~AmqpConsumer() = default;

  // Deliveries of life `life`, in the order the broker sent them. Every
  // delivery the I/O thread read in one go comes in one call.
  virtual void OnDeliveries(uint64_t life, std::vector<AmqpDelivery> deliveries) = 0;

  // Life `life` ended (why: UNAVAILABLE for a dropped connection, the
  // broker's reason otherwise). Called once per life that began, after its
  // last OnDeliveries().
  virtual void OnLifeEnded(uint64_t life, const absl::Status& why) = 0;
};

// Where a connection is in its life, for health and metrics.
enum class AmqpConnectionState {
  kConnecting,  // The first attempt after Start(), not failed yet.
  kReady,       // Logged in, channels open, topology declared: operations run.
  kDown,        // The last attempt failed or the connection dropped; retrying.
};

// "connecting", "ready" or "down".
absl::string_view AmqpConnectionStateName(AmqpConnectionState state);

// Told of a connection's state changes (metrics and health adapt to it).
// Called on the owner dispatcher's thread, once per change: kConnecting ->
// kReady or kDown, kReady -> kDown, kDown -> kReady. Failed attempts while
// kDown are not changes; last_error() has the latest.
class AmqpConnectionObserver {
 public:
  virtual ~AmqpConnectionObserver() = default;

  // `last_error` says why the connection is kDown; OK for the other states.
  virtual void OnStateChanged(AmqpConnectionState state, const absl::Status& last_error) = 0;
};

class AmqpConnection {
 public:
  // The most publishes on the wire without their confirm. Enough to keep a
  // quorum queue's fsync batches full; small enough that a connection lost
  // fails a bounded number of publishes.
  static constexpr size_t kMaxUnconfirmedPublishes = 256;
  // How long the destructor waits for the broker to acknowledge
  // connection.close.
  static constexpr absl::Duration kCloseTimeout = absl::Seconds(1);
  // The most consumers of one connection, each on a channel of its own.
  static constexpr size_t kMaxConsumers = 1000;

  // An operation's result, on the owner dispatcher's thread.
  using DoneCallback = absl::AnyInvocable<void(absl::Status status)>;

  // Names the connection "switchboard:<role>". Does not connect: Start()
  // does.
  AmqpConnection(event::Dispatcher& owner, AmqpConnectionOptions options, std::string role,
                 AmqpConnectionObserver& observer);
  ~AmqpConnection();

  AmqpConnection(const AmqpConnection&) = delete;
  AmqpConnection& operator=(const AmqpConnection&) = delete;

  // Starts the I/O thread, which connects (state kConnecting). Call once.
  void Start();

  // Declares `declaration`; once it succeeded it is declared again on every
  // reconnect. Operations called after it run after it (a publish called
  // before it may still be waiting for a slot, and be sent after it). Fails
  // with the broker's refusal (NOT_FOUND, FAILED_PRECONDITION for an
  // inequivalent redeclaration, ...), UNAVAILABLE or DEADLINE_EXCEEDED.
  void Declare(Declaration declaration, DoneCallback done);
  void Declare(Declaration declaration, absl::Duration timeout, DoneCallback done);

  // Removes `binding` (queue.unbind) and forgets it: it is not declared
  // again on reconnect. Unlike the other operations, it is taken while the
  // connection is down too: then the binding is only forgotten (and `done`
  // gets UNAVAILABLE), which is what a binding of an exclusive queue needs,
  // as the queue is gone with the connection. Runs in order with Declare().
  void Unbind(BindingDeclaration binding, DoneCallback done);

  // The messages ready in `queue` (passive queue.declare's message_count):
  // waiting for a consumer, not counting those delivered and unacked. For
  // lag gauges. NOT_FOUND when the queue does not exist; UNAVAILABLE or
  // DEADLINE_EXCEEDED as Declare().
  using CountCallback = absl::AnyInvocable<void(absl::StatusOr<uint32_t> ready)>;
  void CountReady(std::string queue, CountCallback done);

  // Publishes `message`; OK once the broker confirmed it (basic.ack).
  // UNAVAILABLE when the broker nacked it or the connection dropped first,
  // NOT_FOUND when the exchange does not exist, DEADLINE_EXCEEDED without a
  // confirm in time (the message may still have been routed).
  void Publish(AmqpMessage message, DoneCallback done);
  void Publish(AmqpMessage message, absl::Duration timeout, DoneCallback done);

  // Starts consuming `options.queue` for `consumer`, now if the connection
  // is ready, else once it is (the queue must be declared by then, through
  // Declare() on this connection: an exclusive queue belongs to the
  // connection that declared it). Returns the consumer's id. A queue that
  // does not exist ends each life at once (NOT_FOUND), and the next starts
  // after the backoff. INVALID_ARGUMENT without a queue or with prefetch 0.
  // At most kMaxConsumers consumers at a time; beyond, RESOURCE_EXHAUSTED.
  // `consumer` must outlive the consumer (RemoveConsumer or the
  // connection's destruction).
  absl::StatusOr<uint64_t> AddConsumer(AmqpConsumerOptions options, AmqpConsumer& consumer);

  // Stops consumer `id`: closes its channel, so that the broker takes back
  // every delivery not acked or rejected yet. No callback of the consumer
  // runs once this returns. Unknown ids are ignored.
  void RemoveConsumer(uint64_t id);

  // basic.ack of delivery `delivery_tag` (and, with `multiple`, every
  // earlier one not settled) of consumer `id`'s life `life`. Ignored when
  // that life is over or the consumer is removed. Not confirmed: an ack
  // the broker never gets leaves the delivery to be taken back when the
  // life ends.
  void Ack(uint64_t id, uint64_t life, uint64_t delivery_tag, bool multiple = false);

  // basic.reject of one delivery of consumer `id`'s life `life`: with
  // `requeue`, back into its queue (its x-delivery-count goes up); without,
  // dropped (or dead-lettered, as the queue says). Ignored as Ack().
  void Reject(uint64_t id, uint64_t life, uint64_t delivery_tag, bool requeue);

  // Any thread. The current state, and why it is kDown (OK otherwise).
  AmqpConnectionState state() const;
  absl::Status last_error() const;

  // Any thread. Publishes sent and not yet confirmed (at most
  // kMaxUnconfirmedPublishes), for a gauge.
  size_t unconfirmed_publishes() const {
    return unconfirmed_count_.load(std::memory_order_relaxed);
  }

  // "switchboard:<role>".
  const std::string& connection_name() const { return connection_name_; }

 private:
  // A call waiting for the I/O thread.
  // A passive queue.declare; its count goes to `counted`, a failure to the
  // operation's `done`.
  struct ReadyCount {
    std::string queue;
    std::shared_ptr<CountCallback> counted;
  };
  struct Unbinding {
    BindingDeclaration binding;
  };
  struct Operation {
    std::variant<Declaration, AmqpMessage, ReadyCount, Unbinding> what;
    absl::Time deadline;
    DoneCallback done;
  };
  // A publish on the wire, by delivery tag.
  struct Unconfirmed {
    absl::Time deadline;
    DoneCallback done;  // Empty once timed out: its confirm is dropped.
  };

  void Submit(std::variant<Declaration, AmqpMessage, ReadyCount, Unbinding> what,
              absl::Duration timeout, DoneCallback done);
  void PostConsumerCommand(ConsumerCommand command);
  // Posts `done(status)` to the owner dispatcher, unless the connection is
  // destroyed by the time it runs. `done` gets a copy of `status` of its
  // own (see Detached() in the .cc).
  void Reply(DoneCallback done, const absl::Status& status);
  absl::Status Unavailable() const;
  void Wake();
  bool Stopping() const { return stopping_.load(std::memory_order_acquire); }

  // I/O thread.
  void Run();
  // One connection attempt: TCP, login, channels, topology.
  absl::Status Connect();
  absl::Status OpenPublishChannel();
  // Serves a ready connection until it drops (the reason) or Stopping() (OK).
  absl::Status Serve();
  absl::Status RunDeclaration(Operation& operation);
  absl::Status RunReadyCount(Operation& operation);
  absl::Status RunUnbind(Operation& operation);
  // Removes `binding` from the topology replayed on reconnect.
  void Forget(const BindingDeclaration& binding);
  // Hands the posted consumer commands to consumers_, on `connection`
  // (null while there is none). An error: the connection failed.
  absl::Status ApplyConsumerCommands(amqp_connection_state_t_* connection);
  absl::Status SendWaitingPublishes();
  absl::Status ReadFrames();
  absl::Status HandleFrame(const amqp_frame_t_& frame);
  absl::Status OnChannelClosed(uint16_t channel, const absl::Status& why);
  void Settle(uint64_t delivery_tag, bool multiple, const absl::Status& status);
  void ExpireDue(absl::Time now);
  absl::Time NextWakeup() const;
  // Waits for the socket (when connected), a Wake() or `until`.
  absl::Status Poll(absl::Time until);
  // Waits out a reconnect delay, failing what is posted meanwhile.
  void WaitBeforeReconnect(absl::Duration delay);
  void SetState(AmqpConnectionState state, const absl::Status& error);
  // Destroys the rabbitmq-c connection and fails every pending operation.
  void Drop(const absl::Status& why);
  void FailPosted(const absl::Status& status);
  void SetRpcTimeout(absl::Duration timeout);
  std::deque<Operation> TakePosted();
  std::optional<Operation> PopPosted();

  event::Dispatcher& owner_;
  const AmqpConnectionOptions options_;
  const std::string connection_name_;
  const std::string address_;  // host:port/vhost, for messages.
  AmqpConnectionObserver& observer_;
  // False once destroyed; read and written on the owner thread only.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> ready_{false};
  std::atomic<size_t> unconfirmed_count_{0};
  // Owner thread only: each consumer not removed, by id, with the flag its
  // callbacks check (RemoveConsumer() clears it).
  std::map<uint64_t, std::shared_ptr<bool>> consumer_alive_;
  uint64_t last_consumer_id_ = 0;

  mutable absl::Mutex mu_;
  std::deque<Operation> posted_ ABSL_GUARDED_BY(mu_);
  // Consumer calls, applied in order also while the connection is down.
  std::vector<ConsumerCommand> consumer_commands_ ABSL_GUARDED_BY(mu_);
  AmqpConnectionState state_ ABSL_GUARDED_BY(mu_) = AmqpConnectionState::kConnecting;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);

  // I/O thread only (and the destructor, once it has joined the thread).
  amqp_connection_state_t_* connection_ = nullptr;
  bool logged_in_ = false;
  std::vector<Declaration> topology_;  // Declared, in first-declared order.
  std::deque<Operation> waiting_;      // Publishes waiting for a slot.
  std::map<uint64_t, Unconfirmed> unconfirmed_;
  uint64_t last_delivery_tag_ = 0;  // Of the publish channel's current life.
  const std::unique_ptr<Consumers> consumers_;
  absl::Time last_heard_;  // When the socket last had data.
  size_t failures_ = 0;    // Attempts failed since the last ready.
  common::Backoff backoff_;
  absl::BitGen random_;
};

}  // namespace switchboard::broker::amqp
