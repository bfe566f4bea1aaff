// Recording sinks and observer for broker tests.
//
// Used by the conformance suite (tests/conformance) and by any test that
// drives a broker::Broker directly. Each class records what a backend calls,
// lets the test thread wait for a count with a generous timeout (never a
// fixed sleep), and checks the callback contract of broker.h as it goes:
// callbacks never run on the thread that created the sink (they would be
// inline), never after Seal() (the test calls it once the handle's destructor
// returned), never after OnClosed(), OnSubscribed() comes first, and at most
// one OnMessage() is outstanding. Breaches are collected in violations().
//
// All methods are thread-safe. A sink must outlive the handle it was given
// to: declare it before the handle.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/broker/broker.h"

namespace switchboard::testing {

// How long a test waits for something asynchronous that must happen.
inline constexpr absl::Duration kWaitTimeout = absl::Seconds(10);

// Common bookkeeping: the contract checks and the waiting.
class CallbackRecorder {
 public:
  // Any callback from now on is a violation.
  void Seal() {
    absl::MutexLock lock(&mu_);
    sealed_ = true;
  }

  std::vector<std::string> violations() const {
    absl::MutexLock lock(&mu_);
    return violations_;
  }

  std::optional<absl::Status> closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

  bool WaitForClosed(absl::Duration timeout = kWaitTimeout) const {
    return WaitUntil([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return closed_.has_value(); },
                     timeout);
  }

 protected:
  // Starts a callback named `what`: checks it against the contract and wakes
  // the waiters, who look again once the callback has released mu_. Call
  // with mu_ held.
  void BeginCallback(absl::string_view what) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    changed_.SignalAll();
    if (std::this_thread::get_id() == creator_thread_) {
      violations_.push_back(absl::StrCat(what, " ran inline on the calling thread"));
    }
    if (sealed_) violations_.push_back(absl::StrCat(what, " ran after the handle was destroyed"));
    if (closed_) violations_.push_back(absl::StrCat(what, " ran after OnClosed"));
  }

  void RecordClosed(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    BeginCallback("OnClosed");
    closed_ = std::move(status);
  }

  // Waits until `done()`, evaluated with mu_ held, is true. A CondVar rather
  // than Mutex::AwaitWithTimeout: the waiting thread evaluates `done` itself,
  // so the sanitizers see every access it makes.
  template <typename Predicate>
  bool WaitUntil(Predicate done, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Time deadline = absl::Now() + timeout;
    absl::MutexLock lock(&mu_);
    while (!done()) {
      if (changed_.WaitWithDeadline(&mu_, deadline)) return done();
    }
    return true;
  }

  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);

 private:
  const std::thread::id creator_thread_ = std::this_thread::get_id();
  bool sealed_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
};

// Records an ephemeral subscription. In kAuto mode it calls Ready() after
// every message; in kManual mode the test calls Ready() on the sink.
class RecordingSubscriberSink final : public broker::SubscriberSink, public CallbackRecorder {
 public:
  enum class Readiness { kAuto, kManual };

  explicit RecordingSubscriberSink(Readiness readiness = Readiness::kAuto)
      : readiness_(readiness) {}

  // Gives the sink its subscription. Call right after Subscribe() returns,
  // before publishing. Safe against messages already delivered.
  void Attach(broker::Subscription* subscription) {
    absl::MutexLock lock(&mu_);
    subscription_ = subscription;
    if (owes_ready_) {
      owes_ready_ = false;
      subscription_->Ready();
    }
  }

  // The test is done with the outstanding message (kManual mode).
  void Ready() {
    absl::MutexLock lock(&mu_);
    outstanding_ = false;
    subscription_->Ready();
  }

  void OnSubscribed() override {
    absl::MutexLock lock(&mu_);
    BeginCallback("OnSubscribed");
    if (subscribed_calls_++ > 0) violations_.push_back("OnSubscribed ran twice");
  }

