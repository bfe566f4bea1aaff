// Seed 002's jobs scene on RabbitMQ: the same example workers as
// tests/integration/examples/jobs_scene_test.cc (two example_job_runner and
// one example_jobs_api, real processes) through a real `switchboard` on the
// suite's RabbitMQ node. The groups of both topics are declared in the
// configuration (topics[].groups), as a RabbitMQ deployment must: the API
// publishes jobs before any runner may have joined. Every job must come back
// as exactly one distinct result, and both groups' queues must end empty
// once switchboard is stopped (nothing was left unacked), also when a runner
// is SIGKILLed holding jobs.
#include <signal.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/amqp/amqp_client.h"
#include "tests/integration/amqp/rabbitmq_suite.h"
#include "tests/integration/examples/example_process.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {
namespace {

using ::switchboard::testing::AmqpClient;
using ::testing::Ge;
using ::testing::Gt;
using ::testing::SizeIs;

constexpr int kJobs = 200;

class RabbitMqJobsSceneTest : public RabbitMqSuite {
 protected:
  void SetUp() override {
    RabbitMqSuite::SetUp();
    if (HasFatalFailure()) return;
    prefix_ = absl::StrCat("scene", ++tests_);
    switchboard_.emplace(SWITCHBOARD_BINARY, absl::Substitute(R"(
broker:
  url: "$0"
  amqp:
    name_prefix: "$1"
    reconnect_initial_ms: 20
    reconnect_max_ms: 200
topics:
  - {name: jobs, kind: durable, ack_deadline_ms: 600000, groups: [runners]}
  - {name: results, kind: durable, ack_deadline_ms: 600000, groups: [api]}
)",
                                                              server().url(), prefix_));
    ASSERT_THAT(switchboard_->Start(), IsOk());
  }

  Subprocess StartRunner(std::vector<std::string> flags = {}) {
    return StartJobRunner(EXAMPLE_JOB_RUNNER_BINARY, switchboard_->target(), std::move(flags));
  }

  // The ready messages in a group's queue, counted by RabbitMQ at once (a
  // passive queue.declare; rabbitmqctl's counts lag by seconds).
  absl::StatusOr<uint32_t> Ready(const std::string& topic, const std::string& group) {
    absl::StatusOr<std::unique_ptr<AmqpClient>> client =
        AmqpClient::Connect(server().port(), "jobs-scene-test");
    if (!client.ok()) return client.status();
    return (*client)->DeclareQuorumQueue(absl::StrCat(prefix_, "/", topic, "/", group),
                                         /*passive=*/true);
  }

  // Every delivery of both groups was acked: with switchboard stopped (its
  // connection closed, so RabbitMQ took back whatever it still held), both
  // queues are empty.
  void ExpectEveryDeliveryAcked() {
    ASSERT_THAT(switchboard_->SignalAndWait(SIGTERM, kExampleTimeout), IsOkAndHolds(0));
    EXPECT_THAT(Ready("jobs", "runners"), IsOkAndHolds(0u));
    EXPECT_THAT(Ready("results", "api"), IsOkAndHolds(0u));
  }

  static inline int tests_ = 0;
  std::string prefix_;
  std::optional<SwitchboardProcess> switchboard_;
};

TEST_F(RabbitMqJobsSceneTest, TwoRunnersRunEveryJobOnceAndTheApiGetsExactlyOneResultPerJob) {
  Subprocess runner_a = StartRunner({"--work_time=2ms"});
  Subprocess runner_b = StartRunner({"--work_time=2ms"});
  absl::StatusOr<Subprocess> api = StartExample(EXAMPLE_JOBS_API_BINARY, switchboard_->target(),
                                                {absl::StrCat("--jobs=", kJobs)});
  ASSERT_THAT(api, IsOk());
  const std::map<std::string, std::string> summary = RunToEnd(*api);
  const std::map<std::string, std::string> ran_a = StopJobRunner(runner_a);
  const std::map<std::string, std::string> ran_b = StopJobRunner(runner_b);

  EXPECT_EQ(IntField(summary, "jobs"), kJobs);
  EXPECT_EQ(IntField(summary, "distinct_results"), kJobs);
  EXPECT_EQ(IntField(summary, "duplicate_results"), 0);
  EXPECT_EQ(IntField(summary, "stale_results"), 0);
  EXPECT_EQ(IntField(summary, "publish_retries"), 0);
  EXPECT_EQ(IntField(ran_a, "jobs_run") + IntField(ran_b, "jobs_run"), kJobs);
  for (const auto* ran : {&ran_a, &ran_b}) {
    EXPECT_EQ(IntField(*ran, "redelivered"), 0);
    EXPECT_EQ(IntField(*ran, "failed"), 0);
  }
  ExpectEveryDeliveryAcked();
}

// At-least-once at work: a runner dies (SIGKILL) holding jobs. Its runs
// never end (--work_time=1h), so it holds its leases until it dies: the
// server releases them when its stream breaks, RabbitMQ's delivery stays
// with Switchboard, and the other runner gets them as redeliveries. The API
// still counts exactly one result per job.
TEST_F(RabbitMqJobsSceneTest, AKilledRunnersJobsAreRunAgainAndTheApiStillCountsOneResultPerJob) {
  Subprocess doomed = StartRunner({"--work_time=1h"});
  absl::StatusOr<Subprocess> api = StartExample(EXAMPLE_JOBS_API_BINARY, switchboard_->target(),
                                                {absl::StrCat("--jobs=", kJobs)});
  ASSERT_THAT(api, IsOk());
  // The doomed runner holds jobs: the group's leases, all its own.
  const absl::Time deadline = absl::Now() + kExampleTimeout;
  absl::StatusOr<double> leases = 0.0;
  while (absl::Now() < deadline) {
    leases = ScrapeMetric(switchboard_->metrics_port(),
                          R"(switchboard_leases_in_flight{group="runners",topic="jobs"})");
    if (leases.ok() && *leases >= 1) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_THAT(leases, IsOk());
  ASSERT_GE(*leases, 1);
  // The rest are ready for the next runner, which is not there yet.
  EXPECT_THAT(Ready("jobs", "runners"), IsOkAndHolds(Gt(0u)));
  Subprocess survivor = StartRunner({"--work_time=2ms"});
  doomed.Signal(SIGKILL);
  ASSERT_EQ(doomed.Wait(kExampleTimeout), std::optional<int>(128 + SIGKILL));

  const std::map<std::string, std::string> summary = RunToEnd(*api);
  const std::map<std::string, std::string> survived = StopJobRunner(survivor);
  EXPECT_EQ(IntField(summary, "distinct_results"), kJobs);
  EXPECT_EQ(IntField(summary, "duplicate_results"), 0);  // The doomed one finished nothing.
  EXPECT_EQ(IntField(survived, "jobs_run"), kJobs);
  EXPECT_THAT(IntField(survived, "redelivered"), Ge(1));
  EXPECT_EQ(IntField(survived, "failed"), 0);
  ExpectEveryDeliveryAcked();
}

}  // namespace
}  // namespace switchboard::testing
