// Issue 13's acceptance for ordering keys across replicas: three Switchboard
// processes on one Redis, six consumers (two per replica, each sleeping a
// random few ms per message), 10,000 messages over 100 keys on a topic with
// 16 ordering partitions, one replica SIGKILLed midway. For every key the
// processings never overlap, the last processing of each message comes in
// publish order, nothing is lost, and a message is processed again only as a
// redelivery with a higher attempt.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/redis/end_to_end_harness.h"

namespace switchboard::end_to_end {
namespace {

constexpr int kReplicas = 3;
constexpr int kConsumersPerReplica = 2;
constexpr int kKeys = 100;
constexpr int kPerKey = 100;
constexpr int kMessages = kKeys * kPerKey;
constexpr int kPartitions = 16;

// One processing of one delivery by a consumer.
struct Processing {
  int key;
  int seq;
  int attempt;
  int replica;
  absl::Time start;
  absl::Time end;
};

// The consumers: each a thread that consumes from a live replica, processes
// one delivery at a time (a random 1-3 ms), acks it, and moves to another
// live replica when its stream ends.
class ConsumerFleet {
 public:
  explicit ConsumerFleet(std::vector<Replica>& replicas) : replicas_(replicas) {}
  ~ConsumerFleet() { Stop(); }

  void Start() {
    for (int c = 0; c < kReplicas * kConsumersPerReplica; ++c) {
      threads_.emplace_back([this, c] { Run(c, c / kConsumersPerReplica); });
    }
  }

  // The replica is being killed: its consumers move on when their streams end.
  void MarkDead(int replica) {
    absl::MutexLock lock(&mu_);
    dead_.insert(replica);
  }

  // Waits until every message was processed at least once.
  bool WaitForAll(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return seen_.size() == static_cast<size_t>(kMessages);
    };
    return mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
  }

  bool WaitForProcessed(size_t count, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, count]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return processings_.size() >= count; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }

  std::vector<Processing> Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      for (grpc::ClientContext* context : contexts_) context->TryCancel();
    }
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
    absl::MutexLock lock(&mu_);
    return processings_;
  }

 private:
  void Run(int consumer, int replica) {
    std::mt19937 random(consumer);
    std::uniform_int_distribution<int> work_us(1000, 3000);
    while (true) {
      grpc::ClientContext context;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
        while (dead_.count(replica) > 0) replica = (replica + 1) % kReplicas;
        contexts_.insert(&context);
      }
      std::unique_ptr<ConsumeStream> stream =
          OpenConsume(*replicas_[replica].stub, context, "orders", "workers", 4, 0);
      v1::ConsumeResponse response;
      while (stream->Read(&response)) {
        for (const v1::Delivery& delivery : response.deliveries()) {
          Processing processing;
          const std::vector<std::string> parts = absl::StrSplit(delivery.message().payload(), ':');
          EXPECT_EQ(parts.size(), 2u);
          if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &processing.key) ||
              !absl::SimpleAtoi(parts[1], &processing.seq)) {
            continue;
          }
          processing.attempt = delivery.delivery_attempt();
          processing.replica = replica;
          processing.start = absl::Now();
          absl::SleepFor(absl::Microseconds(work_us(random)));  // The work, not a wait.
          processing.end = absl::Now();
          {
            absl::MutexLock lock(&mu_);
            processings_.push_back(processing);
            seen_.insert({processing.key, processing.seq});
          }
          v1::ConsumeRequest ack;
          ack.add_ack_ids(delivery.ack_id());
          stream->Write(ack);
        }
      }
      stream->Finish();
      absl::MutexLock lock(&mu_);
      contexts_.erase(&context);
    }
  }

  std::vector<Replica>& replicas_;
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::set<int> dead_ ABSL_GUARDED_BY(mu_);
  std::set<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
  std::vector<Processing> processings_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<int, int>> seen_ ABSL_GUARDED_BY(mu_);
};

