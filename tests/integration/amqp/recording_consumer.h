// RecordingConsumer: an AmqpConsumer (server/broker/amqp/amqp_connection.h)
// that records what it is told, for a test thread to wait on and check.
//
// Used by tests/integration/amqp. Its callbacks run on the connection's
// owner dispatcher; the waits and getters on any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/broker/amqp/amqp_connection.h"

namespace switchboard::testing {

using broker::amqp::AmqpConnection;
using broker::amqp::AmqpDelivery;

// What a consumer was told. Waits give up after `wait`.
class RecordingConsumer final : public broker::amqp::AmqpConsumer {
 public:
  explicit RecordingConsumer(absl::Duration wait) : wait_(wait) {}

  struct Received {
    uint64_t life;
    AmqpDelivery delivery;
  };

  // Owner thread. With `acking` set, every delivery is acked as it comes,
  // as consumer `id` of that connection.
  AmqpConnection* acking = nullptr;
  uint64_t id = 0;

  void OnDeliveries(uint64_t life, std::vector<AmqpDelivery> deliveries) override {
    {
      absl::MutexLock lock(&mu_);
      if (removed_) ++after_removal_;
      ++batches_;
      for (const AmqpDelivery& delivery : deliveries) received_.push_back({life, delivery});
      changed_.SignalAll();
    }
    if (acking == nullptr) return;
    for (const AmqpDelivery& delivery : deliveries) acking->Ack(id, life, delivery.delivery_tag);
  }

  void OnLifeEnded(uint64_t life, const absl::Status& why) override {
    absl::MutexLock lock(&mu_);
    if (removed_) ++after_removal_;
    ended_.emplace_back(life, why);
    changed_.SignalAll();
  }

  // Owner thread, right after RemoveConsumer(): every callback from now on
  // is counted as one too many.
  void MarkRemoved() {
    absl::MutexLock lock(&mu_);
    removed_ = true;
  }

  // Waits (up to `wait`) until `done` holds; false if it never did.
  bool WaitUntil(const std::function<bool(const RecordingConsumer&)>& done) {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + wait_;
    while (!done(*this)) {
      if (changed_.WaitWithDeadline(&mu_, deadline)) return done(*this);
    }
    return true;
  }

  bool WaitForCount(size_t count) {
    return WaitUntil([count](const RecordingConsumer& c)
                         ABSL_NO_THREAD_SAFETY_ANALYSIS { return c.received_.size() >= count; });
  }

  bool WaitForEnded(size_t count) {
    return WaitUntil([count](const RecordingConsumer& c)
                         ABSL_NO_THREAD_SAFETY_ANALYSIS { return c.ended_.size() >= count; });
  }

  std::vector<Received> received() const {
    absl::MutexLock lock(&mu_);
    return received_;
  }
  std::vector<std::pair<uint64_t, absl::Status>> ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }
  size_t batches() const {
    absl::MutexLock lock(&mu_);
    return batches_;
  }
  size_t after_removal() const {
    absl::MutexLock lock(&mu_);
    return after_removal_;
  }

 private:
  const absl::Duration wait_;
  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, absl::Status>> ended_ ABSL_GUARDED_BY(mu_);
  size_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  bool removed_ ABSL_GUARDED_BY(mu_) = false;
  size_t after_removal_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace switchboard::testing
