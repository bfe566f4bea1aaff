// The opening handshake of a WebSocket client (RFC 6455 §4.1), as pure
// functions: parsing a ws:// or wss:// URL, writing the upgrade request and
// checking the server's answer.
//
// Used by WebSocketClient (websocket_client.h) before it hands the
// connection to wslay's framing. Kept apart so every rule of the handshake
// is unit-tested without a socket. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace switchboard::ws {

// The most bytes of a handshake answer's head (status line and headers)
// read before the connection is given up.
inline constexpr size_t kMaxHandshakeHeadBytes = 16 * 1024;

struct WebSocketUrl {
  bool tls = false;    // wss://
  std::string host;    // Without brackets for an IPv6 literal.
  uint16_t port = 0;   // 80 or 443 when the URL names none.
  std::string target;  // Path and query, "/" at least: the request target.
  // The Host header's value: the host, and the port when not the default.
  std::string host_header;
};

// Parses "ws://host[:port][/path][?query]" or "wss://...". INVALID_ARGUMENT
// naming what is wrong for another scheme, user info, a fragment, an empty
// host or a bad port. Errors never echo the URL (it may carry an API key).
absl::StatusOr<WebSocketUrl> ParseWebSocketUrl(absl::string_view url);

// The Sec-WebSocket-Accept a server must answer to `key` (§4.2.2):
// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string AcceptFor(absl::string_view key);

// A fresh Sec-WebSocket-Key: 16 random bytes in base64.
std::string NewWebSocketKey();

// The upgrade request for `url` with `key`, and `headers` (name, value)
// appended as given (an Authorization header, for example).
std::string BuildUpgradeRequest(const WebSocketUrl& url, absl::string_view key,
                                const std::vector<std::pair<std::string, std::string>>& headers);

// Checks a complete answer head (up to and without the blank line): status
// 101, `Upgrade: websocket`, a `Connection` header with the `upgrade` token
// and the Sec-WebSocket-Accept of `key`. UNAVAILABLE naming the first rule
// broken (with the status line for a status other than 101, so that a 401
// or a 429 from the provider is visible).
absl::Status CheckUpgradeAnswer(absl::string_view head, absl::string_view key);

}  // namespace switchboard::ws
