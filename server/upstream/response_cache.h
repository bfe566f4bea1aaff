// ResponseCache: answers of configured methods kept for their TTL
// (`cache_ttl_ms`), so repeated reads of slow-changing data (getGenesisHash)
// never reach the provider.
//
// Owned by the CacheLayer (cache_layer.h) and used on its dispatcher thread
// only (not thread-safe). Keyed by method and params text: only
// byte-identical params share an entry. Bounded by entry count and by
// bytes; past either bound the entries closest to expiry go first. Time is
// passed in.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::upstream {

class ResponseCache {
 public:
  ResponseCache(size_t max_entries, size_t max_bytes)
      : max_entries_(max_entries), max_bytes_(max_bytes) {}

  // The cached answer of `method` with `params_json`, if still fresh.
  std::optional<std::string> Find(absl::string_view method, absl::string_view params_json,
                                  absl::Time now);

  // Keeps `answer` until `now + ttl`. An answer larger than the byte bound is
  // not kept.
  void Insert(absl::string_view method, absl::string_view params_json, std::string answer,
              absl::Time now, absl::Duration ttl);

  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::string answer;
    absl::Time expiry;
  };

  static std::string Key(absl::string_view method, absl::string_view params_json);
  static size_t Cost(const std::string& key, const Entry& entry);
  void Erase(std::map<std::string, Entry>::iterator it);
  void EvictExpired(absl::Time now);

  const size_t max_entries_;
  const size_t max_bytes_;
  size_t bytes_ = 0;
  std::map<std::string, Entry> entries_;
  std::set<std::pair<absl::Time, std::string>> by_expiry_;
};

}  // namespace switchboard::upstream
