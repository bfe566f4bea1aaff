#include "server/ws/websocket_handshake.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace switchboard::ws {
namespace {

constexpr absl::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

}  // namespace

absl::StatusOr<WebSocketUrl> ParseWebSocketUrl(absl::string_view url) {
  WebSocketUrl parsed;
  if (absl::ConsumePrefix(&url, "wss://")) {
    parsed.tls = true;
  } else if (!absl::ConsumePrefix(&url, "ws://")) {
    return absl::InvalidArgumentError("a WebSocket URL starts with ws:// or wss://");
  }
  if (absl::StrContains(url, '#')) {
    return absl::InvalidArgumentError("a WebSocket URL has no fragment");
  }
  const size_t authority_end = url.find_first_of("/?");
  absl::string_view authority = url.substr(0, authority_end);
  parsed.target =
      authority_end == absl::string_view::npos ? "/" : std::string(url.substr(authority_end));
  if (parsed.target[0] == '?') parsed.target.insert(0, "/");
  if (absl::StrContains(authority, '@')) {
    return absl::InvalidArgumentError(
        "a WebSocket URL carries no user info: put a key in the path or the query");
  }
  absl::string_view port_text;
  if (absl::ConsumePrefix(&authority, "[")) {  // [v6]:port
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("an IPv6 host in a WebSocket URL lacks its ']'");
    }
    parsed.host = std::string(authority.substr(0, close));
    absl::string_view rest = authority.substr(close + 1);
    if (!rest.empty() && !absl::ConsumePrefix(&rest, ":")) {
      return absl::InvalidArgumentError("unexpected text after the IPv6 host of a WebSocket URL");
    }
    port_text = rest;
  } else {
    const size_t colon = authority.rfind(':');
    parsed.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (parsed.host.empty()) return absl::InvalidArgumentError("a WebSocket URL needs a host");
  const uint16_t default_port = parsed.tls ? 443 : 80;
  parsed.port = default_port;
  if (!port_text.empty()) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(port_text, &port) || port == 0 || port > 65535) {
      return absl::InvalidArgumentError("the port of a WebSocket URL must be 1-65535");
    }
    parsed.port = static_cast<uint16_t>(port);
  }
  const std::string host =
      absl::StrContains(parsed.host, ':') ? absl::StrCat("[", parsed.host, "]") : parsed.host;
  parsed.host_header = parsed.port == default_port ? host : absl::StrCat(host, ":", parsed.port);
  return parsed;
}

std::string AcceptFor(absl::string_view key) {
  const std::string text = absl::StrCat(key, kAcceptGuid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return absl::Base64Escape(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string NewWebSocketKey() {
  unsigned char nonce[16];
  RAND_bytes(nonce, sizeof(nonce));
  return absl::Base64Escape(absl::string_view(reinterpret_cast<const char*>(nonce), sizeof(nonce)));
}

std::string BuildUpgradeRequest(const WebSocketUrl& url, absl::string_view key,
                                const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string request =
      absl::StrCat("GET ", url.target, " HTTP/1.1\r\nHost: ", url.host_header,
                   "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", "Sec-WebSocket-Key: ", key,
                   "\r\nSec-WebSocket-Version: 13\r\n");
  for (const auto& [name, value] : headers) absl::StrAppend(&request, name, ": ", value, "\r\n");
  request += "\r\n";
  return request;
}

absl::Status CheckUpgradeAnswer(absl::string_view head, absl::string_view key) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  const absl::string_view status_line = lines[0];
  std::vector<absl::string_view> status_parts =
      absl::StrSplit(status_line, absl::MaxSplits(' ', 2));
  if (status_parts.size() < 2 || !absl::StartsWith(status_parts[0], "HTTP/1.")) {
    return absl::UnavailableError("the WebSocket handshake's answer is not HTTP/1.1");
  }
  if (status_parts[1] != "101") {
    // The status line is the server's, not ours: it carries no key.
    return absl::UnavailableError(absl::StrCat("the server refused the WebSocket upgrade: ",
                                               absl::CEscape(status_line.substr(0, 200))));
  }
  bool upgrade = false;
  bool connection = false;
  bool accept = false;
  const std::string expected_accept = AcceptFor(key);
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view name = absl::StripAsciiWhitespace(lines[i].substr(0, colon));
    const absl::string_view value = absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (absl::EqualsIgnoreCase(name, "Upgrade")) {
      upgrade = absl::EqualsIgnoreCase(value, "websocket");
    } else if (absl::EqualsIgnoreCase(name, "Connection")) {
      for (absl::string_view token : absl::StrSplit(value, ',')) {
        if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(token), "upgrade")) connection = true;
      }
    } else if (absl::EqualsIgnoreCase(name, "Sec-WebSocket-Accept")) {
      accept = value == expected_accept;
    }
  }
  if (!upgrade) return absl::UnavailableError("the WebSocket handshake lacks 'Upgrade: websocket'");
  if (!connection) {
    return absl::UnavailableError("the WebSocket handshake lacks 'Connection: upgrade'");
  }
  if (!accept) {
    return absl::UnavailableError(
        "the WebSocket handshake's Sec-WebSocket-Accept does not match the key sent");
  }
  return absl::OkStatus();
}

}  // namespace switchboard::ws
