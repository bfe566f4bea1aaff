#include "server/ws/websocket_client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <wslay/wslay.h>

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "server/http/url_mask.h"
#include "server/ws/websocket_handshake.h"

namespace switchboard::ws {
namespace {

// The state of the connection, in order.
enum class Phase { kConnecting, kHandshaking, kOpen, kClosing, kEnded };

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};

// The newest OpenSSL error, for a status message.
std::string SslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no detail";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

class WebSocketClientImpl final : public WebSocketClient {
 public:
  WebSocketClientImpl(event::DispatcherImpl& dispatcher, WebSocketUrl url, std::string masked_url,
                      WebSocketClientOptions options, WebSocketObserver& observer)
      : dispatcher_(dispatcher),
        url_(std::move(url)),
        masked_url_(std::move(masked_url)),
        options_(std::move(options)),
        observer_(observer),
        key_(NewWebSocketKey()),
        timer_(dispatcher.CreateTimer([this] { OnTimer(); })) {}

  ~WebSocketClientImpl() override {
    if (bev_ != nullptr) bufferevent_free(bev_);  // Cancels a pending DNS lookup too.
    if (dns_ != nullptr) evdns_base_free(dns_, /*fail_requests=*/0);
    if (wslay_ != nullptr) wslay_event_context_free(wslay_);
  }

  // Sets up the socket (and TLS) and starts the connect.
  absl::Status Start() {
    event_base* base = dispatcher_.base();
    if (url_.tls) {
      SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
      if (ctx == nullptr) return absl::InternalError(absl::StrCat("TLS setup: ", SslError()));
      ssl_ctx_.reset(ctx);
      if (options_.tls_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        const int loaded = options_.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                                    : SSL_CTX_load_verify_locations(
                                                          ctx, options_.ca_file.c_str(), nullptr);
        if (loaded != 1) {
          return absl::FailedPreconditionError(
              absl::StrCat("TLS: cannot load the trusted certificates: ", SslError()));
        }
      }
      SSL* ssl = SSL_new(ctx);
      if (ssl == nullptr) return absl::InternalError(absl::StrCat("TLS setup: ", SslError()));
      SSL_set_tlsext_host_name(ssl, url_.host.c_str());
      if (options_.tls_verify) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        // An IP address is checked against the certificate's IP names.
        if (X509_VERIFY_PARAM_set1_ip_asc(param, url_.host.c_str()) != 1) {
          SSL_set1_host(ssl, url_.host.c_str());
        }
      }
      bev_ = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    } else {
      bev_ = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev_ == nullptr) return absl::ResourceExhaustedError("cannot create a socket buffer");
    bufferevent_setcb(bev_, &WebSocketClientImpl::OnReadable, nullptr,
                      &WebSocketClientImpl::OnEvent, this);
    bufferevent_enable(bev_, EV_READ | EV_WRITE);
    dns_ = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (dns_ == nullptr) {
      // No resolv.conf: numeric hosts still work.
      dns_ = evdns_base_new(base, 0);
    }
    timer_->Enable(options_.connect_timeout);
    if (bufferevent_socket_connect_hostname(bev_, dns_, AF_UNSPEC, url_.host.c_str(), url_.port) !=
        0) {
      return absl::UnavailableError(absl::StrCat(masked_url_, ": cannot start the connect"));
    }
    return absl::OkStatus();
  }

