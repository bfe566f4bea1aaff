#include "server/upstream/response_cache.h"

#include "absl/strings/str_cat.h"

namespace switchboard::upstream {

std::string ResponseCache::Key(absl::string_view method, absl::string_view params_json) {
  // Method names never contain '\0'.
  return absl::StrCat(method, absl::string_view("\0", 1), params_json);
}

size_t ResponseCache::Cost(const std::string& key, const Entry& entry) {
  return key.size() + entry.answer.size();
}

std::optional<std::string> ResponseCache::Find(absl::string_view method,
                                               absl::string_view params_json, absl::Time now) {
  auto it = entries_.find(Key(method, params_json));
  if (it == entries_.end()) return std::nullopt;
  if (it->second.expiry <= now) {
    Erase(it);
    return std::nullopt;
  }
  return it->second.answer;
}

void ResponseCache::Insert(absl::string_view method, absl::string_view params_json,
                           std::string answer, absl::Time now, absl::Duration ttl) {
  std::string key = Key(method, params_json);
  if (key.size() + answer.size() > max_bytes_ || max_entries_ == 0) return;
  auto existing = entries_.find(key);
  if (existing != entries_.end()) Erase(existing);
  EvictExpired(now);
  Entry entry{std::move(answer), now + ttl};
  const size_t cost = Cost(key, entry);
  while (!by_expiry_.empty() && (entries_.size() >= max_entries_ || bytes_ + cost > max_bytes_)) {
    Erase(entries_.find(by_expiry_.begin()->second));
  }
  bytes_ += cost;
  by_expiry_.emplace(entry.expiry, key);
  entries_.emplace(std::move(key), std::move(entry));
}

void ResponseCache::Erase(std::map<std::string, Entry>::iterator it) {
  bytes_ -= Cost(it->first, it->second);
  by_expiry_.erase({it->second.expiry, it->first});
  entries_.erase(it);
}

void ResponseCache::EvictExpired(absl::Time now) {
  while (!by_expiry_.empty() && by_expiry_.begin()->first <= now) {
    Erase(entries_.find(by_expiry_.begin()->second));
  }
}

}  // namespace switchboard::upstream
