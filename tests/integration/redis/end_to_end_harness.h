// The harness of the Redis end-to-end tests (end_to_end_test.cc,
// end_to_end_fault_test.cc): workers' gRPC calls to real Switchboard
// servers (in-process, or child processes where one is killed) whose broker
// is a real redis-server that the tests start, kill and restart, all on
// loopback ports picked at run time.
#pragma once

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "switchboard/client/consumer.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/poll.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::end_to_end {

using ::switchboard::testing::Ack;
using ::switchboard::testing::ConsumeStream;
using ::switchboard::testing::HealthWatch;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::Numbered;
using ::switchboard::testing::OpenConsume;
using ::switchboard::testing::OpenSubscribe;
using ::switchboard::testing::Poll;
using ::switchboard::testing::ReadDeliveries;
using ::switchboard::testing::RedisServer;
using ::switchboard::testing::ScrapeMetric;
using ::switchboard::testing::SubscribeStream;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::Gt;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAreArray;
using HealthResponse = grpc::health::v1::HealthCheckResponse;
using PublishStream = grpc::ClientReaderWriter<v1::PublishStreamRequest, v1::PublishStreamResponse>;

inline constexpr char kBrokerService[] = "switchboard.v1.Broker";
inline constexpr char kRpcService[] = "switchboard.v1.Rpc";
// How long a test waits for something that must happen.
inline constexpr absl::Duration kWaitTimeout = absl::Seconds(10);
// XPENDING's summary of a group with nothing pending.
inline constexpr char kNothingPending[] = "0\n(nil)\n(nil)\n(nil)";
inline constexpr char kCommandConnectionReady[] =
    R"(switchboard_redis_connections{role="command",state="ready"})";

// A configuration on `redis` with `topics_yaml` appended: fast reconnects,
// and the maintenance pass (lease refresh, reclaim, lag sampling) every
// 200 ms.
inline std::string RedisConfigYaml(const RedisServer& redis, absl::string_view topics_yaml) {
  return absl::Substitute(R"(
broker:
  url: "$0"
  redis:
    reconnect_initial_ms: 20
    reconnect_max_ms: 200
    maintenance_interval_ms: 200
$1)",
                          redis.url(), topics_yaml);
}

// Scrapes `series` from the metrics page on `port` until it equals `value`.
inline absl::StatusOr<double> PollMetric(int port, absl::string_view series, double value) {
  return testing::PollMetric(port, series, value, kWaitTimeout);
}

// Asks Redis `command` until it answers `reply`.
inline absl::StatusOr<std::string> PollRedis(const RedisServer& redis,
                                             const std::vector<std::string>& command,
                                             const std::string& reply) {
  return Poll<std::string>([&] { return redis.Command(command); },
                           [&reply](const std::string& seen) { return seen == reply; },
                           kWaitTimeout);
}

inline std::vector<std::string> Payloads(const std::vector<v1::Delivery>& deliveries) {
  std::vector<std::string> payloads;
  for (const v1::Delivery& delivery : deliveries) payloads.push_back(delivery.message().payload());
  return payloads;
}

inline std::vector<std::string> MessageIds(const std::vector<v1::Delivery>& deliveries) {
  std::vector<std::string> ids;
  for (const v1::Delivery& delivery : deliveries) ids.push_back(delivery.message().message_id());
  return ids;
}

// Publisher threads, each publishing one message at a time with unary calls
// until Stop(), recording every call and how long it took.
class PublishLoad {
 public:
  struct Call {
    std::string payload;
    grpc::Status status;
    std::string id;  // When OK.
    absl::Time start;
    absl::Time end;
  };