  absl::Status SendText(absl::string_view message) override {
    if (phase_ != Phase::kOpen) {
      return absl::FailedPreconditionError(
          absl::StrCat(masked_url_, ": the WebSocket connection is not open"));
    }
    if (queued_bytes() + message.size() > options_.max_queued_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(masked_url_, ": more than ", options_.max_queued_bytes,
                       " bytes are waiting to be written to the WebSocket connection"));
    }
    wslay_event_msg msg{WSLAY_TEXT_FRAME, reinterpret_cast<const uint8_t*>(message.data()),
                        message.size()};
    if (wslay_event_queue_msg(wslay_, &msg) != 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat(masked_url_, ": cannot queue a WebSocket message"));
    }
    // Inside a callback of Read(), which writes when wslay is done reading.
    if (!in_read_) Write();
    return absl::OkStatus();
  }

  void Close() override {
    if (phase_ == Phase::kOpen) {
      wslay_event_queue_close(wslay_, WSLAY_CODE_NORMAL_CLOSURE, nullptr, 0);
      wslay_event_send(wslay_);
    }
    phase_ = Phase::kEnded;
    timer_->Disable();
  }

  size_t queued_bytes() const override {
    size_t bytes = bev_ == nullptr ? 0 : evbuffer_get_length(bufferevent_get_output(bev_));
    if (wslay_ != nullptr) bytes += wslay_event_get_queued_msg_length(wslay_);
    return bytes;
  }

 private:
  static void OnReadable(bufferevent* /*bev*/, void* arg) {
    static_cast<WebSocketClientImpl*>(arg)->Read();
  }

  static void OnEvent(bufferevent* /*bev*/, short events, void* arg) {
    auto* self = static_cast<WebSocketClientImpl*>(arg);
    if ((events & BEV_EVENT_CONNECTED) != 0) {
      self->SendUpgrade();
      return;
    }
    std::string why;
    if ((events & BEV_EVENT_EOF) != 0) {
      why = "the server closed the connection";
    } else if (self->phase_ == Phase::kConnecting &&
               bufferevent_socket_get_dns_error(self->bev_) != 0) {
      why = absl::StrCat("cannot resolve the host: ",
                         evutil_gai_strerror(bufferevent_socket_get_dns_error(self->bev_)));
    } else {
      const unsigned long ssl_error = bufferevent_get_openssl_error(self->bev_);
      if (ssl_error != 0) {
        char text[256];
        ERR_error_string_n(ssl_error, text, sizeof(text));
        why = absl::StrCat("TLS: ", text);
      } else {
        why = absl::StrCat("connection failed: ",
                           evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
      }
    }
    self->End(absl::UnavailableError(why));
  }

  void SendUpgrade() {
    phase_ = Phase::kHandshaking;
    const std::string request = BuildUpgradeRequest(url_, key_, options_.headers);
    bufferevent_write(bev_, request.data(), request.size());
  }

  void Read() {
    if (phase_ == Phase::kHandshaking && !ReadHandshake()) return;
    if (phase_ != Phase::kOpen && phase_ != Phase::kClosing) return;
    received_ = true;
    in_read_ = true;
    const int received = wslay_event_recv(wslay_);
    in_read_ = false;
    if (received != 0) {
      End(absl::UnavailableError("the server broke the WebSocket framing"));
      return;
    }
    if (phase_ == Phase::kEnded) return;  // The observer closed it.
    Pump();
  }

  // Reads the answer to the upgrade; true once the connection is open (the
  // bytes after the head, if any, are frames for wslay).
  bool ReadHandshake() {
    evbuffer* input = bufferevent_get_input(bev_);
    evbuffer_ptr end = evbuffer_search(input, "\r\n\r\n", 4, nullptr);
    if (end.pos < 0) {
      if (evbuffer_get_length(input) > kMaxHandshakeHeadBytes) {
        End(absl::UnavailableError("the WebSocket handshake's answer is too large"));
      }
      return false;
    }
    std::string head(static_cast<size_t>(end.pos), '\0');
    evbuffer_remove(input, head.data(), head.size());
    evbuffer_drain(input, 4);
    if (absl::Status checked = CheckUpgradeAnswer(head, key_); !checked.ok()) {
      End(checked);
      return false;
    }
    wslay_event_callbacks callbacks{};
    callbacks.recv_callback = &WebSocketClientImpl::WslayRecv;
    callbacks.send_callback = &WebSocketClientImpl::WslaySend;
    callbacks.genmask_callback = &WebSocketClientImpl::WslayGenmask;
    callbacks.on_msg_recv_callback = &WebSocketClientImpl::WslayMessage;
    if (wslay_event_context_client_init(&wslay_, &callbacks, this) != 0) {
      End(absl::ResourceExhaustedError("out of memory for a WebSocket connection"));
      return false;
    }
    wslay_event_config_set_max_recv_msg_length(wslay_, options_.max_message_bytes);
    phase_ = Phase::kOpen;
    ArmPing();
    observer_.OnOpen();
    return phase_ == Phase::kOpen;
  }

  static ssize_t WslayRecv(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int /*flags*/,
                           void* arg) {
    auto* self = static_cast<WebSocketClientImpl*>(arg);
    const int read = evbuffer_remove(bufferevent_get_input(self->bev_), buf, len);
    if (read <= 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    return read;
  }

  static ssize_t WslaySend(wslay_event_context_ptr /*ctx*/, const uint8_t* data, size_t len,
                           int /*flags*/, void* arg) {
    auto* self = static_cast<WebSocketClientImpl*>(arg);
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
    auto* self = static_cast<WebSocketClientImpl*>(user);
    if (self->phase_ != Phase::kOpen) return;
    switch (arg->opcode) {
      case WSLAY_TEXT_FRAME:
      case WSLAY_BINARY_FRAME:
        self->observer_.OnText(
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

  // Writes what the observer queued, from outside the event callbacks: a
  // failure ends the connection from the timer, so that OnClosed never runs
  // inside the observer's own SendText.
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
          absl::StrCat("the server closed the WebSocket connection (", close_code_, ")")));
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
    if (phase_ == Phase::kConnecting || phase_ == Phase::kHandshaking) {
      End(absl::DeadlineExceededError(absl::StrCat(
          "no WebSocket connection within ", absl::FormatDuration(options_.connect_timeout))));
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

  // The connection is over: tells the observer, once. The observer may
  // destroy this client; nothing touches it after.
  void End(absl::Status why) {
    if (phase_ == Phase::kEnded) return;
    phase_ = Phase::kEnded;
    timer_->Disable();
    bufferevent_disable(bev_, EV_READ | EV_WRITE);
    observer_.OnClosed(absl::Status(why.code(), absl::StrCat(masked_url_, ": ", why.message())));
  }

  event::DispatcherImpl& dispatcher_;
  const WebSocketUrl url_;
  const std::string masked_url_;
  const WebSocketClientOptions options_;
  WebSocketObserver& observer_;
  const std::string key_;
  std::unique_ptr<event::Timer> timer_;
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ssl_ctx_;
  evdns_base* dns_ = nullptr;
  bufferevent* bev_ = nullptr;
  wslay_event_context_ptr wslay_ = nullptr;
  Phase phase_ = Phase::kConnecting;
  uint16_t close_code_ = 0;
  // Keepalive: something came since the timer was armed; a ping is out.
  bool received_ = false;
  bool awaiting_pong_ = false;
  bool in_read_ = false;  // Inside wslay_event_recv().
  std::optional<absl::Status> pending_end_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<WebSocketClient>> WebSocketClient::Connect(
    event::DispatcherImpl& dispatcher, absl::string_view url, WebSocketClientOptions options,
    WebSocketObserver& observer) {
  absl::StatusOr<WebSocketUrl> parsed = ParseWebSocketUrl(url);
  if (!parsed.ok()) return parsed.status();
  auto client = std::make_unique<WebSocketClientImpl>(
      dispatcher, *std::move(parsed), http::MaskUrl(url), std::move(options), observer);
  if (absl::Status started = client->Start(); !started.ok()) return started;
  return client;
}

}  // namespace switchboard::ws
