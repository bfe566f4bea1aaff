// MessageIdGenerator: Redis-style message ids, "<unix ms>-<sequence>".
//
// Used by backends that assign ids themselves: the memory broker and the
// RabbitMQ backend for every message, the Redis backend for ephemeral
// messages (Redis Streams assign durable ids). Ids from one generator increase strictly, even when
// the clock stands still or steps back: like XADD, the sequence counts up within a millisecond and
// the millisecond never goes below the last one issued. Not thread-safe; owned by one dispatcher.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace switchboard::broker {

class MessageIdGenerator {
 public:
  // Sequences count from `sequence_base` in each millisecond: the RabbitMQ
  // backend, whose replicas all assign ids, starts each process from a
  // random base so that two replicas' ids of one millisecond differ.
  explicit MessageIdGenerator(uint64_t sequence_base = 0) : sequence_base_(sequence_base) {}

  // The next id, for a message published at `now`.
  std::string Next(absl::Time now);

 private:
  const uint64_t sequence_base_;
  int64_t last_ms_ = -1;
  uint64_t sequence_ = 0;
};

}  // namespace switchboard::broker
