// LeaseKeeper: the Redis backend's periodic pass over its consumer groups
// (every maintenance_interval, real time).
//
// Owned by RedisBroker's state, which runs Pass() on every maintenance tick;
// works on the groups of StreamGroups. Per group, it
//   * keeps the idle time of the entries this process holds fresh (XCLAIM
//     JUSTID), so no other replica reclaims a live lease;
//   * reclaims entries idle longer than the ack deadline (XAUTOCLAIM) from
//     the streams it reads: the leases of a replica that died, or entries
//     this one could not ack;
//   * balances the ordering partitions (PartitionOwners);
//   * forgets the recorded nack delays that are over;
//   * samples Redis' lag of the group for the BrokerObserver;
//   * retries groups whose creation or reads failed.
//
// Threading: every call and callback on the broker's dispatcher thread.
#pragma once

#include <cstdint>
#include <vector>

#include "server/broker/broker.h"
#include "server/broker/redis/command_lanes.h"
#include "server/broker/redis/stream_groups.h"
#include "server/broker/redis/topic_group.h"

namespace switchboard::broker::redis {

class LeaseKeeper {
 public:
  // Every reference must outlive this object.
  LeaseKeeper(StreamGroups& groups, CommandLanes& lanes, BrokerObserver& observer);

  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Refreshes, reclaims and samples every group whose lane is ready. Only
  // while the shared lane is ready.
  void Pass();

 private:
  void RefreshOwned(TopicGroup& topic_group);
  void SampleLag(TopicGroup& topic_group);
  void ForgetEndedDelays(TopicGroup& topic_group);

  StreamGroups& groups_;
  CommandLanes& lanes_;
  BrokerObserver& observer_;
};

}  // namespace switchboard::broker::redis
