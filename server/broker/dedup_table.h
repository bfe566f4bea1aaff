// DedupTable: dedup ids remembered in process (idempotent publish): per
// topic, the message id a dedup id was first stored as, until the end of the
// topic's dedup window. The memory broker remembers every id here; the
// RabbitMQ backend, whose broker has no such record, the ids its own
// process published (Redis keeps them in Redis, for every replica).
//
// Bounded: at most `max_entries` ids within their windows; the broker refuses
// a publish that would remember more. Used on a broker's dispatcher thread
// (not thread-safe).
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::broker {

class DedupTable {
 public:
  explicit DedupTable(size_t max_entries) : max_entries_(max_entries) {}

  // The message id remembered for `dedup_id` on `topic`, if its window has
  // not ended at `now`; nullptr otherwise. Forgets the ids whose windows
  // ended.
  const std::string* Find(absl::string_view topic, absl::string_view dedup_id, absl::Time now);

  // Whether `count` more ids fit (after Find() forgot the ended ones).
  bool HasRoomFor(size_t count) const { return entries_.size() + count <= max_entries_; }

  // Remembers that `dedup_id` on `topic` was stored as `message_id`, until
  // `until`.
  void Remember(absl::string_view topic, absl::string_view dedup_id, std::string message_id,
                absl::Time until);

  size_t size() const { return entries_.size(); }
  size_t max_entries() const { return max_entries_; }

 private:
  struct Entry {
    std::string message_id;
    absl::Time until;
  };

  static std::string KeyOf(absl::string_view topic, absl::string_view dedup_id);
  void Forget(absl::Time now);

  const size_t max_entries_;
  absl::flat_hash_map<std::string, Entry> entries_;  // By KeyOf().
  std::multimap<absl::Time, std::string> ends_;      // Window ends, to forget in order.
};

}  // namespace switchboard::broker
