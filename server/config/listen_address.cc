#include "server/config/listen_address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace switchboard::config {
namespace {

constexpr absl::string_view kExpectedForm = "expected host:port or [ipv6]:port";

bool IsHostnameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

// How an error names the address: quoted, unless it is too long to be one
// (then only its length: it may be a misplaced secret, or garbage).
constexpr size_t kMaxShownAddress = 64;
std::string Shown(absl::string_view host_port) {
  if (host_port.size() > kMaxShownAddress) {
    return absl::StrCat("a value of ", host_port.size(), " characters (not shown)");
  }
  return absl::StrCat("\"", absl::CHexEscape(host_port), "\"");
}

bool IsIpv6Literal(const std::string& host) {
  in6_addr address;
  return inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(absl::string_view host_port) {
  absl::string_view host;
  absl::string_view port;
  bool bracketed = false;
  if (absl::StartsWith(host_port, "[")) {
    const size_t close = host_port.find("]:");
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(Shown(host_port), ": ", kExpectedForm));
    }
    host = host_port.substr(1, close - 1);
    port = host_port.substr(close + 2);
    bracketed = true;
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(Shown(host_port), ": ", kExpectedForm));
    }
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
  }

  HostPort parsed;
  parsed.host = std::string(host);
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Shown(host_port),
                     ": the host is empty; write 0.0.0.0 or [::] to listen on every interface"));
  }
  const bool valid_host = bracketed ? IsIpv6Literal(parsed.host)
                                    : std::all_of(host.begin(), host.end(), IsHostnameChar);
  if (!valid_host) {
    return absl::InvalidArgumentError(
        absl::StrCat(Shown(host_port), ": invalid host; ", kExpectedForm));
  }
  uint32_t port_number = 0;
  if (port.empty() || !std::all_of(port.begin(), port.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(port, &port_number) || port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(Shown(host_port), ": the port must be a number from 0 to 65535"));
  }
  parsed.port = static_cast<uint16_t>(port_number);
  return parsed;
}

bool IsLoopbackAddress(absl::string_view host_port) {
  absl::StatusOr<HostPort> parsed = ParseHostPort(host_port);
  if (!parsed.ok()) return false;
  const std::string& host = parsed->host;
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    return std::memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0;
  }
  return false;
}

}  // namespace switchboard::config
