// The WebSocket client's handshake parsers on arbitrary bytes: a provider URL
// from the config (ws:// or wss://) and the head of a server's upgrade
// answer. Each returns a status, never crashes; a URL that parses has a
// host and a request target, and a URL's error has a bounded length, whatever
// the URL's (it names what is wrong and never echoes the URL, which may carry
// an API key).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/ws/websocket_handshake.h"

namespace ws = switchboard::ws;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<ws::WebSocketUrl> url = ws::ParseWebSocketUrl(text);
  if (url.ok()) {
    if (url->host.empty() || url->target.empty() || url->target[0] != '/') std::abort();
    ws::BuildUpgradeRequest(*url, "dGhlIHNhbXBsZSBub25jZQ==", {});
  } else if (url.status().message().size() > 200) {
    std::abort();  // An error that grows with the URL: it echoes it.
  }
  ws::CheckUpgradeAnswer(text, "dGhlIHNhbXBsZSBub25jZQ==").IgnoreError();
  return 0;
}
