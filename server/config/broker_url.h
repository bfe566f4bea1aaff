// The broker URL of `broker.url` and `--broker`: which backend to run and,
// for Redis, where it is.
//
// Used by configuration validation, and by the wiring in main that builds the
// backend. `Redacted()` is the form that may appear in logs and metrics: it
// never contains the password.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace switchboard::config {

struct BrokerUrl {
  enum class Scheme { kMemory, kRedis };

  Scheme scheme = Scheme::kMemory;
  // Redis only.
  std::string user;      // Empty: the default user.
  std::string password;  // Empty: no AUTH. Secret: never log it.
  std::string host;      // Hostname or IP address; IPv6 without brackets.
  uint16_t port = 0;
  uint32_t db = 0;  // SELECT index.

  // The URL with the password replaced by "***".
  std::string Redacted() const;
};

// Parses `memory://` or `redis://[[user]:password@]host:port[/db]`.
// Errors are INVALID_ARGUMENT without a field path (the caller adds it), and
// never contain the password.
absl::StatusOr<BrokerUrl> ParseBrokerUrl(absl::string_view url);

}  // namespace switchboard::config
