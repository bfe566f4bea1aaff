// Connection: one hiredis async connection to Redis, owned by an I/O
// dispatcher (DESIGN.md §3).
//
// The Redis backend holds a small fixed set of these (command, subscriber,
// readers). Each one:
//   * connects on its own, then runs a handshake (AUTH, SELECT, CLIENT
//     SETNAME switchboard:<role>, CLIENT ID) before it reports itself ready;
//   * gives every command a timeout, and matches each reply to its request
//     by id, so a reply that arrives after its timeout is dropped unseen;
//   * pipelines automatically: commands go to hiredis' output buffer, which
//     the event loop writes when the socket is writable, so everything sent
//     while a write or a round trip is pending leaves in one write. Nothing
//     flushes per command;
//   * fails fast: while not ready, commands fail with UNAVAILABLE at once
//     (no offline queue); when the connection drops, every pending command
//     fails with UNAVAILABLE;
//   * reconnects by itself with exponential backoff and full jitter.
//
// Threading: construct, use and destroy a Connection on its dispatcher's
// thread only. Every callback runs on that thread, never inline in the call
// that caused it. Callbacks must not destroy the Connection.
//
// Time: command timeouts and reconnect delays run on the dispatcher's clock,
// so the I/O dispatcher needs a real clock (the broker's own dispatcher may
// run a simulated one; see redis_broker.h).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "server/broker/redis/command.h"
#include "server/broker/redis/reply.h"
#include "server/event/dispatcher_impl.h"

struct redisAsyncContext;

namespace switchboard::broker::redis {

// Where Redis is and how long to wait for it.
struct ConnectionOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string user;      // ACL user; empty: AUTH with the password alone.
  std::string password;  // Empty: no AUTH. Secret: never logged.
  uint32_t db = 0;       // SELECT index.
  // A command without a reply this long fails with DEADLINE_EXCEEDED.
  absl::Duration command_timeout = absl::Seconds(5);
  // TCP connect plus handshake.
  absl::Duration connect_timeout = absl::Seconds(2);
  // Reconnect delays: full jitter under a ceiling that starts here and
  // doubles per failed attempt, up to reconnect_max.
  absl::Duration reconnect_initial = absl::Milliseconds(50);
  absl::Duration reconnect_max = absl::Seconds(2);
};

// Where a connection is in its life, for the connections-by-state gauge.
enum class ConnectionState {
  kAbsent,      // Not started yet, or closed for good.
  kConnecting,  // Connecting, handshaking, or waiting to retry.
  kReady,       // Handshake done; commands flow.
};

// Metric hooks of a connection, called on its dispatcher thread. `role` is
// the connection's role ("command", "subscriber", "reader", "exclusive"): a
// bounded label.
class ConnectionObserver {
 public:
  virtual ~ConnectionObserver() = default;

  // The connection moved from one state to another: kAbsent -> kConnecting
  // at Start(), kConnecting <-> kReady as it comes and goes, and to kAbsent
  // at Close().
  virtual void OnStateChanged(absl::string_view role, ConnectionState from, ConnectionState to) = 0;

  // A new connection attempt starts after a loss or a failed attempt.
  virtual void OnReconnectAttempt(absl::string_view role) = 0;

  // One write to the socket carried `commands` commands: the pipeline depth.
  virtual void OnWrite(absl::string_view role, size_t commands) = 0;
};

class NullConnectionObserver final : public ConnectionObserver {
 public:
  void OnStateChanged(absl::string_view, ConnectionState, ConnectionState) override {}
  void OnReconnectAttempt(absl::string_view) override {}
  void OnWrite(absl::string_view, size_t) override {}
};

class Connection {
 public:
  // A command's reply; a Redis error reply is a Reply of type kError, while
  // transport failures are statuses (UNAVAILABLE, DEADLINE_EXCEEDED).
  using ReplyCallback = absl::AnyInvocable<void(absl::StatusOr<Reply> reply)>;
  using StateCallback = absl::AnyInvocable<void(bool ready)>;
  using PushCallback = absl::AnyInvocable<void(Reply push)>;

  // `io` and `observer` must outlive the connection. Names the connection
  // "switchboard:<role>" in Redis.
  Connection(event::DispatcherImpl& io, ConnectionOptions options, std::string role,
             ConnectionObserver& observer);
  ~Connection();  // Calls Close().

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts connecting. `on_state` runs on every change: true once a
  // connection is ready, false when a ready connection is lost (not on
  // Close()). `on_push` receives the pub/sub replies of SendPubSub(): the
  // (un)subscribe confirmations and the messages. Call once.
  void Start(StateCallback on_state, PushCallback on_push = nullptr);

