// WebSocketConnection: one open WebSocket connection on a dispatcher's
// libevent loop, either side of it: wslay's framing (RFC 6455 §5) over a
// bufferevent whose opening handshake is done, and a ping/pong keepalive.
//
// WebSocketClient (websocket_client.h) makes one once a provider accepted its
// upgrade; a server makes one from a connection it upgraded. One concept,
// one implementation: the framing, the bounds and the keepalive are the same
// for both sides; only the masking differs (a client masks what it sends).
//
// Create, use and destroy it on the dispatcher's thread only. The handler's
// callbacks run on that thread and never after the connection is destroyed
// or closed with Close(); OnClosed runs at most once, last, and the handler
// may destroy the connection inside it (not inside OnText).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/dispatcher_impl.h"

struct bufferevent;

namespace switchboard::ws {

// Close codes (RFC 6455 §7.4.1).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kClosePolicyViolation = 1008;

struct WebSocketConnectionOptions {
  // A ping goes out after this long without a frame from the peer...
  absl::Duration ping_interval = absl::Seconds(15);
  // ...and the connection is given up when nothing comes back within this.
  absl::Duration pong_timeout = absl::Seconds(10);
  // The largest message accepted from the peer; a larger one closes the
  // connection (status 1009).
  size_t max_message_bytes = 16 << 20;
  // The most bytes waiting to be written; SendText beyond is refused.
  size_t max_queued_bytes = 4 << 20;
};

class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  // A complete text (or binary) message from the peer.
  virtual void OnText(absl::string_view message) = 0;
  // The connection ended, for the reason `why` (UNAVAILABLE for a transport
  // failure or a close by the peer, DEADLINE_EXCEEDED for a pong timeout;
  // the message starts with the connection's name). Never called after
  // Close() or destruction.
  virtual void OnClosed(absl::Status why) = 0;
  // Everything queued has been written to the socket: a handler that holds
  // back while much waits (queued_bytes()) may send again.
  virtual void OnDrained() {}
};

// Why `bev`'s connection failed, after a BEV_EVENT_ERROR: the TLS error,
// or the socket's.
std::string TransportError(bufferevent* bev);

class WebSocketConnection {
 public:
  enum class Role { kClient, kServer };

  // Takes `bev` (connected, handshake done; frames that came with the
  // handshake's end may wait in its input) and frees it when done. `name`
  // starts every status (a masked URL, a peer address). Bytes already in
  // the input are read on the next loop iteration.
  static absl::StatusOr<std::unique_ptr<WebSocketConnection>> Open(
      event::DispatcherImpl& dispatcher, bufferevent* bev, Role role, std::string name,
      WebSocketConnectionOptions options, WebSocketHandler& handler);

  virtual ~WebSocketConnection() = default;

  // Queues one text message. FAILED_PRECONDITION after the end;
  // RESOURCE_EXHAUSTED when more than max_queued_bytes would wait.
  virtual absl::Status SendText(absl::string_view message) = 0;

  // Sends a close frame with `code` and lets the connection go: no callback
  // follows. Destroying it without this just drops the TCP connection.
  virtual void Close(uint16_t code = kCloseNormal) = 0;

  // Bytes waiting to be written to the peer.
  virtual size_t queued_bytes() const = 0;
};

}  // namespace switchboard::ws
