// MessageIdGenerator: Redis-style message ids, "<unix ms>-<sequence>".
//
// Used by backends that assign ids themselves: the memory broker for every
// message, the Redis backend for ephemeral messages (Redis Streams assign
// durable ids). Ids from one generator increase strictly, even when the clock
// stands still or steps back: like XADD, the sequence counts up within a
// millisecond and the millisecond never goes below the last one issued.
// Not thread-safe; owned by one dispatcher.
#pragma once

#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace switchboard::broker {

class MessageIdGenerator {
 public:
  // The next id, for a message published at `now`.
  std::string Next(absl::Time now);

 private:
  int64_t last_ms_ = -1;
  uint64_t sequence_ = 0;
};

}  // namespace switchboard::broker
