#include "server/broker/amqp/amqp_connection.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/broker/amqp/consumers.h"
#include "server/broker/amqp/wire.h"
#include "server/common/log.h"
#include "server/common/status_macros.h"

namespace switchboard::broker::amqp {
namespace {

// Declarations are synchronous RPCs on one channel; publishes and their
// confirms flow on the other, so that a confirm arriving during a
// declaration is queued by rabbitmq-c and read afterwards.
constexpr amqp_channel_t kDeclareChannel = 1;
constexpr amqp_channel_t kPublishChannel = 2;

// Consumers have channels 3 and up (consumers.h).
static_assert(Consumers::kFirstChannel > kPublishChannel);

std::string Address(const AmqpConnectionOptions& options) {
  const std::string host =
      absl::StrContains(options.host, ':') ? absl::StrCat("[", options.host, "]") : options.host;
  return absl::StrCat(host, ":", options.port,
                      options.vhost == "/" ? "" : absl::StrCat("/", options.vhost));
}

// A copy of `status` that shares nothing with it, for a status that crosses
// threads. absl::Status shares its message by reference count, and Debian's
// Abseil is not built for ThreadSanitizer: the thread that drops the last
// reference frees the message, which TSan would report as racing with the
// other thread's reads.
absl::Status Detached(const absl::Status& status) {
  return absl::Status(status.code(), status.message());
}

}  // namespace

absl::string_view AmqpConnectionStateName(AmqpConnectionState state) {
  switch (state) {
    case AmqpConnectionState::kConnecting:
      return "connecting";
    case AmqpConnectionState::kReady:
      return "ready";
    case AmqpConnectionState::kDown:
      return "down";
  }
  return "unknown";
}

AmqpConnection::AmqpConnection(event::Dispatcher& owner, AmqpConnectionOptions options,
                               std::string role, AmqpConnectionObserver& observer)
    : owner_(owner),
      options_(std::move(options)),
      connection_name_(absl::StrCat("switchboard:", role)),
      address_(Address(options_)),
      observer_(observer),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
      consumers_(std::make_unique<Consumers>(owner, alive_, options_.reconnect_initial,
                                             options_.reconnect_max)),
      backoff_(common::ReconnectBackoff(options_.reconnect_initial, options_.reconnect_max)) {}

AmqpConnection::~AmqpConnection() {
  *alive_ = false;
  stopping_.store(true, std::memory_order_release);
  Wake();
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
  // What is still pending is destroyed with the members, without running.
}

void AmqpConnection::Start() {
  thread_ = std::thread([this] { Run(); });
}

void AmqpConnection::Declare(Declaration declaration, DoneCallback done) {
  Declare(std::move(declaration), options_.operation_timeout, std::move(done));
}

void AmqpConnection::Declare(Declaration declaration, absl::Duration timeout, DoneCallback done) {
  Submit(std::move(declaration), timeout, std::move(done));
}

void AmqpConnection::Unbind(BindingDeclaration binding, DoneCallback done) {
  Submit(Unbinding{std::move(binding)}, options_.operation_timeout, std::move(done));
}

void AmqpConnection::CountReady(std::string queue, CountCallback done) {
  auto counted = std::make_shared<CountCallback>(std::move(done));
  Submit(ReadyCount{std::move(queue), counted}, options_.operation_timeout,
         [counted](absl::Status status) { (*counted)(std::move(status)); });
}

void AmqpConnection::Publish(AmqpMessage message, DoneCallback done) {
  Publish(std::move(message), options_.operation_timeout, std::move(done));
}

void AmqpConnection::Publish(AmqpMessage message, absl::Duration timeout, DoneCallback done) {
  Submit(std::move(message), timeout, std::move(done));
}

void AmqpConnection::Submit(std::variant<Declaration, AmqpMessage, ReadyCount, Unbinding> what,
                            absl::Duration timeout, DoneCallback done) {
  // No offline queue: while down, fail now. An operation that slips in as
  // the connection drops is failed by Drop() or WaitBeforeReconnect(). An
  // unbinding goes to the I/O thread anyway, which forgets the binding.
  if (!ready_.load(std::memory_order_acquire) && !std::holds_alternative<Unbinding>(what)) {
    Reply(std::move(done), Unavailable());
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    posted_.push_back(Operation{std::move(what), absl::Now() + timeout, std::move(done)});
  }
  Wake();
}

absl::StatusOr<uint64_t> AmqpConnection::AddConsumer(AmqpConsumerOptions options,
                                                     AmqpConsumer& consumer) {
  // An empty name would consume the channel's last declared queue.
  if (options.queue.empty()) return absl::InvalidArgumentError("amqp consumer: no queue named");
  if (options.prefetch == 0) {
    return absl::InvalidArgumentError("amqp consumer: prefetch must be 1 to 65535");
  }
  if (consumer_alive_.size() >= kMaxConsumers) {
    return absl::ResourceExhaustedError(absl::StrCat("amqp connection ", connection_name_, " has ",
                                                     kMaxConsumers, " consumers already"));
  }
  const uint64_t id = ++last_consumer_id_;
  auto alive = std::make_shared<bool>(true);
  consumer_alive_.emplace(id, alive);
  ConsumerCommand command;
  command.kind = ConsumerCommand::Kind::kAdd;
  command.id = id;
  command.options = std::move(options);
  command.consumer = &consumer;
  command.alive = std::move(alive);
  PostConsumerCommand(std::move(command));
  return id;
}

void AmqpConnection::RemoveConsumer(uint64_t id) {
  auto it = consumer_alive_.find(id);
  if (it == consumer_alive_.end()) return;
  // Callbacks already posted check the flag on this thread: none runs now.
  *it->second = false;
  consumer_alive_.erase(it);
  ConsumerCommand command;
  command.kind = ConsumerCommand::Kind::kRemove;
  command.id = id;
  PostConsumerCommand(std::move(command));
}

void AmqpConnection::Ack(uint64_t id, uint64_t life, uint64_t delivery_tag, bool multiple) {
  if (consumer_alive_.count(id) == 0) return;
  ConsumerCommand command;
  command.kind = ConsumerCommand::Kind::kAck;
  command.id = id;
  command.life = life;
  command.delivery_tag = delivery_tag;
  command.multiple = multiple;
  PostConsumerCommand(std::move(command));
}

void AmqpConnection::Reject(uint64_t id, uint64_t life, uint64_t delivery_tag, bool requeue) {
  if (consumer_alive_.count(id) == 0) return;
  ConsumerCommand command;
  command.kind = ConsumerCommand::Kind::kReject;
  command.id = id;
  command.life = life;
  command.delivery_tag = delivery_tag;
  command.requeue = requeue;
  PostConsumerCommand(std::move(command));
}

void AmqpConnection::PostConsumerCommand(ConsumerCommand command) {
  {
    absl::MutexLock lock(&mu_);
    consumer_commands_.push_back(std::move(command));
  }
  Wake();
}

void AmqpConnection::Reply(DoneCallback done, const absl::Status& status) {
  owner_.Post([alive = alive_, done = std::move(done), status = Detached(status)]() mutable {
    if (*alive) done(std::move(status));
  });
}

AmqpConnectionState AmqpConnection::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

absl::Status AmqpConnection::last_error() const {
  absl::MutexLock lock(&mu_);
  return Detached(last_error_);
}

absl::Status AmqpConnection::Unavailable() const {
  absl::MutexLock lock(&mu_);
  return absl::UnavailableError(absl::StrCat(
      "amqp connection ", connection_name_, " to ", address_, " is ",
      AmqpConnectionStateName(state_),
      last_error_.ok() ? "" : absl::StrCat(" (last error: ", last_error_.message(), ")")));
}

void AmqpConnection::Wake() {
  const uint64_t one = 1;
  // Fails only when the counter is saturated, and then the thread wakes anyway.
  [[maybe_unused]] const ssize_t written = write(wake_fd_, &one, sizeof(one));
}

void AmqpConnection::SetState(AmqpConnectionState state, const absl::Status& error) {
  {
    absl::MutexLock lock(&mu_);
    last_error_ = Detached(error);
    if (state_ == state) return;
    state_ = state;
  }
  ready_.store(state == AmqpConnectionState::kReady, std::memory_order_release);
  owner_.Post([alive = alive_, observer = &observer_, state, error = Detached(error)] {
    if (*alive) observer->OnStateChanged(state, error);
  });
}

void AmqpConnection::Run() {
  std::string last_reason;
  while (!Stopping()) {
    absl::Status status = Connect();
    if (status.ok()) {
      failures_ = 0;
      last_reason.clear();
      backoff_.Reset();
      SB_LOG(kInfo, "amqp connection ", connection_name_, " to ", address_, " is ready (",
             topology_.size(), " declarations)");
      SetState(AmqpConnectionState::kReady, absl::OkStatus());
      status = Serve();
      if (Stopping()) break;
      SB_LOG(kWarning, "amqp connection ", connection_name_, " to ", address_,
             " lost: ", status.message(), "; reconnecting");
    } else if (++failures_ == 1 || status.message() != last_reason) {
      // Each new kind of failure is a warning; repeats are debug.
      SB_LOG(kWarning, "amqp connection ", connection_name_, " to ", address_,
             " failed: ", status.message(), "; retrying with backoff");
    } else {
      SB_LOG(kDebug, "amqp connection ", connection_name_, " attempt ", failures_,
             " failed: ", status.message());
    }
    last_reason = std::string(status.message());
    SetState(AmqpConnectionState::kDown, absl::UnavailableError(status.message()));
    Drop(Unavailable());
    WaitBeforeReconnect(backoff_.Next(random_));
  }
  if (connection_ != nullptr && logged_in_) {
    SetRpcTimeout(kCloseTimeout);
    amqp_connection_close(connection_, AMQP_REPLY_SUCCESS);
  }
  if (connection_ != nullptr) amqp_destroy_connection(connection_);
  connection_ = nullptr;
}

void AmqpConnection::SetRpcTimeout(absl::Duration timeout) {
  timeval bound = absl::ToTimeval(std::max(timeout, absl::Milliseconds(1)));
  amqp_set_rpc_timeout(connection_, &bound);
}

absl::Status AmqpConnection::Connect() {
  connection_ = amqp_new_connection();
  logged_in_ = false;
  if (connection_ == nullptr) return absl::ResourceExhaustedError("amqp_new_connection failed");
  amqp_socket_t* socket =
      options_.tls ? amqp_ssl_socket_new(connection_) : amqp_tcp_socket_new(connection_);
  if (socket == nullptr) return absl::InternalError("cannot create a socket");
  if (options_.tls) {
    amqp_ssl_socket_set_verify_peer(socket, 1);
    amqp_ssl_socket_set_verify_hostname(socket, 1);
    if (amqp_ssl_socket_set_cacert(socket, options_.ca_file.c_str()) != AMQP_STATUS_OK) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read the CA file '", options_.ca_file, "'"));
    }
  }
  timeval timeout = absl::ToTimeval(options_.connect_timeout);
  const int opened =
      amqp_socket_open_noblock(socket, options_.host.c_str(), options_.port, &timeout);
  if (opened != AMQP_STATUS_OK) return LibraryStatus(opened, "connect");
  amqp_set_handshake_timeout(connection_, &timeout);
  SetRpcTimeout(options_.connect_timeout);

