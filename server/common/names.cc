#include "server/common/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace switchboard::common {
namespace {

bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
         c == '-';
}

absl::Status ValidateName(absl::string_view name, absl::string_view field, size_t max_length,
                          bool restrict_first_char) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  if (name.size() > max_length) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", name.size(), " characters exceeds the limit of ", max_length));
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": character ", i, " is not allowed; use [A-Za-z0-9._:-]"));
    }
  }
  if (restrict_first_char && (name[0] == '.' || name[0] == ':' || name[0] == '-')) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not start with '.', ':' or '-'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTopicName(absl::string_view name, absl::string_view field) {
  return ValidateName(name, field, kMaxTopicNameLength, /*restrict_first_char=*/true);
}

absl::Status ValidateTopicPattern(absl::string_view pattern, absl::string_view field) {
  if (!IsTopicPrefixPattern(pattern)) return ValidateTopicName(pattern, field);
  pattern.remove_suffix(1);
  if (pattern.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": a '*' pattern needs a prefix"));
  }
  return ValidateTopicName(pattern, field);
}

absl::Status ValidateGroupName(absl::string_view name, absl::string_view field) {
  return ValidateName(name, field, kMaxGroupNameLength, /*restrict_first_char=*/false);
}

absl::Status ValidateUpstreamName(absl::string_view name, absl::string_view field) {
  return ValidateName(name, field, kMaxUpstreamNameLength, /*restrict_first_char=*/false);
}

absl::Status ValidateMethodName(absl::string_view name, absl::string_view field) {
  return ValidateName(name, field, kMaxMethodNameLength, /*restrict_first_char=*/false);
}

bool IsTopicPrefixPattern(absl::string_view pattern) { return absl::EndsWith(pattern, "*"); }

bool TopicPatternMatches(absl::string_view pattern, absl::string_view topic) {
  if (!IsTopicPrefixPattern(pattern)) return topic == pattern;
  pattern.remove_suffix(1);
  return absl::StartsWith(topic, pattern);
}

}  // namespace switchboard::common