  bool ready() const { return phase_ == Phase::kReady; }

  // Redis' CLIENT ID of the current connection (for CLIENT UNBLOCK). Valid
  // while ready.
  int64_t client_id() const { return client_id_; }

  const std::string& role() const { return role_; }

  // Why the last connection attempt failed (refused, AUTH failed, ...);
  // empty while ready or before the first failure. Any thread: the broker
  // names it when it refuses a stream while Redis is unreachable.
  std::string LastFailure() const;

  // Sends `command`; `done` runs once with its reply, or with UNAVAILABLE
  // (not ready, or lost before the reply) or DEADLINE_EXCEEDED (no reply
  // within `timeout`).
  void Send(const Command& command, absl::Duration timeout, ReplyCallback done);
  void Send(const Command& command, ReplyCallback done) {
    Send(command, options_.command_timeout, std::move(done));
  }

  // Sends a SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE or PUNSUBSCRIBE of one
  // channel or pattern. Its confirmation, and then the messages, arrive at
  // `on_push`. Fails with UNAVAILABLE when not ready. Without a
  // confirmation within the command timeout the connection starts over
  // (Reset()). Once a connection has subscribed, only these commands may be
  // sent on it (RESP2).
  absl::Status SendPubSub(const Command& command);

  // Drops the current connection, failing its pending commands with
  // UNAVAILABLE, and reconnects after a backoff delay. For a caller that
  // found the connection unusable (a subscription never confirmed).
  void Reset(absl::string_view reason);

  // Drops the connection for good: pending commands fail with UNAVAILABLE and
  // no reconnect follows. Idempotent.
  void Close();

 private:
  enum class Phase { kIdle, kHandshake, kReady, kClosed };

  // The observer's view of `phase_` (kIdle before Start() is kAbsent).
  ConnectionState ObservedState() const;
  struct Pending {
    ReplyCallback done;
    absl::Time deadline;
  };

  static void OnConnect(const redisAsyncContext* context, int status) noexcept;
  static void OnDisconnect(const redisAsyncContext* context, int status) noexcept;
  static void OnReply(redisAsyncContext* context, void* reply, void* privdata) noexcept;
  static void OnPush(redisAsyncContext* context, void* reply, void* privdata) noexcept;

  void Connect();
  void SendHandshake();
  void OnHandshakeReply(absl::string_view step, absl::StatusOr<Reply> reply);
  void Enqueue(const Command& command, absl::Duration timeout, ReplyCallback done);
  // Waits for request `id`'s reply until `timeout`.
  void Track(uint64_t id, absl::Duration timeout, ReplyCallback done);
  void HandleReply(uint64_t id, Reply reply);
  void HandlePush(Reply push);

  // Stops listening to the current context without freeing it (hiredis is
  // freeing it already).
  void ForgetContext();
  // The current context is gone: fail what was pending, tell the owner, and
  // schedule a reconnect.
  void Lost(absl::string_view reason);
  void FailPending(const absl::Status& status);
  // Runs `done` with `status` on a later loop iteration.
  void FailSoon(ReplyCallback done, absl::Status status);
  absl::Status NotReady() const;

  // Pipeline-depth accounting: a batch is every command appended while the
  // output buffer was non-empty.
  void NoteWrittenIfFlushed();
  void ExpireDue();
  void ArmTimer();

  event::DispatcherImpl& io_;
  const ConnectionOptions options_;
  const std::string role_;
  ConnectionObserver& observer_;
  StateCallback on_state_;
  PushCallback on_push_;

  Phase phase_ = Phase::kIdle;
  bool started_ = false;
  redisAsyncContext* context_ = nullptr;
  int64_t client_id_ = 0;
  size_t handshake_left_ = 0;
  size_t failures_ = 0;  // Connection attempts failed since the last ready.
  // Why the last attempt failed; empty once ready. Written on the I/O
  // thread; LastFailure() reads it from others.
  mutable absl::Mutex failure_mu_;
  std::string last_failure_ ABSL_GUARDED_BY(failure_mu_);
  common::Backoff backoff_;
  absl::BitGen random_;  // Draws backoff_'s jitter.

  uint64_t next_id_ = 1;
  std::map<uint64_t, Pending> pending_;  // By request id, in sending order.
  std::set<std::pair<absl::Time, uint64_t>> deadlines_;
  std::deque<uint64_t> confirmations_;  // Pub/sub requests awaiting their push.
  absl::Time armed_deadline_ = absl::InfiniteFuture();
  size_t batch_commands_ = 0;

  std::unique_ptr<event::Timer> timeout_timer_;
  std::unique_ptr<event::Timer> reconnect_timer_;
};

}  // namespace switchboard::broker::redis