  SB_RETURN_IF_ERROR(ReplyStatus(LogIn(connection_, options_, connection_name_), "login"));
  logged_in_ = true;
  amqp_channel_open(connection_, kDeclareChannel);
  SB_RETURN_IF_ERROR(ReplyStatus(amqp_get_rpc_reply(connection_), "channel.open"));
  SB_RETURN_IF_ERROR(OpenPublishChannel());
  for (const Declaration& declaration : topology_) {
    SB_RETURN_IF_ERROR(ReplyStatus(SendDeclaration(connection_, kDeclareChannel, declaration),
                                   absl::StrCat("redeclaring ", Describe(declaration))));
    amqp_maybe_release_buffers_on_channel(connection_, kDeclareChannel);
  }
  // Consumers last: their queues are declared by now.
  SB_RETURN_IF_ERROR(ApplyConsumerCommands(connection_));
  SB_RETURN_IF_ERROR(consumers_->StartDue(connection_));
  last_heard_ = absl::Now();
  return absl::OkStatus();
}

absl::Status AmqpConnection::OpenPublishChannel() {
  amqp_channel_open(connection_, kPublishChannel);
  SB_RETURN_IF_ERROR(ReplyStatus(amqp_get_rpc_reply(connection_), "channel.open"));
  amqp_confirm_select(connection_, kPublishChannel);
  SB_RETURN_IF_ERROR(ReplyStatus(amqp_get_rpc_reply(connection_), "confirm.select"));
  last_delivery_tag_ = 0;  // Delivery tags count from 1 on each channel.
  return absl::OkStatus();
}

