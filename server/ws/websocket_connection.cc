#include "server/ws/websocket_connection.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <wslay/wslay.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::ws {

std::string TransportError(bufferevent* bev) {
  // Zero for a bufferevent without TLS.
  if (const unsigned long ssl_error = bufferevent_get_openssl_error(bev); ssl_error != 0) {
    char text[256];
    ERR_error_string_n(ssl_error, text, sizeof(text));
    return absl::StrCat("TLS: ", text);
  }
  return absl::StrCat("connection failed: ", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

namespace {

// The most a connection writes out as it is destroyed (WriteOutNow).
constexpr size_t kWriteOutBytes = 64 << 10;

// Runs `write` with SIGPIPE blocked on this thread, and takes back a SIGPIPE
// it raised: a write to a peer that is gone fails (EPIPE) instead of ending
// the process, whatever the process does with the signal (switchboard's
// main ignores it; a process embedding the server need not).
template <typename Write>
void WithoutSigpipe(Write write) {
  sigset_t sigpipe;
  sigset_t old_mask;
  sigemptyset(&sigpipe);
  sigaddset(&sigpipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigpipe, &old_mask);
  sigset_t pending;
  sigpending(&pending);
  const bool pending_before = sigismember(&pending, SIGPIPE) == 1;
  write();
  sigpending(&pending);
  if (!pending_before && sigismember(&pending, SIGPIPE) == 1) {
    const timespec no_wait{};
    sigtimedwait(&sigpipe, nullptr, &no_wait);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
}

class WebSocketConnectionImpl final : public WebSocketConnection {
 public:
  WebSocketConnectionImpl(event::DispatcherImpl& dispatcher, bufferevent* bev, std::string name,
                          WebSocketConnectionOptions options, WebSocketHandler& handler)
      : bev_(bev),
        name_(std::move(name)),
        options_(options),
        handler_(handler),
        timer_(dispatcher.CreateTimer([this] { OnTimer(); })),
        first_read_(dispatcher.CreateTimer([this] { Read(); })) {}

  ~WebSocketConnectionImpl() override {
    WriteOutNow();
    bufferevent_free(bev_);
    if (wslay_ != nullptr) wslay_event_context_free(wslay_);
  }

  absl::Status Start(Role role) {
    wslay_event_callbacks callbacks{};
    callbacks.recv_callback = &WebSocketConnectionImpl::WslayRecv;
    callbacks.send_callback = &WebSocketConnectionImpl::WslaySend;
    callbacks.on_msg_recv_callback = &WebSocketConnectionImpl::WslayMessage;
    int initialised;
    if (role == Role::kClient) {
      callbacks.genmask_callback = &WebSocketConnectionImpl::WslayGenmask;
      initialised = wslay_event_context_client_init(&wslay_, &callbacks, this);
    } else {
      initialised = wslay_event_context_server_init(&wslay_, &callbacks, this);
    }
    if (initialised != 0) {
      return absl::ResourceExhaustedError("out of memory for a WebSocket connection");
    }
    wslay_event_config_set_max_recv_msg_length(wslay_, options_.max_message_bytes);
    bufferevent_setcb(bev_, &WebSocketConnectionImpl::OnReadable,
                      &WebSocketConnectionImpl::OnWritten, &WebSocketConnectionImpl::OnEvent, this);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    ArmPing();
    // What came with the end of the handshake is in the input already: no
    // read event will announce it.
    first_read_->Enable(absl::ZeroDuration());
    return absl::OkStatus();
  }

  absl::Status SendText(absl::string_view message) override {
    if (phase_ != Phase::kOpen) {
      return absl::FailedPreconditionError(
          absl::StrCat(name_, ": the WebSocket connection is not open"));
    }
    if (queued_bytes() + message.size() > options_.max_queued_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(name_, ": more than ", options_.max_queued_bytes,
                       " bytes are waiting to be written to the WebSocket connection"));
    }
    wslay_event_msg msg{WSLAY_TEXT_FRAME, reinterpret_cast<const uint8_t*>(message.data()),
                        message.size()};
    if (wslay_event_queue_msg(wslay_, &msg) != 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat(name_, ": cannot queue a WebSocket message"));
    }
    // Inside a callback of Read(), which writes when wslay is done reading.
    if (!in_read_) Write();
    return absl::OkStatus();
  }

  void Close(uint16_t code) override {
    if (phase_ == Phase::kOpen) {
      wslay_event_queue_close(wslay_, code, nullptr, 0);
      wslay_event_send(wslay_);
    }
    phase_ = Phase::kEnded;
    timer_->Disable();
    first_read_->Disable();
  }

  size_t queued_bytes() const override {
    return evbuffer_get_length(bufferevent_get_output(bev_)) +
           wslay_event_get_queued_msg_length(wslay_);
  }

 private:
  // The state of the connection, in order.
  enum class Phase { kOpen, kClosing, kEnded };

  static void OnReadable(bufferevent* /*bev*/, void* arg) {
    static_cast<WebSocketConnectionImpl*>(arg)->Read();
  }

  // The output buffer is empty (the write low-water mark is 0).
  static void OnWritten(bufferevent* /*bev*/, void* arg) {
    auto* self = static_cast<WebSocketConnectionImpl*>(arg);
    if (self->phase_ == Phase::kOpen) self->handler_.OnDrained();
  }

  static void OnEvent(bufferevent* bev, short events, void* arg) {
    static_cast<WebSocketConnectionImpl*>(arg)->End(absl::UnavailableError(
        (events & BEV_EVENT_EOF) != 0 ? std::string("the peer closed the connection")
                                      : TransportError(bev)));
  }

  void Read() {
    if (phase_ != Phase::kOpen && phase_ != Phase::kClosing) return;
    received_ = true;
    in_read_ = true;
    const int received = wslay_event_recv(wslay_);
    in_read_ = false;
    if (received != 0) {
      End(absl::UnavailableError("the peer broke the WebSocket framing"));
      return;
    }
    if (phase_ == Phase::kEnded) return;  // The handler closed it.
    Pump();
  }

  static ssize_t WslayRecv(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int /*flags*/,
                           void* arg) {
    auto* self = static_cast<WebSocketConnectionImpl*>(arg);
    const int read = evbuffer_remove(bufferevent_get_input(self->bev_), buf, len);
    if (read <= 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    return read;
  }

  static ssize_t WslaySend(wslay_event_context_ptr /*ctx*/, const uint8_t* data, size_t len,
                           int /*flags*/, void* arg) {
    auto* self = static_cast<WebSocketConnectionImpl*>(arg);
    // The output buffer takes everything: SendText bounds what waits.
    if (bufferevent_write(self->bev_, data, len) != 0) return -1;
    return static_cast<ssize_t>(len);
  }

  static int WslayGenmask(wslay_event_context_ptr /*ctx*/, uint8_t* buf, size_t len,
                          void* /*arg*/) {
    return RAND_bytes(buf, static_cast<int>(len)) == 1 ? 0 : -1;
  }

  static void WslayMessage(wslay_event_context_ptr /*ctx*/, const wslay_event_on_msg_recv_arg* arg,
                           void* user) {
    auto* self = static_cast<WebSocketConnectionImpl*>(user);
    if (self->phase_ != Phase::kOpen) return;
    switch (arg->opcode) {
      case WSLAY_TEXT_FRAME:
      case WSLAY_BINARY_FRAME:
        self->handler_.OnText(
            absl::string_view(reinterpret_cast<const char*>(arg->msg), arg->msg_length));
        break;
      case WSLAY_CONNECTION_CLOSE:
        // wslay answers the close; the connection ends once that is out.
        self->phase_ = Phase::kClosing;
        self->close_code_ = arg->status_code;
        break;
      default:  // Pings are answered by wslay; pongs only prove life.
        break;
    }
  }

  // At destruction: what still waits for the peer (a close frame queued by
  // Close() or by the answer to the peer's close, which the loop has not
  // written yet) goes to the socket now, without waiting, as the socket is
  // closed right after. Best effort: a close frame fits any socket buffer;
  // of a long queue, what the socket takes at once (at most kWriteOutBytes).
  void WriteOutNow() {
    evbuffer* output = bufferevent_get_output(bev_);
    const size_t length = std::min(evbuffer_get_length(output), kWriteOutBytes);
    if (length == 0) return;
    WithoutSigpipe([&] {
      if (SSL* ssl = bufferevent_openssl_get_ssl(bev_); ssl != nullptr) {
        // The output holds plaintext; the TLS record is made here.
        SSL_write(ssl, evbuffer_pullup(output, static_cast<ev_ssize_t>(length)),
                  static_cast<int>(length));
        ERR_clear_error();
      } else {
        // A socket bufferevent keeps its output's start frozen between its
        // own writes.
        evbuffer_unfreeze(output, /*at_front=*/1);
        evbuffer_write_atmost(output, bufferevent_getfd(bev_), static_cast<ev_ssize_t>(length));
      }
    });
  }

  // Writes what the handler queued, from outside the event callbacks: a
  // failure ends the connection from the timer, so that OnClosed never runs
  // inside the handler's own SendText.
  void Write() {
    if (wslay_event_send(wslay_) != 0 && !pending_end_.has_value()) {
      pending_end_ = absl::UnavailableError("cannot write to the WebSocket connection");
      timer_->Enable(absl::ZeroDuration());
    }
  }

  // Writes what wslay queued and ends the connection when wslay is done.
  void Pump() {
    if (wslay_event_send(wslay_) != 0) {
      End(absl::UnavailableError("cannot write to the WebSocket connection"));
      return;
    }
    if (phase_ == Phase::kClosing && wslay_event_want_write(wslay_) == 0) {
      End(absl::UnavailableError(
          absl::StrCat("the peer closed the WebSocket connection (", close_code_, ")")));
      return;
    }
    if (wslay_event_want_read(wslay_) == 0 && wslay_event_want_write(wslay_) == 0) {
      End(absl::UnavailableError("the WebSocket connection ended (a message over the limit?)"));
    }
  }

  void ArmPing() {
    awaiting_pong_ = false;
    received_ = false;
    timer_->Enable(options_.ping_interval);
  }

  void OnTimer() {
    if (pending_end_.has_value()) {
      End(*std::move(pending_end_));
      return;
    }
    if (phase_ != Phase::kOpen) return;
    if (received_) {  // Alive: wait a whole interval again.
      ArmPing();
      return;
    }
    if (awaiting_pong_) {
      End(absl::DeadlineExceededError(absl::StrCat("no answer to a WebSocket ping within ",
                                                   absl::FormatDuration(options_.pong_timeout))));
      return;
    }
    wslay_event_msg ping{WSLAY_PING, nullptr, 0};
    wslay_event_queue_msg(wslay_, &ping);
    awaiting_pong_ = true;
    timer_->Enable(options_.pong_timeout);
    Pump();
  }

  // The connection is over: tells the handler, once. The handler may
  // destroy this connection; nothing touches it after.
  void End(absl::Status why) {
    if (phase_ == Phase::kEnded) return;
    phase_ = Phase::kEnded;
    timer_->Disable();
    first_read_->Disable();
    // Writes go on while the connection lives: a close frame wslay queued
    // (1009 for a message over the limit, the answer to the peer's close)
    // still reaches the peer.
    bufferevent_disable(bev_, EV_READ);
    handler_.OnClosed(absl::Status(why.code(), absl::StrCat(name_, ": ", why.message())));
  }

  bufferevent* const bev_;
  const std::string name_;
  const WebSocketConnectionOptions options_;
  WebSocketHandler& handler_;
  std::unique_ptr<event::Timer> timer_;       // Keepalive, and deferred ends.
  std::unique_ptr<event::Timer> first_read_;  // Reads what came with the handshake.
  wslay_event_context_ptr wslay_ = nullptr;
  Phase phase_ = Phase::kOpen;
  uint16_t close_code_ = 0;
  // Keepalive: something came since the timer was armed; a ping is out.
  bool received_ = false;
  bool awaiting_pong_ = false;
  bool in_read_ = false;  // Inside wslay_event_recv().
  std::optional<absl::Status> pending_end_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<WebSocketConnection>> WebSocketConnection::Open(
    event::DispatcherImpl& dispatcher, bufferevent* bev, Role role, std::string name,
    WebSocketConnectionOptions options, WebSocketHandler& handler) {
  auto connection =
      std::make_unique<WebSocketConnectionImpl>(dispatcher, bev, std::move(name), options, handler);
  if (absl::Status started = connection->Start(role); !started.ok()) return started;
  return connection;
}

}  // namespace switchboard::ws
