#include "server/config/env_expansion.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace switchboard::config {
namespace {

bool IsValidVariableName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<std::string> ExpandEnvReferences(absl::string_view text, const EnvLookup& env) {
  std::string expanded;
  expanded.reserve(text.size());
  while (!text.empty()) {
    const size_t dollar = text.find('$');
    if (dollar == absl::string_view::npos) break;
    absl::StrAppend(&expanded, text.substr(0, dollar));
    text.remove_prefix(dollar);
    if (absl::ConsumePrefix(&text, "$${")) {
      expanded.append("${");
      continue;
    }
    if (!absl::ConsumePrefix(&text, "${")) {
      expanded.push_back('$');
      text.remove_prefix(1);
      continue;
    }
    const size_t close = text.find('}');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("unterminated \"${\": expected \"${NAME}\"");
    }
    const std::string name(text.substr(0, close));
    text.remove_prefix(close + 1);
    if (!IsValidVariableName(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"${", absl::CHexEscape(name), "}\" is not a valid environment variable reference"));
    }
    std::optional<std::string> value = env(name);
    if (!value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("environment variable ", name, " is not set"));
    }
    absl::StrAppend(&expanded, *value);
  }
  absl::StrAppend(&expanded, text);
  return expanded;
}

EnvLookup ExpansionRedactor::Lookup() {
  return [this](const std::string& name) -> std::optional<std::string> {
    std::optional<std::string> value = env_(name);
    if (value.has_value() && value->size() >= kMinRedactedBytes) {
      const std::string reference = absl::StrCat("${", name, "}");
      replacements_.emplace_back(*value, reference);
      replacements_.emplace_back(absl::CHexEscape(*value), reference);
    }
    return value;
  };
}

absl::Status ExpansionRedactor::Redact(const absl::Status& status) const {
  if (status.ok() || replacements_.empty()) return status;
  return absl::Status(status.code(), absl::StrReplaceAll(status.message(), replacements_));
}

}  // namespace switchboard::config
