#include "server/ws/websocket_client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "server/http/url_mask.h"
#include "server/ws/websocket_handshake.h"

namespace switchboard::ws {
namespace {

// The state of the client, in order.
enum class Phase { kConnecting, kHandshaking, kOpen, kEnded };

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
    connection_.reset();
    if (bev_ != nullptr) bufferevent_free(bev_);  // Cancels a pending DNS lookup too.
    if (dns_ != nullptr) evdns_base_free(dns_, /*fail_requests=*/0);
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
    if (connection_ == nullptr || phase_ != Phase::kOpen) {
      return absl::FailedPreconditionError(
          absl::StrCat(masked_url_, ": the WebSocket connection is not open"));
    }
    return connection_->SendText(message);
  }

  void Close() override {
    if (connection_ != nullptr) connection_->Close(kCloseNormal);
    phase_ = Phase::kEnded;
    timer_->Disable();
  }

  size_t queued_bytes() const override {
    if (connection_ != nullptr) return connection_->queued_bytes();
    return bev_ == nullptr ? 0 : evbuffer_get_length(bufferevent_get_output(bev_));
  }

 private:
  static void OnReadable(bufferevent* /*bev*/, void* arg) {
    static_cast<WebSocketClientImpl*>(arg)->ReadHandshake();
  }

  static void OnEvent(bufferevent* bev, short events, void* arg) {
    auto* self = static_cast<WebSocketClientImpl*>(arg);
    if ((events & BEV_EVENT_CONNECTED) != 0) {
      self->SendUpgrade();
      return;
    }
    std::string why;
    if ((events & BEV_EVENT_EOF) != 0) {
      why = "the server closed the connection";
    } else if (self->phase_ == Phase::kConnecting && bufferevent_socket_get_dns_error(bev) != 0) {
      why = absl::StrCat("cannot resolve the host: ",
                         evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
    } else {
      why = TransportError(bev);
    }
    self->End(absl::UnavailableError(why));
  }

  void SendUpgrade() {
    phase_ = Phase::kHandshaking;
    const std::string request = BuildUpgradeRequest(url_, key_, options_.headers);
    bufferevent_write(bev_, request.data(), request.size());
  }

  // Reads the answer to the upgrade; once it is whole and right, the
  // bufferevent (with any frames after the head) goes to a
  // WebSocketConnection.
  void ReadHandshake() {
    if (phase_ != Phase::kHandshaking) return;
    evbuffer* input = bufferevent_get_input(bev_);
    evbuffer_ptr end = evbuffer_search(input, "\r\n\r\n", 4, nullptr);
    if (end.pos < 0) {
      if (evbuffer_get_length(input) > kMaxHandshakeHeadBytes) {
        End(absl::UnavailableError("the WebSocket handshake's answer is too large"));
      }
      return;
    }
    std::string head(static_cast<size_t>(end.pos), '\0');
    evbuffer_remove(input, head.data(), head.size());
    evbuffer_drain(input, 4);
    if (absl::Status checked = CheckUpgradeAnswer(head, key_); !checked.ok()) {
      End(checked);
      return;
    }
    WebSocketConnectionOptions connection_options;
    connection_options.ping_interval = options_.ping_interval;
    connection_options.pong_timeout = options_.pong_timeout;
    connection_options.max_message_bytes = options_.max_message_bytes;
    connection_options.max_queued_bytes = options_.max_queued_bytes;
    absl::StatusOr<std::unique_ptr<WebSocketConnection>> connection =
        WebSocketConnection::Open(dispatcher_, bev_, WebSocketConnection::Role::kClient,
                                  masked_url_, connection_options, observer_);
    bev_ = nullptr;  // The connection's now, opened or freed.
    if (!connection.ok()) {
      End(connection.status());
      return;
    }
    connection_ = *std::move(connection);
    phase_ = Phase::kOpen;
    timer_->Disable();
    observer_.OnOpen();
  }

  // The connect timed out.
  void OnTimer() {
    if (phase_ == Phase::kConnecting || phase_ == Phase::kHandshaking) {
      End(absl::DeadlineExceededError(absl::StrCat(
          "no WebSocket connection within ", absl::FormatDuration(options_.connect_timeout))));
    }
  }

  // The connect or the handshake failed: tells the observer, once. The
  // observer may destroy this client; nothing touches it after.
  void End(absl::Status why) {
    if (phase_ == Phase::kEnded || phase_ == Phase::kOpen) return;
    phase_ = Phase::kEnded;
    timer_->Disable();
    if (bev_ != nullptr) bufferevent_disable(bev_, EV_READ | EV_WRITE);
    observer_.OnClosed(absl::Status(why.code(), absl::StrCat(masked_url_, ": ", why.message())));
  }

  event::DispatcherImpl& dispatcher_;
  const WebSocketUrl url_;
  const std::string masked_url_;
  const WebSocketClientOptions options_;
  WebSocketObserver& observer_;
  const std::string key_;
  std::unique_ptr<event::Timer> timer_;  // The connect timeout.
  std::unique_ptr<SSL_CTX, SslCtxDeleter> ssl_ctx_;
  evdns_base* dns_ = nullptr;
  bufferevent* bev_ = nullptr;                       // Until the connection takes it.
  std::unique_ptr<WebSocketConnection> connection_;  // Once open.
  Phase phase_ = Phase::kConnecting;
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
