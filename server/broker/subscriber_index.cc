#include "server/broker/subscriber_index.h"

#include "absl/strings/match.h"
#include "server/common/names.h"

namespace switchboard::broker {

std::map<std::string, SubscriberIndex::Subscribers, std::less<>>& SubscriberIndex::MapFor(
    absl::string_view& pattern) {
  if (!common::IsTopicPrefixPattern(pattern)) return exact_;
  pattern.remove_suffix(1);
  return prefixes_;
}

bool SubscriberIndex::Add(absl::string_view pattern, uint64_t subscriber) {
  auto& map = MapFor(pattern);
  Subscribers& subscribers = map[std::string(pattern)];
  subscribers.insert(subscriber);
  return subscribers.size() == 1;
}

bool SubscriberIndex::Remove(absl::string_view pattern, uint64_t subscriber) {
  auto& map = MapFor(pattern);
  auto it = map.find(pattern);
  if (it == map.end()) return true;
  it->second.erase(subscriber);
  if (!it->second.empty()) return false;
  map.erase(it);
  return true;
}

std::vector<uint64_t> SubscriberIndex::Match(absl::string_view topic) const {
  std::vector<uint64_t> matched;
  if (auto it = exact_.find(topic); it != exact_.end()) {
    matched.assign(it->second.begin(), it->second.end());
  }
  for (const auto& [prefix, subscribers] : prefixes_) {
    if (prefix > topic) break;  // Sorted: no later prefix can match.
    if (absl::StartsWith(topic, prefix)) {
      matched.insert(matched.end(), subscribers.begin(), subscribers.end());
    }
  }
  return matched;
}

}  // namespace switchboard::broker
