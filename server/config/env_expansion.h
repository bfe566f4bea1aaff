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

}  // namespace switchboard::config
