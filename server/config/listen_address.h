// Parsing of `host:port` listen addresses, as written in `server.listen`,
// `server.metrics_listen` and the `--listen` flags.
//
// Used by configuration validation and by main, which warns loudly when the
// server accepts anonymous callers on an address other than loopback.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace switchboard::config {

struct HostPort {
  std::string host;   // A hostname, an IPv4 address, or an IPv6 address without brackets.
  uint16_t port = 0;  // 0 lets the operating system pick a free port.
};

// Parses `host:port` or `[ipv6]:port`. The host must not be empty: write
// `0.0.0.0:7070` or `[::]:7070` to listen on every interface. Errors are
// INVALID_ARGUMENT without a field path (the caller adds it).
absl::StatusOr<HostPort> ParseHostPort(absl::string_view host_port);

// True when `host_port` names only the local machine: `localhost`,
// 127.0.0.0/8 or ::1. An unparseable address, a wildcard (0.0.0.0, ::) or any
// other hostname is not loopback.
bool IsLoopbackAddress(absl::string_view host_port);

}  // namespace switchboard::config
