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

#include "server/broker/broker.h"

namespace switchboard::broker::memory {

// One durable topic's retained messages, oldest first, at most `max_len` of
// them. Positions are absolute: they keep counting as old entries go.
class Stream {
 public:
  explicit Stream(uint64_t max_len) : max_len_(max_len) {}

  // Appends `message`, trimming the oldest entries beyond max_len.
  void Append(std::shared_ptr<const Message> message);

  // The position of the oldest retained entry, and one past the newest.
  uint64_t begin() const { return begin_; }
  uint64_t end() const { return begin_ + entries_.size(); }

  // The entry at `position`, which must lie in [begin(), end()).
  const std::shared_ptr<const Message>& at(uint64_t position) const {
    return entries_[position - begin_];
  }

 private:
  const uint64_t max_len_;
  std::deque<std::shared_ptr<const Message>> entries_;
  uint64_t begin_ = 0;
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
