// SyncBarrier: lets a test wait until a RedisBroker has caught up with Redis
// (RedisBroker::Sync), so it can assert that something did not happen.
//
// Test-only: RedisBroker creates one only when
// RedisBrokerOptions::enable_sync_barrier is set, since it keeps a marker
// channel (switchboard:sync:<random>) subscribed that production has no use
// for. A barrier waits for
//   * every command issued so far to have its reply (CommandLanes),
//   * every pending blocking read to be interrupted and to return, so entries
//     waiting for it were read (BlockingReads),
//   * a marker published on its channel to come back through the subscriber
//     connection, so every message Redis had sent it before was handed on.
//
// Owned by RedisBroker's state. Threading: every call and callback on the
// broker's dispatcher thread.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "server/broker/redis/blocking_reads.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/pubsub_channels.h"

namespace switchboard::broker::redis {

class SyncBarrier {
 public:
  // Subscribes `channel` through `channels`. Every reference must outlive
  // this object.
  SyncBarrier(std::string channel, CommandLanes& lanes, PubSubChannels& channels,
              BlockingReads& reads);

  SyncBarrier(const SyncBarrier&) = delete;
  SyncBarrier& operator=(const SyncBarrier&) = delete;

  // Runs `done` once a barrier that started after this call is through.
  void Sync(absl::AnyInvocable<void()> done);

  // Releases the barrier under way if nothing it waits for is left. Call
  // whenever the lanes become idle.
  void MaybeRelease();

  // The subscriber connection dropped: the marker will not come.
  void OnSubscriberLost();

 private:
  void Start();
  void MarkerArrived();

  const std::string channel_;
  CommandLanes& lanes_;
  PubSubChannels& channels_;
  BlockingReads& reads_;
  bool started_ = false;
  size_t waits_ = 0;  // Reads and the marker the barrier under way waits for.
  bool awaiting_marker_ = false;
  std::vector<absl::AnyInvocable<void()>> waiters_;       // Of the barrier under way.
  std::vector<absl::AnyInvocable<void()>> next_waiters_;  // Of the next one.
};

}  // namespace switchboard::broker::redis