  void OnMessage(broker::Message message, uint64_t dropped_since_last) override {
    absl::MutexLock lock(&mu_);
    BeginCallback("OnMessage");
    if (subscribed_calls_ == 0) violations_.push_back("OnMessage ran before OnSubscribed");
    if (outstanding_) violations_.push_back("OnMessage ran while a message was outstanding");
    messages_.push_back(std::move(message));
    dropped_.push_back(dropped_since_last);
    if (readiness_ == Readiness::kManual) {
      outstanding_ = true;
    } else if (subscription_ == nullptr) {
      owes_ready_ = true;
    } else {
      subscription_->Ready();
    }
  }

  void OnClosed(absl::Status status) override { RecordClosed(std::move(status)); }

  bool WaitForSubscribed(absl::Duration timeout = kWaitTimeout) const {
    return WaitUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return subscribed_calls_ > 0; },
                     timeout);
  }

  bool WaitForCount(size_t n, absl::Duration timeout = kWaitTimeout) const {
    return WaitUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return messages_.size() >= n; },
                     timeout);
  }

  size_t count() const {
    absl::MutexLock lock(&mu_);
    return messages_.size();
  }

  std::vector<broker::Message> messages() const {
    absl::MutexLock lock(&mu_);
    return messages_;
  }

  std::vector<std::string> payloads() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> payloads;
    for (const broker::Message& message : messages_) payloads.push_back(message.payload);
    return payloads;
  }

  // `dropped_since_last` of each message, in order.
  std::vector<uint64_t> dropped() const {
    absl::MutexLock lock(&mu_);
    return dropped_;
  }

 private:
  const Readiness readiness_;
  broker::Subscription* subscription_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool owes_ready_ ABSL_GUARDED_BY(mu_) = false;
  bool outstanding_ ABSL_GUARDED_BY(mu_) = false;
  size_t subscribed_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<broker::Message> messages_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> dropped_ ABSL_GUARDED_BY(mu_);
};

// Records a consume stream's deliveries, and the results of Settle() calls
// made through RecordSettled().
class RecordingConsumerSink final : public broker::ConsumerSink, public CallbackRecorder {
 public:
  void OnDeliveries(std::vector<broker::Delivery> deliveries) override {
    absl::MutexLock lock(&mu_);
    BeginCallback("OnDeliveries");
    if (deliveries.empty()) violations_.push_back("OnDeliveries ran with no delivery");
    for (broker::Delivery& delivery : deliveries) deliveries_.push_back(std::move(delivery));
  }

  void OnClosed(absl::Status status) override { RecordClosed(std::move(status)); }

  // For Settle()'s completion: checked like any callback of the session.
  void RecordSettled(broker::LeaseUpdateResult result) {
    absl::MutexLock lock(&mu_);
    BeginCallback("Settle completion");
    settled_.push_back(std::move(result));
  }

  bool WaitForCount(size_t n, absl::Duration timeout = kWaitTimeout) const {
    return WaitUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return deliveries_.size() >= n; },
                     timeout);
  }

  bool WaitForSettled(size_t n, absl::Duration timeout = kWaitTimeout) const {
    return WaitUntil([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return settled_.size() >= n; },
                     timeout);
  }

  size_t count() const {
    absl::MutexLock lock(&mu_);
    return deliveries_.size();
  }

  std::vector<broker::Delivery> deliveries() const {
    absl::MutexLock lock(&mu_);
    return deliveries_;
  }

  std::vector<broker::LeaseUpdateResult> settled() const {
    absl::MutexLock lock(&mu_);
    return settled_;
  }

 private:
  std::vector<broker::Delivery> deliveries_ ABSL_GUARDED_BY(mu_);
  std::vector<broker::LeaseUpdateResult> settled_ ABSL_GUARDED_BY(mu_);
};