TEST_F(EndToEndTest, KeysStayInOrderAcrossThreeReplicasWhenOneIsKilled) {
  ASSERT_NO_FATAL_FAILURE(StartRedis());
  // Partitions move while the replicas join (the first takes all, then gives
  // back above its share) and after the kill: each move counts a delivery in
  // Redis for what the last owner had read, so allow more attempts than 5.
  const std::string config = RedisConfigYaml(
      *redis_,
      absl::StrCat("topics:\n  - {name: orders, ack_deadline_ms: 2000, max_delivery_attempts: 20, "
                   "ordering_partitions: ",
                   kPartitions, "}\n"));
  std::vector<Replica> replicas(kReplicas);
  for (Replica& replica : replicas) ASSERT_NO_FATAL_FAILURE(StartReplica(config, replica));

  // Publish order per key: seq 0..99, in batches of one seq for every key.
  for (int seq = 0; seq < kPerKey; ++seq) {
    v1::PublishRequest request;
    request.set_topic("orders");
    for (int key = 0; key < kKeys; ++key) {
      v1::OutgoingMessage& message = *request.add_messages();
      message.set_payload(absl::StrCat(key, ":", seq));
      message.set_ordering_key(absl::StrCat("k", key));
    }
    grpc::ClientContext context;
    context.set_deadline(testing::Deadline());
    v1::PublishResponse response;
    const grpc::Status status = replicas[0].stub->Publish(&context, request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    ASSERT_EQ(response.message_ids_size(), kKeys);
    EXPECT_THAT(response.message_ids(0), ::testing::MatchesRegex("[0-9]+-[0-9]+#[0-9]+"));
  }

  ConsumerFleet fleet(replicas);
  fleet.Start();
  ASSERT_TRUE(fleet.WaitForProcessed(kMessages / 2, absl::Seconds(60)));
  fleet.MarkDead(2);
  ASSERT_THAT(replicas[2].process->Kill(), IsOk());
  ASSERT_TRUE(fleet.WaitForAll(absl::Seconds(60))) << "messages were lost";
  // Every ack landed: nothing is pending in any partition.
  for (int p = 0; p < kPartitions; ++p) {
    EXPECT_THAT(
        PollRedis(*redis_, {"XPENDING", absl::StrCat("orders#", p), "workers"}, kNothingPending),
        IsOkAndHolds(kNothingPending))
        << "partition " << p;
  }
  const std::vector<Processing> processings = fleet.Stop();

  std::map<int, std::vector<Processing>> by_key;
  for (const Processing& processing : processings) by_key[processing.key].push_back(processing);
  ASSERT_EQ(by_key.size(), static_cast<size_t>(kKeys));
  size_t repeats = 0;
  for (auto& [key, of_key] : by_key) {
    std::sort(of_key.begin(), of_key.end(),
              [](const Processing& a, const Processing& b) { return a.start < b.start; });
    std::map<int, int> last_attempt;  // Seq -> attempt of its latest processing.
    std::map<int, size_t> last_index;
    for (size_t i = 0; i < of_key.size(); ++i) {
      const Processing& processing = of_key[i];
      if (i > 0) {
        ASSERT_LE(of_key[i - 1].end, processing.start)
            << "key " << key << ": seq " << of_key[i - 1].seq << " and " << processing.seq
            << " were processed at the same time";
      }
      auto seen = last_attempt.find(processing.seq);
      if (seen != last_attempt.end()) {
        ++repeats;
        EXPECT_GT(processing.attempt, seen->second) << "key " << key << " seq " << processing.seq
                                                    << " processed again without a redelivery";
      }
      last_attempt[processing.seq] = processing.attempt;
      last_index[processing.seq] = i;
    }
    // The last processing of each message: exactly the published order.
    ASSERT_EQ(last_index.size(), static_cast<size_t>(kPerKey)) << "key " << key;
    for (int seq = 1; seq < kPerKey; ++seq) {
      EXPECT_LT(last_index[seq - 1], last_index[seq]) << "key " << key << " seq " << seq;
    }
  }
  RecordProperty("processings", static_cast<int>(processings.size()));
  RecordProperty("repeats", static_cast<int>(repeats));
}

}  // namespace
}  // namespace switchboard::end_to_end
