#include "server/broker/dedup_table.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::broker {

// Topic names have no '/': the key is unambiguous.
std::string DedupTable::KeyOf(absl::string_view topic, absl::string_view dedup_id) {
  return absl::StrCat(topic, "/", dedup_id);
}

void DedupTable::Forget(absl::Time now) {
  while (!ends_.empty() && ends_.begin()->first <= now) {
    auto entry = entries_.find(ends_.begin()->second);
    // A later Remember() of the same key moved its end: keep it.
    if (entry != entries_.end() && entry->second.until <= now) entries_.erase(entry);
    ends_.erase(ends_.begin());
  }
}

const std::string* DedupTable::Find(absl::string_view topic, absl::string_view dedup_id,
                                    absl::Time now) {
  Forget(now);
  auto entry = entries_.find(KeyOf(topic, dedup_id));
  return entry == entries_.end() ? nullptr : &entry->second.message_id;
}

void DedupTable::Remember(absl::string_view topic, absl::string_view dedup_id,
                          std::string message_id, absl::Time until) {
  std::string key = KeyOf(topic, dedup_id);
  ends_.emplace(until, key);
  entries_.insert_or_assign(std::move(key), Entry{std::move(message_id), until});
}

}  // namespace switchboard::broker
