// BlockingReads: the blocking XREADGROUPs that wait for new entries of the
// Redis backend's drained consumer groups.
//
// Owned by StreamGroups, which tells it when a group's topics are drained and
// gets what the reads bring (DESIGN.md §3). A group name reads all the
// streams it reads (its topics', and the ordering partitions this process
// owns) in one call on a reader connection of its own, up to
// max_reader_connections; beyond, groups share the least shared reader and
// take turns on it. A read holds no credits. The reader connections
// themselves live in the ConnectionSet.
//
// Threading: every call and callback on the broker's dispatcher thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/connection_set.h"
#include "server/broker/redis/reply.h"
#include "server/broker/redis/topic_group.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher.h"

namespace switchboard::broker::redis {

class StreamGroups;

struct BlockingReadOptions {
  uint32_t max_reader_connections;  // Reader connections at most.
  absl::Duration block_time;        // How long one read waits, shared by a reader's groups.
  absl::Duration command_timeout;   // Added to the block time: the read's timeout.
};

class BlockingReads {
 public:
  BlockingReads(event::Dispatcher& dispatcher, event::Anchor<ConnectionSet> connections,
                BlockingReadOptions options, CommandLanes& lanes, StreamGroups& groups);
  ~BlockingReads();

  BlockingReads(const BlockingReads&) = delete;
  BlockingReads& operator=(const BlockingReads&) = delete;

  // `topic_group`'s streams are read with the other topics of its group
  // name, while readable. It must outlive this object.
  void AddTopic(TopicGroup& topic_group);

  // Gives group `name` a reader connection unless it has one: a free one
  // while fewer than the cap are in use, else the least shared.
  void EnsureReader(const std::string& name);

  // A group without sessions gives its reader back, and an unused reader
  // closes after a linger (DESIGN.md §3: one per active group; the linger
  // spares a group that comes back soon a new connection).
  void ReleaseReaderIfIdle(const std::string& name);

  // Starts (or widens) the blocking read of group `name` over its drained
  // readable streams whose topics have credit.
  void EnsureBlocking(const std::string& name);

  // Reader `index`'s connection came up or went down.
  void OnReaderState(size_t index, bool ready);

  // Interrupts every pending read not interrupted for this already; each of
  // them runs `returned` once it has returned and its entries were taken.
  // Returns how many. For SyncBarrier.
  size_t InterruptForBarrier(const std::function<void()>& returned);

  // No new reads from now on (shutdown).
  void Stop() { stopped_ = true; }

 private:
  static constexpr size_t kNoReader = std::numeric_limits<size_t>::max();

  // A group name's blocking reads, over all its streams.
  struct GroupReads {
    size_t reader = kNoReader;
    std::vector<GroupStream*> streams;
    bool blocking = false;
    std::vector<GroupStream*> blocking_streams;
    uint32_t blocking_count = 0;  // The read's COUNT, per stream.
    bool unblock_requested = false;
  };

  struct ReaderSlot {
    bool ready = false;
    std::vector<std::string> groups;         // Group names assigned to it.
    std::string reading;                     // The group whose blocking read is pending.
    std::deque<std::string> waiting;         // Groups waiting for their turn.
    std::function<void()> barrier_returned;  // Set while a barrier waits for the read.
  };

  void Unblock(GroupReads& group);
  void OnBlockingRead(const std::string& name, absl::StatusOr<Reply> reply);

  event::Anchor<ConnectionSet> connections_;
  const BlockingReadOptions options_;
  CommandLanes& lanes_;
  StreamGroups& groups_;
  bool stopped_ = false;
  std::map<std::string, GroupReads> reads_;  // By group name.
  std::deque<ReaderSlot> readers_;           // By index; a deque keeps references stable.
  event::Anchor<BlockingReads> self_;
};

}  // namespace switchboard::broker::redis
