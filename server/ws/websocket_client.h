// WebSocketClient: one client WebSocket connection on a dispatcher's
// libevent loop: TCP (with libevent's asynchronous DNS), TLS with
// verification for wss://, the RFC 6455 handshake, wslay's framing, and a
// ping/pong keepalive. Once the provider accepts the upgrade, the framing
// and the keepalive are a WebSocketConnection's (websocket_connection.h).
//
// Why wslay over a bufferevent rather than libwebsockets: every other socket
// of Switchboard (Redis, curl, its HTTP server) lives on a dispatcher's
// libevent loop, one thread owning it; libwebsockets wants its own service
// loop and thread model. wslay is only framing, with no I/O of its own, so
// the connection is one more bufferevent on the dispatcher, with the same
// ownership rules. libcurl 7.88 in Debian has no WebSocket support.
//
// Used by the upstream subscription hub (one client per provider WebSocket
// connection). Create, use and destroy it on the dispatcher's thread only.
// The observer's callbacks run on that thread and never after the client is
// destroyed; OnClosed runs at most once, last, and the observer may destroy
// the client inside it (not inside OnOpen or OnText).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/dispatcher_impl.h"
#include "server/ws/websocket_connection.h"

namespace switchboard::ws {

struct WebSocketClientOptions {
  // From the connect to the end of the handshake (DNS, TCP, TLS, upgrade).
  absl::Duration connect_timeout = absl::Seconds(10);
  // A ping goes out after this long without a frame from the server...
  absl::Duration ping_interval = absl::Seconds(15);
  // ...and the connection is given up when nothing comes back within this.
  absl::Duration pong_timeout = absl::Seconds(10);
  // The largest message accepted from the server; a larger one closes the
  // connection (status 1009).
  size_t max_message_bytes = 16 << 20;
  // The most bytes waiting to be written; SendText beyond is refused.
  size_t max_queued_bytes = 4 << 20;
  // wss://: verify the server's certificate and name (always, unless off).
  bool tls_verify = true;
  std::string ca_file;  // Empty: the system's trust store.
  // Extra request headers of the upgrade (an Authorization header).
  std::vector<std::pair<std::string, std::string>> headers;
};

// OnText and OnClosed as for a WebSocketConnection (websocket_connection.h);
// OnClosed also reports a failed connect (DEADLINE_EXCEEDED for the connect
// timeout) or handshake, and then comes without OnOpen.
class WebSocketObserver : public WebSocketHandler {
 public:
  // The handshake succeeded: SendText may be called.
  virtual void OnOpen() = 0;
};

class WebSocketClient {
 public:
  // Starts connecting to `url` (ws:// or wss://). Errors in the URL come
  // back here; everything later through the observer. `url` may carry an
  // API key: it is never logged or put in a status unmasked.
  static absl::StatusOr<std::unique_ptr<WebSocketClient>> Connect(event::DispatcherImpl& dispatcher,
                                                                  absl::string_view url,
                                                                  WebSocketClientOptions options,
                                                                  WebSocketObserver& observer);

  virtual ~WebSocketClient() = default;

  // Queues one text message. FAILED_PRECONDITION before OnOpen or after the
  // end; RESOURCE_EXHAUSTED when more than max_queued_bytes would wait.
  virtual absl::Status SendText(absl::string_view message) = 0;

  // Sends a close frame (1000) and lets the connection go: no callback
  // follows. Destroying the client without it just drops the TCP connection.
  virtual void Close() = 0;

  // Bytes waiting to be written to the server.
  virtual size_t queued_bytes() const = 0;
};

}  // namespace switchboard::ws
