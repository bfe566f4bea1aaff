#include "server/broker/redis/connection.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>

#include <cstdint>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/log.h"

namespace switchboard::broker::redis {
namespace {

// hiredis hands our request id back as its callback's privdata.
void* ToPrivdata(uint64_t id) { return reinterpret_cast<void*>(static_cast<uintptr_t>(id)); }
uint64_t FromPrivdata(void* privdata) { return reinterpret_cast<uintptr_t>(privdata); }

// The reason hiredis gives for a context it is tearing down.
// (hiredis copies the error into the async context only after some
// callbacks ran, so read the underlying context's.)
std::string ContextError(const redisAsyncContext* context) {
  return context->c.err != 0 ? context->c.errstr : "connection closed";
}

}  // namespace

Connection::Connection(event::DispatcherImpl& io, ConnectionOptions options, std::string role,
                       ConnectionObserver& observer)
    : io_(io),
      options_(std::move(options)),
      role_(std::move(role)),
      observer_(observer),
      backoff_(common::ReconnectBackoff(options_.reconnect_initial, options_.reconnect_max)) {}

Connection::~Connection() { Close(); }

void Connection::Start(StateCallback on_state, PushCallback on_push) {
  on_state_ = std::move(on_state);
  on_push_ = std::move(on_push);
  started_ = true;
  observer_.OnStateChanged(role_, ConnectionState::kAbsent, ConnectionState::kConnecting);
  timeout_timer_ = io_.CreateTimer([this] { ExpireDue(); });
  reconnect_timer_ = io_.CreateTimer([this] {
    observer_.OnReconnectAttempt(role_);
    Connect();
  });
  Connect();
}

void Connection::Connect() {
  if (phase_ == Phase::kClosed) return;
  redisAsyncContext* context = redisAsyncConnect(options_.host.c_str(), options_.port);
  if (context == nullptr) {
    Lost("cannot allocate a connection");
    return;
  }
  if (context->err != 0) {
    const std::string error = context->errstr;
    redisAsyncFree(context);
    Lost(error);
    return;
  }
  context->data = this;
  redisLibeventAttach(context, io_.base());
  redisAsyncSetConnectCallback(context, &Connection::OnConnect);
  redisAsyncSetDisconnectCallback(context, &Connection::OnDisconnect);
  context_ = context;
  phase_ = Phase::kHandshake;
  // hiredis buffers these until the TCP connection is up; their timeouts
  // bound the connect too.
  SendHandshake();
}

void Connection::SendHandshake() {
  struct Step {
    const char* name;
    Command command;
  };
  std::vector<Step> steps;
  if (!options_.password.empty()) {
    steps.push_back({"AUTH", options_.user.empty()
                                 ? Command::Of({"AUTH", options_.password})
                                 : Command::Of({"AUTH", options_.user, options_.password})});
  }
  if (options_.db != 0) {
    steps.push_back({"SELECT", Command::Of({"SELECT", absl::StrCat(options_.db)})});
  }
  steps.push_back(
      {"CLIENT SETNAME", Command::Of({"CLIENT", "SETNAME", absl::StrCat("switchboard:", role_)})});
  steps.push_back({"CLIENT ID", Command::Of({"CLIENT", "ID"})});
  handshake_left_ = steps.size();
  for (Step& step : steps) {
    Enqueue(step.command, options_.connect_timeout,
            [this, name = step.name](absl::StatusOr<Reply> reply) {
              OnHandshakeReply(name, std::move(reply));
            });
  }
}

void Connection::OnHandshakeReply(absl::string_view step, absl::StatusOr<Reply> reply) {
  if (!reply.ok()) {
    // UNAVAILABLE: the connection is gone already, and Lost() ran.
    if (reply.status().code() == absl::StatusCode::kDeadlineExceeded) {
      Reset(absl::StrCat("no answer to ", step, " within ",
                         absl::FormatDuration(options_.connect_timeout)));
    }
    return;
  }
  if (reply->is_error()) {
    if (options_.password.empty() && absl::StartsWith(reply->str, "NOAUTH")) {
      // A server that requires a password refuses the first command after
      // connect: say what to fix, not which command happened to be first.
      Reset(absl::StrCat("redis requires authentication and the broker URL gives no password (",
                         step, ": ", reply->str, ")"));
      return;
    }
    Reset(absl::StrCat(step, " failed: ", reply->str));
    return;
  }
  if (step == "CLIENT ID") client_id_ = reply->integer;
  if (--handshake_left_ > 0) return;
  phase_ = Phase::kReady;
  failures_ = 0;
  {
    absl::MutexLock lock(&failure_mu_);
    last_failure_.clear();
  }
  backoff_.Reset();
  SB_LOG(kInfo, "redis ", role_, " connection to ", options_.host, ":", options_.port, " is ready");
  observer_.OnStateChanged(role_, ConnectionState::kConnecting, ConnectionState::kReady);
  on_state_(true);
}

void Connection::Send(const Command& command, absl::Duration timeout, ReplyCallback done) {
  if (phase_ != Phase::kReady) {
    FailSoon(std::move(done), NotReady());
    return;
  }
  Enqueue(command, timeout, std::move(done));
}

absl::Status Connection::SendPubSub(const Command& command) {
  if (phase_ != Phase::kReady) return NotReady();
  NoteWrittenIfFlushed();
  const std::string& wire = command.wire();
  if (redisAsyncFormattedCommand(context_, &Connection::OnPush, nullptr, wire.data(),
                                 wire.size()) != REDIS_OK) {
    return NotReady();
  }
  ++batch_commands_;
  // The confirmation comes as a push, and Redis confirms in command order. A
  // connection that does not confirm in time is of no use: start over.
  const uint64_t id = next_id_++;
  Track(id, options_.command_timeout,
        [this, name = std::string(command.name())](absl::StatusOr<Reply> reply) {
          if (reply.status().code() == absl::StatusCode::kDeadlineExceeded) {
            Reset(absl::StrCat("no confirmation of ", name, " within the command timeout"));
          }
        });
  confirmations_.push_back(id);
  return absl::OkStatus();
}

void Connection::Enqueue(const Command& command, absl::Duration timeout, ReplyCallback done) {
  NoteWrittenIfFlushed();
  const uint64_t id = next_id_++;
  const std::string& wire = command.wire();
  if (redisAsyncFormattedCommand(context_, &Connection::OnReply, ToPrivdata(id), wire.data(),
                                 wire.size()) != REDIS_OK) {
    FailSoon(std::move(done), NotReady());
    return;
  }
  ++batch_commands_;
  Track(id, timeout, std::move(done));
}

void Connection::Track(uint64_t id, absl::Duration timeout, ReplyCallback done) {
  const absl::Time deadline = io_.clock().Now() + timeout;
  pending_.emplace_hint(pending_.end(), id, Pending{std::move(done), deadline});
  deadlines_.emplace(deadline, id);
  ArmTimer();
}

void Connection::OnConnect(const redisAsyncContext* context, int status) noexcept {
  auto* self = static_cast<Connection*>(context->data);
  if (self == nullptr || status == REDIS_OK) return;  // The handshake is queued already.
  // hiredis frees the context when this returns.
  self->ForgetContext();
  self->Lost(ContextError(context));
}

void Connection::OnDisconnect(const redisAsyncContext* context, int status) noexcept {
  auto* self = static_cast<Connection*>(context->data);
  if (self == nullptr) return;
  self->ForgetContext();
  self->Lost(ContextError(context));
}

void Connection::OnReply(redisAsyncContext* context, void* reply, void* privdata) noexcept {
  auto* self = static_cast<Connection*>(context->data);
  if (self == nullptr) return;
  if (reply == nullptr) {  // hiredis is tearing the context down.
    self->ForgetContext();
    self->Lost(ContextError(context));
    return;
  }
  self->HandleReply(FromPrivdata(privdata), Reply::From(*static_cast<redisReply*>(reply)));
}

void Connection::OnPush(redisAsyncContext* context, void* reply, void* privdata) noexcept {
  auto* self = static_cast<Connection*>(context->data);
  if (self == nullptr) return;
  if (reply == nullptr) {
    self->ForgetContext();
    self->Lost(ContextError(context));
    return;
  }
  self->HandlePush(Reply::From(*static_cast<redisReply*>(reply)));
}

void Connection::HandleReply(uint64_t id, Reply reply) {
  NoteWrittenIfFlushed();
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // Timed out already: a late reply.
  ReplyCallback done = std::move(it->second.done);
  deadlines_.erase({it->second.deadline, id});
  pending_.erase(it);
  done(std::move(reply));
}

void Connection::HandlePush(Reply push) {
  NoteWrittenIfFlushed();
  const bool confirmation = push.is_array() && !push.elements.empty() &&
                            absl::EndsWith(push.elements[0].str, "subscribe");  // (p)(un)subscribe
  if (confirmation && !confirmations_.empty()) {
    const uint64_t id = confirmations_.front();
    confirmations_.pop_front();
    auto it = pending_.find(id);
    if (it != pending_.end()) {
      deadlines_.erase({it->second.deadline, id});
      pending_.erase(it);
    }
  }
  if (on_push_) on_push_(std::move(push));
}

void Connection::Reset(absl::string_view reason) {
  if (context_ == nullptr) return;
  redisAsyncContext* context = context_;
  ForgetContext();
  // Deferred by hiredis until its callback returns when called from one.
  redisAsyncFree(context);
  Lost(reason);
}

ConnectionState Connection::ObservedState() const {
  switch (phase_) {
    case Phase::kIdle:
    case Phase::kHandshake:
      return started_ ? ConnectionState::kConnecting : ConnectionState::kAbsent;
    case Phase::kReady:
      return ConnectionState::kReady;
    case Phase::kClosed:
      return ConnectionState::kAbsent;
  }
  return ConnectionState::kAbsent;
}

void Connection::Close() {
  if (phase_ == Phase::kClosed) return;
  const ConnectionState closing = ObservedState();
  phase_ = Phase::kClosed;
  if (closing != ConnectionState::kAbsent) {
    observer_.OnStateChanged(role_, closing, ConnectionState::kAbsent);
  }
  if (reconnect_timer_ != nullptr) reconnect_timer_->Disable();
  if (context_ != nullptr) {
    redisAsyncContext* context = context_;
    ForgetContext();
    redisAsyncFree(context);
  }
  FailPending(absl::UnavailableError(absl::StrCat("redis ", role_, " connection closed")));
}

void Connection::ForgetContext() {
  context_->data = nullptr;
  context_ = nullptr;
  batch_commands_ = 0;
}

void Connection::Lost(absl::string_view reason) {
  const bool was_ready = phase_ == Phase::kReady;
  if (phase_ != Phase::kClosed) phase_ = Phase::kIdle;
  ++failures_;
  // Each new kind of failure is a warning (a Redis restarted with a password
  // first closes the connection, then refuses AUTH); repeats are debug.
  bool new_reason;
  {
    absl::MutexLock lock(&failure_mu_);
    new_reason = reason != last_failure_;
    last_failure_ = std::string(reason);
  }
  if (was_ready) {
    SB_LOG(kWarning, "redis ", role_, " connection to ", options_.host, ":", options_.port,
           " lost: ", reason, "; reconnecting");
  } else if (failures_ == 1 || new_reason) {
    SB_LOG(kWarning, "redis ", role_, " connection to ", options_.host, ":", options_.port,
           " failed: ", reason, "; retrying with backoff");
  } else {
    SB_LOG(kDebug, "redis ", role_, " connection attempt ", failures_, " failed: ", reason);
  }
  FailPending(absl::UnavailableError(absl::StrCat("redis ", role_, " connection lost: ", reason)));
  if (was_ready) {
    observer_.OnStateChanged(role_, ConnectionState::kReady, ConnectionState::kConnecting);
    on_state_(false);
  }
  // A callback above may have closed the connection.
  if (phase_ == Phase::kIdle) reconnect_timer_->Enable(backoff_.Next(random_));
}

void Connection::FailPending(const absl::Status& status) {
  std::map<uint64_t, Pending> failed;
  failed.swap(pending_);
  confirmations_.clear();
  deadlines_.clear();
  ArmTimer();
  for (auto& [id, pending] : failed) pending.done(status);
}

void Connection::FailSoon(ReplyCallback done, absl::Status status) {
  io_.Post([done = std::move(done), status = std::move(status)]() mutable { done(status); });
}

std::string Connection::LastFailure() const {
  absl::MutexLock lock(&failure_mu_);
  return last_failure_;
}

absl::Status Connection::NotReady() const {
  const std::string failure = LastFailure();
  return absl::UnavailableError(absl::StrCat(
      "redis ", role_, " connection to ", options_.host, ":", options_.port, " is not ready",
      failure.empty() ? "" : absl::StrCat(" (last attempt: ", failure, ")")));
}

void Connection::NoteWrittenIfFlushed() {
  if (batch_commands_ == 0 || context_ == nullptr || sdslen(context_->c.obuf) != 0) return;
  observer_.OnWrite(role_, batch_commands_);
  batch_commands_ = 0;
}

void Connection::ExpireDue() {
  armed_deadline_ = absl::InfiniteFuture();
  const absl::Time now = io_.clock().Now();
  std::vector<ReplyCallback> expired;
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    auto it = pending_.find(deadlines_.begin()->second);
    expired.push_back(std::move(it->second.done));
    pending_.erase(it);
    deadlines_.erase(deadlines_.begin());
  }
  ArmTimer();
  const absl::Status timed_out = absl::DeadlineExceededError(
      absl::StrCat("redis ", role_, " connection: no reply within the command timeout"));
  for (ReplyCallback& done : expired) done(timed_out);
}

void Connection::ArmTimer() {
  if (timeout_timer_ == nullptr) return;
  if (deadlines_.empty()) {
    timeout_timer_->Disable();
    armed_deadline_ = absl::InfiniteFuture();
    return;
  }
  const absl::Time earliest = deadlines_.begin()->first;
  if (earliest == armed_deadline_ && timeout_timer_->Enabled()) return;
  timeout_timer_->EnableAt(earliest);
  armed_deadline_ = earliest;
}

}  // namespace switchboard::broker::redis
