// SubscriberIndex: which local subscribers want a topic.
//
// Used by every broker backend on its dispatcher thread (not thread-safe).
// Subscribers register under the pattern they subscribed with: an exact topic
// name, or a prefix ending in '*'. The index is reference counted per
// pattern, so a backend that mirrors subscriptions upstream (Redis SUBSCRIBE /
// PSUBSCRIBE) learns when a pattern gains its first subscriber and when it
// loses its last one.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace switchboard::broker {

class SubscriberIndex {
 public:
  // Registers `subscriber` under `pattern`. Returns true when the pattern had
  // no subscriber before.
  bool Add(absl::string_view pattern, uint64_t subscriber);

  // Unregisters `subscriber` from `pattern`. Returns true when the pattern
  // has no subscriber left.
  bool Remove(absl::string_view pattern, uint64_t subscriber);

  // Every subscriber whose pattern matches the concrete `topic`, each once:
  // exact subscribers first, then prefix subscribers, by ascending id.
  std::vector<uint64_t> Match(absl::string_view topic) const;

 private:
  using Subscribers = std::set<uint64_t>;
  // Keyed by the pattern without its '*' for prefixes.
  std::map<std::string, Subscribers, std::less<>>& MapFor(absl::string_view& pattern);

  std::map<std::string, Subscribers, std::less<>> exact_;
  std::map<std::string, Subscribers, std::less<>> prefixes_;
};

}  // namespace switchboard::broker
