#include "server/broker/redis/sync_barrier.h"

#include <utility>

#include "server/broker/redis/pubsub_commands.h"

namespace switchboard::broker::redis {

SyncBarrier::SyncBarrier(std::string channel, CommandLanes& lanes, PubSubChannels& channels,
                         BlockingReads& reads)
    : channel_(std::move(channel)), lanes_(lanes), channels_(channels), reads_(reads) {
  channels_.AddMarkerChannel(channel_, [this] {
    if (awaiting_marker_) MarkerArrived();
  });
}

void SyncBarrier::Sync(absl::AnyInvocable<void()> done) {
  // A barrier already under way may have started before the work this
  // caller waits for: join the next one.
  if (started_) {
    next_waiters_.push_back(std::move(done));
    return;
  }
  waiters_.push_back(std::move(done));
  Start();
}

void SyncBarrier::MaybeRelease() {
  if (!lanes_.idle() || !started_ || waits_ > 0) return;
  started_ = false;
  std::vector<absl::AnyInvocable<void()>> waiters;
  waiters.swap(waiters_);
  for (auto& waiter : waiters) waiter();
  if (!next_waiters_.empty() && !started_) {
    waiters_.swap(next_waiters_);
    Start();
  }
}

void SyncBarrier::OnSubscriberLost() {
  if (awaiting_marker_) MarkerArrived();
}

void SyncBarrier::Start() {
  started_ = true;
  waits_ += reads_.InterruptForBarrier([this] {
    --waits_;
    MaybeRelease();
  });
  if (channels_.subscribed(channel_)) {
    ++waits_;
    awaiting_marker_ = true;
    lanes_.Send(kSharedLane, PublishCommand(channel_, "sync"), [this](absl::StatusOr<Reply> reply) {
      // Without a receiver the marker never comes.
      if ((!reply.ok() || reply->integer == 0) && awaiting_marker_) MarkerArrived();
    });
  }
  MaybeRelease();
}

void SyncBarrier::MarkerArrived() {
  awaiting_marker_ = false;
  --waits_;
  MaybeRelease();
}

}  // namespace switchboard::broker::redis
