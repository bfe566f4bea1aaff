// Switchboard's configuration: loading, validation and defaults.
//
// The schema is proto/switchboard/config/v1/config.proto, which documents
// every field, its default and its bounds; `Config` is that message. main
// calls LoadConfig with the optional `--config` path and the flags that
// override the file; the pieces (ParseConfig, ValidateConfig, ...) are public
// for tests and tools. Every error is INVALID_ARGUMENT whose message starts with the field's
// path, e.g. `limits.max_message_bytes: must be between 1 and 67108864, got 0`
// (main exits 2 on it). Once loaded, a Config is not modified, so any thread
// may read it.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/client_registry.h"
#include "server/broker/topic_policy.h"
#include "server/common/log.h"
#include "server/config/env_expansion.h"
#include "switchboard/config/v1/config.pb.h"

namespace switchboard::config {

using Config = v1::Config;

// The configuration without a file: every field at its schema default
// (loopback listeners, memory broker, no topics, no clients).
Config DefaultConfig();

// Parses and validates a YAML document. `${VAR}` references are expanded
// through `env`. An empty document is DefaultConfig().
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, const EnvLookup& env);

// Reads `path`, then ParseConfig. A file that cannot be read is NOT_FOUND or
// PERMISSION_DENIED (from errno), with a message naming the path.
absl::StatusOr<Config> LoadConfigFile(const std::string& path, const EnvLookup& env);

// Checks bounds and the rules the schema cannot state: listen addresses,
// the broker URL, topic patterns, fields that do not apply to a topic's kind,
// duplicate topic patterns, client ids and tokens. Error messages never
// contain a token.
absl::Status ValidateConfig(const Config& config);

// Command-line flags that override fields of the file when set.
struct FlagOverrides {
  std::optional<std::string> listen;          // server.listen
  std::optional<std::string> metrics_listen;  // server.metrics_listen
  std::optional<std::string> broker_url;      // broker.url
};

// What main runs: the file at `path` (DefaultConfig() when `path` is empty)
// with `overrides` applied, then validated. An invalid override is reported
// under its field's path (`server.listen: ...`).
absl::StatusOr<Config> LoadConfig(const std::string& path, const FlagOverrides& overrides,
                                  const EnvLookup& env);

// `logging.level` as the logger's level.
common::LogLevel ConfiguredLogLevel(const Config& config);

// The startup warning for a server that accepts every caller as `anonymous`
// (no clients configured) on an address other than loopback; nullopt when
// there is nothing to warn about.
std::optional<std::string> ExposureWarning(const Config& config);

// Logs ExposureWarning(config), if any, at warning level.
void WarnAboutExposure(const Config& config);

// The broker's view of `topics:`. `config` must be valid.
broker::TopicPolicies BuildTopicPolicies(const Config& config);

// The overflow policy a topic's or an upstream's subscriptions name.
flow::OverflowPolicy ToOverflowPolicy(v1::Topic::Overflow overflow);

// The clients of `clients:`, for the ClientRegistry. `config` must be valid.
std::vector<auth::ClientCredential> ClientCredentials(const Config& config);

// Whether any upstream rate limit or client quota has `scope: global`, so
// the replicas must coordinate through Redis.
bool HasGlobalLimits(const Config& config);

}  // namespace switchboard::config
