// The broker URL of `broker.url` and `--broker`: which backend to run and,
// for Redis and RabbitMQ, where it is.
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
  enum class Scheme { kMemory, kRedis, kAmqp };

  Scheme scheme = Scheme::kMemory;
  // Redis and RabbitMQ (amqp:// and amqps://).
  // Redis: empty means the default user. RabbitMQ: "guest" without
  // credentials in the URL; percent-decoded.
  std::string user;
  // Redis: empty means no AUTH. RabbitMQ: "guest" without credentials in the
  // URL; percent-decoded. Secret: never log it.
  std::string password;
  std::string host;  // Hostname or IP address; IPv6 without brackets.
  uint16_t port = 0;
  // Redis only: the SELECT index.
  uint32_t db = 0;
  // RabbitMQ only: the virtual host, percent-decoded ("/" when the URL has
  // no path or an empty one), and whether the URL was amqps:// (TLS).
  std::string vhost;
  bool tls = false;

  // The URL with the password replaced by "***".
  std::string Redacted() const;
};

// Parses `memory://`, `redis://[[user]:password@]host:port[/db]` or
// `amqp[s]://[user[:password]@]host[:port][/vhost]`.
//
// amqp:// follows RabbitMQ's AMQP URI spec: user, password and vhost are
// percent-decoded ("%2F" is "/", so `amqp://host/%2F` is the vhost "/"); an
// absent or empty path is the vhost "/"; the port defaults to 5672 (amqp) or
// 5671 (amqps); without credentials the user and password are guest/guest.
// Credentials end at the last '@' of the authority and the user at its first
// ':', so a password may hold a raw '@' or ':' (not a raw '/'). Query
// parameters are refused: the tuning lives in `broker.amqp`.
//
// Errors are INVALID_ARGUMENT without a field path (the caller adds it), and
// never contain the password.
absl::StatusOr<BrokerUrl> ParseBrokerUrl(absl::string_view url);

}  // namespace switchboard::config