absl::Status AmqpConnection::Serve() {
  while (!Stopping()) {
    // One at a time: when the connection drops, what is left stays posted
    // for Drop() to fail.
    for (std::optional<Operation> posted = PopPosted(); posted.has_value(); posted = PopPosted()) {
      Operation& operation = *posted;
      if (absl::Now() >= operation.deadline) {
        Reply(std::move(operation.done),
              absl::DeadlineExceededError("amqp operation: timed out before it was sent"));
      } else if (std::holds_alternative<Declaration>(operation.what)) {
        SB_RETURN_IF_ERROR(RunDeclaration(operation));
      } else if (std::holds_alternative<ReadyCount>(operation.what)) {
        SB_RETURN_IF_ERROR(RunReadyCount(operation));
      } else if (std::holds_alternative<Unbinding>(operation.what)) {
        SB_RETURN_IF_ERROR(RunUnbind(operation));
      } else {
        waiting_.push_back(std::move(operation));
      }
    }
    SB_RETURN_IF_ERROR(ApplyConsumerCommands(connection_));
    if (consumers_->NextStart() <= absl::Now()) {
      SetRpcTimeout(options_.operation_timeout);
      SB_RETURN_IF_ERROR(consumers_->StartDue(connection_));
    }
    SB_RETURN_IF_ERROR(SendWaitingPublishes());
    SB_RETURN_IF_ERROR(ReadFrames());
    const absl::Time now = absl::Now();
    ExpireDue(now);
    if (options_.heartbeat > absl::ZeroDuration() && now - last_heard_ > 2 * options_.heartbeat) {
      return absl::UnavailableError(absl::StrCat("nothing heard from the broker for ",
                                                 absl::FormatDuration(now - last_heard_)));
    }
    // Confirms just read may have freed slots for waiting publishes.
    if (!waiting_.empty() && unconfirmed_.size() < kMaxUnconfirmedPublishes) continue;
    // ReadFrames() leaves nothing read and unhandled; should a call after it
    // have read ahead, poll() would not say so.
    if (amqp_frames_enqueued(connection_) || amqp_data_in_buffer(connection_)) continue;
    SB_RETURN_IF_ERROR(Poll(NextWakeup()));
  }
  return absl::OkStatus();
}

