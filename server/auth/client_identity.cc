#include "server/auth/client_identity.h"

#include "absl/strings/match.h"
#include "server/common/names.h"

namespace switchboard::auth {

bool ClientIdentity::MayUseTopic(absl::string_view topic) const {
  if (allowed_topics.empty()) return true;
  for (absl::string_view pattern : allowed_topics) {
    if (common::IsTopicPrefixPattern(pattern)) {
      pattern.remove_suffix(1);
      if (absl::StartsWith(topic, pattern)) return true;
    } else if (topic == pattern) {
      return true;
    }
  }
  return false;
}

}  // namespace switchboard::auth