// Counts observer events per topic (and group).
class RecordingObserver final : public broker::BrokerObserver {
 public:
  void OnRedelivered(absl::string_view topic, absl::string_view group) override {
    Add(&redelivered_, Key(topic, group), 1);
  }
  void OnDeadLettered(absl::string_view topic, absl::string_view group) override {
    Add(&dead_lettered_, Key(topic, group), 1);
  }
  void OnSubscriberDropped(absl::string_view topic, uint64_t count) override {
    Add(&dropped_, std::string(topic), count);
  }
  void OnLeaseExpired(absl::string_view topic, absl::string_view group) override {
    Add(&expired_, Key(topic, group), 1);
  }
  void OnConsumerLag(absl::string_view topic, absl::string_view group, uint64_t lag) override {
    absl::MutexLock lock(&mu_);
    lags_[Key(topic, group)] = lag;
  }
  void OnLeasesInFlight(absl::string_view topic, absl::string_view group,
                        uint64_t leases) override {
    absl::MutexLock lock(&mu_);
    leases_in_flight_[Key(topic, group)] = leases;
  }
  void OnSubscriberBufferFill(const absl::flat_hash_map<std::string, double>& fill) override {
    absl::MutexLock lock(&mu_);
    buffer_fill_ = fill;
  }
  struct Retained {
    uint64_t bytes = 0;
    uint64_t topics = 0;
    uint64_t dedup_ids = 0;
  };
  void OnRetained(uint64_t bytes, uint64_t topics, uint64_t dedup_ids) override {
    absl::MutexLock lock(&mu_);
    retained_ = Retained{bytes, topics, dedup_ids};
  }
  // The last sample of retained bytes, topics and dedup ids, if any.
  std::optional<Retained> retained() const {
    absl::MutexLock lock(&mu_);
    return retained_;
  }

  uint64_t redelivered(absl::string_view topic, absl::string_view group) const {
    return Get(redelivered_, Key(topic, group));
  }
  uint64_t dead_lettered(absl::string_view topic, absl::string_view group) const {
    return Get(dead_lettered_, Key(topic, group));
  }
  uint64_t dropped(absl::string_view topic) const { return Get(dropped_, std::string(topic)); }
  uint64_t expired(absl::string_view topic, absl::string_view group) const {
    return Get(expired_, Key(topic, group));
  }
  // The last lag sample, if any.
  std::optional<uint64_t> lag(absl::string_view topic, absl::string_view group) const {
    absl::MutexLock lock(&mu_);
    auto it = lags_.find(Key(topic, group));
    if (it == lags_.end()) return std::nullopt;
    return it->second;
  }
  // The last sample of leases in flight, if any.
  std::optional<uint64_t> leases_in_flight(absl::string_view topic, absl::string_view group) const {
    absl::MutexLock lock(&mu_);
    auto it = leases_in_flight_.find(Key(topic, group));
    if (it == leases_in_flight_.end()) return std::nullopt;
    return it->second;
  }
  // The last subscriber buffer sample.
  absl::flat_hash_map<std::string, double> buffer_fill() const {
    absl::MutexLock lock(&mu_);
    return buffer_fill_;
  }

 private:
  using Counts = std::map<std::string, uint64_t>;

  static std::string Key(absl::string_view topic, absl::string_view group) {
    return absl::StrCat(topic, "/", group);
  }

  void Add(Counts* counts, const std::string& key, uint64_t n) {
    absl::MutexLock lock(&mu_);
    (*counts)[key] += n;
  }

  uint64_t Get(const Counts& counts, const std::string& key) const {
    absl::MutexLock lock(&mu_);
    auto it = counts.find(key);
    return it == counts.end() ? 0 : it->second;
  }

  mutable absl::Mutex mu_;
  Counts redelivered_ ABSL_GUARDED_BY(mu_);
  Counts dead_lettered_ ABSL_GUARDED_BY(mu_);
  Counts dropped_ ABSL_GUARDED_BY(mu_);
  Counts expired_ ABSL_GUARDED_BY(mu_);
  Counts lags_ ABSL_GUARDED_BY(mu_);              // Last sample, not a sum.
  Counts leases_in_flight_ ABSL_GUARDED_BY(mu_);  // Last sample.
  absl::flat_hash_map<std::string, double> buffer_fill_ ABSL_GUARDED_BY(mu_);
  std::optional<Retained> retained_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::testing
