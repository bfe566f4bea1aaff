// Stream and StreamCursor: the memory broker's durable topics, shaped like a
// Redis stream (XADD with MAXLEN) read by consumer groups (XREADGROUP's
// last-delivered id).
//
// Used only by MemoryBroker, on its dispatcher thread (not thread-safe).
// Leases, credits and sessions are not here: they belong to the broker.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "server/broker/broker.h"

namespace switchboard::broker::memory {

// What a retained message is counted as: its payload, attribute names and
// values, ordering key and id, plus kMessageOverheadBytes for the message's
// own structures (the object, its shared_ptr block, map nodes).
inline constexpr uint64_t kMessageOverheadBytes = 160;
uint64_t RetainedBytes(const Message& message);

// One durable topic's retained messages, oldest first, at most `max_len` of
// them and, when `max_bytes` is not 0, at most `max_bytes` of them
// (RetainedBytes). Positions are absolute: they keep counting as old entries
// go.
class Stream {
 public:
  Stream(uint64_t max_len, uint64_t max_bytes) : max_len_(max_len), max_bytes_(max_bytes) {}

  // Appends `message` (counted as `bytes`), trimming the oldest entries
  // beyond the bounds.
  void Append(std::shared_ptr<const Message> message, uint64_t bytes);

  // The bytes the stream would retain after appending messages of `sizes`
  // (and trimming), without changing it.
  uint64_t BytesAfterAppending(const std::vector<uint64_t>& sizes) const;

  // The bytes retained now.
  uint64_t bytes() const { return bytes_; }

  // The position of the oldest retained entry, and one past the newest.
  uint64_t begin() const { return begin_; }
  uint64_t end() const { return begin_ + entries_.size(); }

  // The entry at `position`, which must lie in [begin(), end()).
  const std::shared_ptr<const Message>& at(uint64_t position) const {
    return entries_[position - begin_].message;
  }

 private:
  struct Entry {
    std::shared_ptr<const Message> message;
    uint64_t bytes;
  };

  bool OverBounds(uint64_t count, uint64_t bytes) const {
    return count > max_len_ || (max_bytes_ > 0 && bytes > max_bytes_);
  }

  const uint64_t max_len_;
  const uint64_t max_bytes_;
  std::deque<Entry> entries_;
  uint64_t begin_ = 0;
  uint64_t bytes_ = 0;
};

// A consumer group's read position in a Stream: the next entry it has not
// read. Entries trimmed before the group read them are gone for it too. What
// the group holds after reading (pending, leased, due again) is the
// consumer-group core's (server/broker/consumer_groups.h).
class StreamCursor {
 public:
  // Starts at the oldest entry `stream` retains. `stream` must outlive the
  // cursor.
  explicit StreamCursor(const Stream& stream) : stream_(stream), next_(stream.begin()) {}

  // The next entry, or nullptr when the group has read them all.
  std::shared_ptr<const Message> Next();

  // Retained entries the group has not read yet.
  uint64_t lag() const { return stream_.end() - std::max(next_, stream_.begin()); }

 private:
  const Stream& stream_;
  uint64_t next_;
};

}  // namespace switchboard::broker::memory
