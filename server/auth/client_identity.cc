#include "server/auth/client_identity.h"

#include "server/common/names.h"

namespace switchboard::auth {

bool ClientIdentity::MayUseTopic(absl::string_view topic) const {
  if (allowed_topics.empty()) return true;
  for (const std::string& pattern : allowed_topics) {
    if (common::TopicPatternMatches(pattern, topic)) return true;
  }
  return false;
}

}  // namespace switchboard::auth