  PublishLoad(v1::Broker::Stub& stub, std::string topic, int threads) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, &stub, topic, t] {
        for (int i = 0; !stop_.load(); ++i) {
          Call call;
          call.payload = absl::StrCat("t", t, "-", i);
          v1::PublishResponse response;
          call.start = absl::Now();
          call.status = testing::Publish(stub, topic, {call.payload}, &response);
          call.end = absl::Now();
          if (call.status.ok()) call.id = response.message_ids(0);
          absl::MutexLock lock(&mu_);
          if (call.status.ok()) {
            ++succeeded_;
          } else {
            ++failed_;
          }
          calls_.push_back(std::move(call));
        }
      });
    }
  }

  ~PublishLoad() { Stop(); }

  size_t succeeded() const {
    absl::MutexLock lock(&mu_);
    return succeeded_;
  }

  // Waits until `count` calls succeeded (or failed).
  bool WaitFor(bool succeeded, size_t count) const {
    absl::MutexLock lock(&mu_);
    auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return (succeeded ? succeeded_ : failed_) >= count;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), kWaitTimeout);
  }

  // Stops and joins the threads; returns every call.
  std::vector<Call> Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) thread.join();
    threads_.clear();
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
  size_t succeeded_ ABSL_GUARDED_BY(mu_) = 0;
  size_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

// A Switchboard process, and a Broker stub to it.
struct Replica {
  std::unique_ptr<testing::SwitchboardProcess> process;
  std::unique_ptr<v1::Broker::Stub> stub;
};

// Starts a Switchboard process on `config` into `replica`; fails the test
// unless its Broker service comes to serve.
inline void StartReplica(const std::string& config, Replica& replica) {
  replica.process = std::make_unique<testing::SwitchboardProcess>(SWITCHBOARD_BINARY, config);
  ASSERT_THAT(replica.process->Start(), IsOk());
  const std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(replica.process->target(), grpc::InsecureChannelCredentials());
  ASSERT_TRUE(HealthWatch(channel, kBrokerService).WaitFor(HealthResponse::SERVING))
      << replica.process->stderr_text();
  replica.stub = v1::Broker::NewStub(channel);
}

class EndToEndTest : public ::testing::Test {
 protected:
  void StartRedis(RedisServer::Options options = {}) {
    absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start(std::move(options));
    ASSERT_THAT(redis, IsOk());
    redis_ = *std::move(redis);
  }

  // An in-process Switchboard on redis_, once its Broker service serves.
  void StartSwitchboard(absl::string_view topics_yaml) {
    absl::StatusOr<testing::InProcessServer> server =
        testing::StartInProcessServer(RedisConfigYaml(*redis_, topics_yaml));
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_.target, grpc::InsecureChannelCredentials());
    stub_ = v1::Broker::NewStub(channel_);
    ASSERT_TRUE(HealthWatch(channel_, kBrokerService).WaitFor(HealthResponse::SERVING));
  }

  // Starts Redis and two Switchboard processes on it, with the durable topic
  // "jobs" leased for `ack_deadline` by default.
  void StartReplicasOfJobs(absl::Duration ack_deadline, Replica& first, Replica& second) {
    ASSERT_NO_FATAL_FAILURE(StartRedis());
    const std::string config =
        RedisConfigYaml(*redis_, absl::StrCat("topics:\n  - {name: jobs, ack_deadline_ms: ",
                                              absl::ToInt64Milliseconds(ack_deadline), "}\n"));
    ASSERT_NO_FATAL_FAILURE(StartReplica(config, first));
    ASSERT_NO_FATAL_FAILURE(StartReplica(config, second));
  }

  // Publishes `payloads` to `topic` in one call and returns their ids.
  std::vector<std::string> Publish(const std::string& topic,
                                   const std::vector<std::string>& payloads) {
    v1::PublishResponse response;
    const grpc::Status status = testing::Publish(*stub_, topic, payloads, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return {response.message_ids().begin(), response.message_ids().end()};
  }

  // Declared first, destroyed last: the server drains against a live Redis.
  std::unique_ptr<RedisServer> redis_;
  testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
};

// DESIGN.md §3: 100 worker streams (40 PublishStream, 30 Subscribe over 5
// ephemeral topics, 30 Consume in 2 groups) share at most 4 Redis

}  // namespace switchboard::end_to_end