std::deque<AmqpConnection::Operation> AmqpConnection::TakePosted() {
  std::deque<Operation> posted;
  absl::MutexLock lock(&mu_);
  posted.swap(posted_);
  return posted;
}

std::optional<AmqpConnection::Operation> AmqpConnection::PopPosted() {
  absl::MutexLock lock(&mu_);
  if (posted_.empty()) return std::nullopt;
  std::optional<Operation> operation(std::move(posted_.front()));
  posted_.pop_front();
  return operation;
}

absl::Status AmqpConnection::RunDeclaration(Operation& operation) {
  const Declaration& declaration = std::get<Declaration>(operation.what);
  SetRpcTimeout(operation.deadline - absl::Now());
  const amqp_rpc_reply_t reply = SendDeclaration(connection_, kDeclareChannel, declaration);
  absl::Status status = ReplyStatus(reply, Describe(declaration));
  if (status.ok()) {
    amqp_maybe_release_buffers_on_channel(connection_, kDeclareChannel);
    if (std::find(topology_.begin(), topology_.end(), declaration) == topology_.end()) {
      topology_.push_back(declaration);
    }
    Reply(std::move(operation.done), std::move(status));
    return absl::OkStatus();
  }
  Reply(std::move(operation.done), status);
  if (IsChannelClose(reply)) return OnChannelClosed(kDeclareChannel, status);
  // Timed out (rabbitmq-c closed the socket) or lost: start over.
  return absl::UnavailableError(status.message());
}

