// Stream and ConsumerGroup: the memory broker's durable topics, shaped like a
// Redis stream with consumer groups (XADD with MAXLEN, XREADGROUP, the
// pending entries list, XACK).
//
// Used only by MemoryBroker, on its dispatcher thread (not thread-safe).
// Leases, credits and sessions are not here: they belong to the broker.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

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

// A consumer group's progress through a Stream: where it reads next, which
// messages are pending (delivered, not yet acked) with their delivery counts,
// and which pending messages wait for redelivery. Like Redis' pending entries
// list, a pending message stays deliverable after retention trims it from the
// stream.
class ConsumerGroup {
 public:
  struct Claim {
    std::shared_ptr<const Message> message;
    uint32_t delivery_count = 0;  // Including this delivery.
  };

  // Starts at the oldest entry `stream` retains. `stream` must outlive the
  // group.
  explicit ConsumerGroup(const Stream& stream) : stream_(stream), next_position_(stream.begin()) {}

  // Takes the next message to deliver, waiting redeliveries first and then
  // new entries, and counts the delivery. Nothing when neither is left.
  std::optional<Claim> ClaimNext();

  // Pending message `id` leaves the group (acked, or dead-lettered), and is
  // returned.
  std::shared_ptr<const Message> Remove(const std::string& id);

  // Pending message `id` waits for redelivery, behind earlier ones.
  void Requeue(const std::string& id);

  // Retained entries this group has not read yet.
  uint64_t lag() const { return stream_.end() - std::max(next_position_, stream_.begin()); }

 private:
  struct Pending {
    std::shared_ptr<const Message> message;
    uint32_t delivery_count = 0;
  };

  const Stream& stream_;
  uint64_t next_position_;
  std::unordered_map<std::string, Pending> pending_;  // By message id.
  std::deque<std::string> redeliveries_;
};

}  // namespace switchboard::broker::memory
