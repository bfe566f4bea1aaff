// Seed 002's scene end to end, the examples' acceptance test: a real
// redis-server, a real `switchboard` process on it with the durable topics
// `jobs` and `results`, and the example workers as real processes: two
// example_job_runner and one example_jobs_api. Every job must come back as
// exactly one distinct result, and Redis must hold nothing pending in either
// group afterwards, also when a runner is SIGKILLed holding jobs.
#include <signal.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/examples/example_process.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {
namespace {

using ::testing::Ge;
using ::testing::SizeIs;

constexpr int kJobs = 200;
// XPENDING's summary of a group with nothing pending.
constexpr char kNothingPending[] = "0\n(nil)\n(nil)\n(nil)";

// Both topics durable, with leases far longer than the test: a job is
// redelivered only because its runner's stream closed, never because a
// lease ran out.
std::string SceneConfigYaml(const RedisServer& redis) {
  return absl::Substitute(R"(
broker:
  url: "$0"
  redis:
    reconnect_initial_ms: 20
    reconnect_max_ms: 200
    maintenance_interval_ms: 200
topics:
  - {name: jobs, kind: durable, ack_deadline_ms: 600000}
  - {name: results, kind: durable, ack_deadline_ms: 600000}
)",
                          redis.url());
}

class ExampleJobsSceneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start();
    ASSERT_THAT(redis, IsOk());
    redis_ = *std::move(redis);
    switchboard_.emplace(SWITCHBOARD_BINARY, SceneConfigYaml(*redis_));
    ASSERT_THAT(switchboard_->Start(), IsOk());
  }

  Subprocess StartRunner(std::vector<std::string> flags = {}) {
    return StartJobRunner(EXAMPLE_JOB_RUNNER_BINARY, switchboard_->target(), std::move(flags));
  }

  // Nothing pending in `group` of `topic`: every delivery was acked. (The
  // last acks may reach Redis just after a worker exits.)
  void ExpectNothingPending(const std::string& topic, const std::string& group) {
    const absl::Time deadline = absl::Now() + kExampleTimeout;
    absl::StatusOr<std::string> pending = redis_->Command({"XPENDING", topic, group});
    while (!(pending.ok() && *pending == kNothingPending) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      pending = redis_->Command({"XPENDING", topic, group});
    }
    EXPECT_THAT(pending, IsOkAndHolds(kNothingPending)) << topic << " / " << group;
  }

  // Declared first, destroyed last: Switchboard stops against a live Redis.
  std::unique_ptr<RedisServer> redis_;
  std::optional<SwitchboardProcess> switchboard_;
};

TEST_F(ExampleJobsSceneTest, TwoRunnersRunEveryJobOnceAndTheApiGetsExactlyOneResultPerJob) {
  Subprocess runner_a = StartRunner({"--work_time=2ms"});
  Subprocess runner_b = StartRunner({"--work_time=2ms"});
  absl::StatusOr<Subprocess> api = StartExample(EXAMPLE_JOBS_API_BINARY, switchboard_->target(),
                                                {absl::StrCat("--jobs=", kJobs)});
  ASSERT_THAT(api, IsOk());
  const std::map<std::string, std::string> summary = RunToEnd(*api);
  const std::map<std::string, std::string> ran_a = StopJobRunner(runner_a);
  const std::map<std::string, std::string> ran_b = StopJobRunner(runner_b);
  RecordProperty("runner_a_jobs", ran_a.count("jobs_run") ? ran_a.at("jobs_run") : "");
  RecordProperty("runner_b_jobs", ran_b.count("jobs_run") ? ran_b.at("jobs_run") : "");
  RecordProperty("api_seconds", summary.count("seconds") ? summary.at("seconds") : "");

  // N jobs in, exactly N distinct results out. Nothing failed, so nothing
  // ran twice either.
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
  // As Redis holds it: N jobs and N results, every one acked.
  EXPECT_THAT(redis_->Command({"XLEN", "jobs"}), IsOkAndHolds(absl::StrCat(kJobs)));
  EXPECT_THAT(redis_->Command({"XLEN", "results"}), IsOkAndHolds(absl::StrCat(kJobs)));
  ExpectNothingPending("jobs", "runners");
  ExpectNothingPending("results", "api");
}

// At-least-once at work: a runner dies (SIGKILL) holding jobs it may have
// run and published results for without acking them. The server releases
// them when its stream breaks, the other runner runs them again, and the API
// still counts exactly one result per job.
TEST_F(ExampleJobsSceneTest, AKilledRunnersJobsAreRunAgainAndTheApiStillCountsOneResultPerJob) {
  Subprocess doomed = StartRunner({"--work_time=20ms"});
  Subprocess survivor = StartRunner({"--work_time=20ms"});
  absl::StatusOr<Subprocess> api = StartExample(EXAMPLE_JOBS_API_BINARY, switchboard_->target(),
                                                {absl::StrCat("--jobs=", kJobs)});
  ASSERT_THAT(api, IsOk());
  // Both runners are busy once a fifth of the results is in.
  const absl::Time deadline = absl::Now() + kExampleTimeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<std::string> results = redis_->Command({"XLEN", "results"});
    ASSERT_THAT(results, IsOk());
    int stored = 0;
    if (absl::SimpleAtoi(*results, &stored) && stored >= kJobs / 5) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  doomed.Signal(SIGKILL);
  ASSERT_EQ(doomed.Wait(kExampleTimeout), std::optional<int>(128 + SIGKILL));

  const std::map<std::string, std::string> summary = RunToEnd(*api);
  const std::map<std::string, std::string> survived = StopJobRunner(survivor);
  RecordProperty("duplicate_results",
                 summary.count("duplicate_results") ? summary.at("duplicate_results") : "");
  RecordProperty("redelivered", survived.count("redelivered") ? survived.at("redelivered") : "");

  EXPECT_EQ(IntField(summary, "distinct_results"), kJobs);
  EXPECT_THAT(IntField(summary, "duplicate_results"), Ge(0));  // Counted (-1: absent).
  // The killed runner held leases (up to its max_in_flight), which the
  // survivor got as redeliveries.
  EXPECT_THAT(IntField(survived, "redelivered"), Ge(1));
  EXPECT_EQ(IntField(survived, "failed"), 0);
  ExpectNothingPending("jobs", "runners");
  ExpectNothingPending("results", "api");
}

TEST_F(ExampleJobsSceneTest, ARunnerWithMaxJobsExitsByItselfOnceItRanThatMany) {
  constexpr int kMaxJobs = 10;
  Subprocess runner = StartRunner({absl::StrCat("--max_jobs=", kMaxJobs)});
  absl::StatusOr<Subprocess> api = StartExample(EXAMPLE_JOBS_API_BINARY, switchboard_->target(),
                                                {absl::StrCat("--jobs=", kMaxJobs)});
  ASSERT_THAT(api, IsOk());
  EXPECT_EQ(IntField(RunToEnd(*api), "distinct_results"), kMaxJobs);
  ASSERT_EQ(runner.Wait(kExampleTimeout), std::optional<int>(0)) << runner.stderr_text();
  const auto summaries = KeyValueLines(runner.stdout_text(), "summary:");
  ASSERT_THAT(summaries, SizeIs(1)) << runner.stdout_text();
  EXPECT_EQ(IntField(summaries[0], "jobs_run"), kMaxJobs);
  EXPECT_EQ(summaries[0].at("stopped_by"), "max_jobs");
  ExpectNothingPending("jobs", "runners");
}

}  // namespace
}  // namespace switchboard::testing