void AmqpConnection::Forget(const BindingDeclaration& binding) {
  topology_.erase(std::remove(topology_.begin(), topology_.end(), Declaration(binding)),
                  topology_.end());
}

absl::Status AmqpConnection::RunUnbind(Operation& operation) {
  const BindingDeclaration& binding = std::get<Unbinding>(operation.what).binding;
  Forget(binding);
  SetRpcTimeout(operation.deadline - absl::Now());
  const amqp_rpc_reply_t reply = SendUnbind(connection_, kDeclareChannel, binding);
  absl::Status status = ReplyStatus(
      reply, absl::StrCat("queue.unbind '", binding.queue, "' from '", binding.exchange, "'"));
  Reply(std::move(operation.done), status);
  if (status.ok()) {
    amqp_maybe_release_buffers_on_channel(connection_, kDeclareChannel);
    return absl::OkStatus();
  }
  if (IsChannelClose(reply)) return OnChannelClosed(kDeclareChannel, status);
  return absl::UnavailableError(status.message());
}

absl::Status AmqpConnection::RunReadyCount(Operation& operation) {
  ReadyCount& count = std::get<ReadyCount>(operation.what);
  SetRpcTimeout(operation.deadline - absl::Now());
  uint32_t ready = 0;
  const amqp_rpc_reply_t reply =
      CountReadyMessages(connection_, kDeclareChannel, count.queue, ready);
  const absl::Status status =
      ReplyStatus(reply, absl::StrCat("queue.declare (passive) '", count.queue, "'"));
  if (status.ok()) {
    amqp_maybe_release_buffers_on_channel(connection_, kDeclareChannel);
    owner_.Post([alive = alive_, counted = std::move(count.counted), ready] {
      if (*alive) (*counted)(ready);
    });
    return absl::OkStatus();
  }
  Reply(std::move(operation.done), status);
  if (IsChannelClose(reply)) return OnChannelClosed(kDeclareChannel, status);
  return absl::UnavailableError(status.message());
}

absl::Status AmqpConnection::ApplyConsumerCommands(amqp_connection_state_t connection) {
  std::vector<ConsumerCommand> commands;
  {
    absl::MutexLock lock(&mu_);
    commands.swap(consumer_commands_);
  }
  absl::Status status;
  for (ConsumerCommand& command : commands) {
    // Once the connection failed, the rest still add and remove consumers.
    absl::Status applied =
        consumers_->Apply(status.ok() ? connection : nullptr, std::move(command));
    if (status.ok()) status = std::move(applied);
  }
  return status;
}

