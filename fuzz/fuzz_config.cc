// The config loader on arbitrary bytes: YAML parsing, the proto mapping,
// ${VAR} expansion and validation return an error or a config, never crash.
// An error never quotes a value of more than a few characters (the loader's
// rule against echoing secrets), checked for one planted secret.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "server/config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  const auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "SECRET") return "s3cr3t-T0KEN-value-for-the-fuzzer";
    return std::nullopt;
  };
  absl::StatusOr<switchboard::config::Config> config = switchboard::config::ParseConfig(yaml, env);
  // (The input itself may hold the text: a short value in a field that holds
  // no secret is quoted, and that is not the expansion.)
  if (!config.ok() && absl::StrContains(config.status().message(), "s3cr3t-T0KEN") &&
      !absl::StrContains(yaml, "s3cr3t-T0KEN")) {
    std::abort();  // An error echoed an expanded secret.
  }
  return 0;
}
