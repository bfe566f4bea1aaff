// `${VAR}` expansion of configuration values from the environment.
//
// The configuration loader (config.h) runs every YAML scalar through
// ExpandEnvReferences before converting it, so secrets such as bearer tokens
// and Redis passwords come from the environment (Kubernetes Secrets) instead
// of the file. The environment is reached through an injectable EnvLookup so
// tests never touch the process environment.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace switchboard::config {

// Returns the value of an environment variable, or nullopt when it is unset.
// A variable set to the empty string is set. Must be safe to call from the
// thread that loads the configuration; no other thread calls it.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;

// Reads the process environment (getenv).
EnvLookup ProcessEnv();

// Replaces every `${NAME}` in `text` by the value of NAME, where NAME is
// [A-Za-z_][A-Za-z0-9_]*. `$${` stands for a literal `${`; any other `$` is
// kept as is. Values are inserted verbatim (never expanded again).
// Errors are INVALID_ARGUMENT without a field path (the caller adds it):
// an unset variable, an unterminated `${`, or an invalid name.
absl::StatusOr<std::string> ExpandEnvReferences(absl::string_view text, const EnvLookup& env);

// Remembers the values a configuration took from the environment, so that an
// error names their references instead: an expanded value may be a secret
// wherever it lands (a listen address, a topic name), and validation sees
// only values. Values shorter than kMinRedactedBytes are left alone (they
// would garble the message and are no secret).
class ExpansionRedactor {
 public:
  static constexpr size_t kMinRedactedBytes = 4;

  explicit ExpansionRedactor(EnvLookup env) : env_(std::move(env)) {}

  // Looks up through the wrapped EnvLookup, remembering what it returns.
  // Valid while this redactor lives.
  EnvLookup Lookup();

  // `status` with every remembered value (and its C-escaped form) replaced
  // by "${NAME}".
  absl::Status Redact(const absl::Status& status) const;

 private:
  EnvLookup env_;
  std::vector<std::pair<std::string, std::string>> replacements_;  // (value, "${NAME}").
};

}  // namespace switchboard::config