absl::Status AmqpConnection::SendWaitingPublishes() {
  while (!waiting_.empty() && unconfirmed_.size() < kMaxUnconfirmedPublishes) {
    Operation operation = std::move(waiting_.front());
    waiting_.pop_front();
    const int sent =
        SendPublish(connection_, kPublishChannel, std::get<AmqpMessage>(operation.what));
    if (sent != AMQP_STATUS_OK) {
      const absl::Status status = LibraryStatus(sent, "basic.publish");
      Reply(std::move(operation.done), absl::UnavailableError(status.message()));
      return status;
    }
    unconfirmed_.emplace(++last_delivery_tag_,
                         Unconfirmed{operation.deadline, std::move(operation.done)});
    unconfirmed_count_.store(unconfirmed_.size(), std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

absl::Status AmqpConnection::ReadFrames() {
  while (true) {
    amqp_frame_t frame;
    timeval no_wait{0, 0};
    const int got = amqp_simple_wait_frame_noblock(connection_, &frame, &no_wait);
    if (got == AMQP_STATUS_TIMEOUT) {
      // One OnDeliveries() per consumer for all this pass read.
      consumers_->Flush();
      return absl::OkStatus();
    }
    if (got != AMQP_STATUS_OK) return LibraryStatus(got, "reading from the broker");
    last_heard_ = absl::Now();
    SB_RETURN_IF_ERROR(HandleFrame(frame));
    amqp_maybe_release_buffers_on_channel(connection_, frame.channel);
  }
}

absl::Status AmqpConnection::HandleFrame(const amqp_frame_t& frame) {
  if (consumers_->Owns(frame.channel)) return consumers_->HandleFrame(connection_, frame);
  if (frame.frame_type != AMQP_FRAME_METHOD) return absl::OkStatus();
  const amqp_method_t& method = frame.payload.method;
  switch (method.id) {
    case AMQP_BASIC_ACK_METHOD:
      if (frame.channel == kPublishChannel) {
        const auto* ack = static_cast<const amqp_basic_ack_t*>(method.decoded);
        Settle(ack->delivery_tag, ack->multiple != 0, absl::OkStatus());
      }
      return absl::OkStatus();
    case AMQP_BASIC_NACK_METHOD:
      if (frame.channel == kPublishChannel) {
        const auto* nack = static_cast<const amqp_basic_nack_t*>(method.decoded);
        Settle(nack->delivery_tag, nack->multiple != 0,
               absl::UnavailableError("basic.publish: the broker nacked the message"));
      }
      return absl::OkStatus();
    case AMQP_CHANNEL_CLOSE_METHOD: {
      // A channel forgotten already (a consumer's that closed): only
      // acknowledged.
      if (frame.channel != kDeclareChannel && frame.channel != kPublishChannel) {
        const int acknowledged = SendChannelCloseOk(connection_, frame.channel);
        if (acknowledged != AMQP_STATUS_OK) return LibraryStatus(acknowledged, "channel.close-ok");
        return absl::OkStatus();
      }
      const auto* close = static_cast<const amqp_channel_close_t*>(method.decoded);
      return OnChannelClosed(
          frame.channel,
          ChannelCloseStatus(*close,
                             frame.channel == kPublishChannel ? "basic.publish" : "declaration"));
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
      amqp_rpc_reply_t reply{};
      reply.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION;
      reply.reply = method;
      const absl::Status status = ReplyStatus(reply, "connection");
      SendConnectionCloseOk(connection_);
      return status;
    }
    default:
      return absl::OkStatus();
  }
}

absl::Status AmqpConnection::OnChannelClosed(uint16_t channel, const absl::Status& why) {
  const int acknowledged = SendChannelCloseOk(connection_, channel);
  if (acknowledged != AMQP_STATUS_OK) return LibraryStatus(acknowledged, "channel.close-ok");
  SetRpcTimeout(options_.operation_timeout);
  if (channel != kPublishChannel) {
    amqp_channel_open(connection_, channel);
    return ReplyStatus(amqp_get_rpc_reply(connection_), "channel.open");
  }
  // The broker drops whatever followed the publish it refused: every
  // publish not confirmed yet is lost with it.
  std::map<uint64_t, Unconfirmed> failed;
  failed.swap(unconfirmed_);
  unconfirmed_count_.store(0, std::memory_order_relaxed);
  for (auto& [tag, unconfirmed] : failed) {
    if (unconfirmed.done) Reply(std::move(unconfirmed.done), why);
  }
  return OpenPublishChannel();
}

void AmqpConnection::Settle(uint64_t delivery_tag, bool multiple, const absl::Status& status) {
  auto first = multiple ? unconfirmed_.begin() : unconfirmed_.find(delivery_tag);
  auto last = unconfirmed_.upper_bound(delivery_tag);
  if (first == unconfirmed_.end()) return;
  std::vector<DoneCallback> settled;
  for (auto it = first; it != last; ++it) {
    if (it->second.done) settled.push_back(std::move(it->second.done));
  }
  unconfirmed_.erase(first, last);
  // Counted before the callbacks run, so that they see the count without
  // the publishes they settle.
  unconfirmed_count_.store(unconfirmed_.size(), std::memory_order_relaxed);
  for (DoneCallback& done : settled) Reply(std::move(done), status);
}

void AmqpConnection::ExpireDue(absl::Time now) {
  for (auto& [tag, unconfirmed] : unconfirmed_) {
    if (unconfirmed.done && unconfirmed.deadline <= now) {
      Reply(std::move(unconfirmed.done),
            absl::DeadlineExceededError("basic.publish: no confirm from the broker in time"));
      unconfirmed.done = nullptr;
    }
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->deadline > now) {
      ++it;
      continue;
    }
    Reply(std::move(it->done), absl::DeadlineExceededError(absl::StrCat(
                                   "basic.publish: waited in vain for one of the ",
                                   kMaxUnconfirmedPublishes, " slots for unconfirmed publishes")));
    it = waiting_.erase(it);
  }
}

absl::Time AmqpConnection::NextWakeup() const {
  absl::Time next = absl::InfiniteFuture();
  if (options_.heartbeat > absl::ZeroDuration()) {
    // Often enough for rabbitmq-c to send its heartbeats in time (it does
    // when a frame read finds one due) and to notice the broker's missing.
    next = absl::Now() + options_.heartbeat / 2;
  }
  for (const auto& [tag, unconfirmed] : unconfirmed_) {
    if (unconfirmed.done) next = std::min(next, unconfirmed.deadline);
  }
  for (const Operation& operation : waiting_) next = std::min(next, operation.deadline);
  return std::min(next, consumers_->NextStart());
}

absl::Status AmqpConnection::Poll(absl::Time until) {
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {-1, POLLIN, 0}};
  if (connection_ != nullptr) fds[1].fd = amqp_get_sockfd(connection_);
  int timeout_ms = -1;
  if (until != absl::InfiniteFuture()) {
    const absl::Duration left = std::max(until - absl::Now(), absl::ZeroDuration());
    timeout_ms = static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), INT_MAX));
  }
  if (poll(fds, 2, timeout_ms) < 0 && errno != EINTR) {
    return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
  }
  if (fds[0].revents != 0) {
    uint64_t count;
    [[maybe_unused]] const ssize_t drained = read(wake_fd_, &count, sizeof(count));
  }
  if (fds[1].revents != 0) last_heard_ = absl::Now();
  return absl::OkStatus();
}

void AmqpConnection::WaitBeforeReconnect(absl::Duration delay) {
  const absl::Time until = absl::Now() + delay;
  while (!Stopping()) {
    FailPosted(Unavailable());
    ApplyConsumerCommands(nullptr).IgnoreError();  // Fails only with a connection.
    if (absl::Now() >= until) return;
    Poll(until).IgnoreError();  // An error here only ends the wait early.
  }
}

void AmqpConnection::FailPosted(const absl::Status& status) {
  for (Operation& operation : TakePosted()) {
    if (const auto* unbinding = std::get_if<Unbinding>(&operation.what)) {
      Forget(unbinding->binding);
    }
    Reply(std::move(operation.done), status);
  }
}

void AmqpConnection::Drop(const absl::Status& why) {
  if (connection_ != nullptr) amqp_destroy_connection(connection_);
  connection_ = nullptr;
  logged_in_ = false;
  std::map<uint64_t, Unconfirmed> failed;
  failed.swap(unconfirmed_);
  unconfirmed_count_.store(0, std::memory_order_relaxed);
  for (auto& [tag, unconfirmed] : failed) {
    if (unconfirmed.done) Reply(std::move(unconfirmed.done), why);
  }
  for (Operation& operation : waiting_) Reply(std::move(operation.done), why);
  waiting_.clear();
  FailPosted(why);
  consumers_->Dropped(why);
}

}  // namespace switchboard::broker::amqp
