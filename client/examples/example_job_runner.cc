// example_job_runner: the job runner of seed 002's scene. It consumes the
// durable jobs topic in the consumer group `runners` (every runner of the
// group gets a share of the jobs), runs each job, publishes its result to the
// results topic, and only then acks the job.
//
// At-least-once, on purpose: the ack comes after the result is stored, so a
// runner that dies between the two has its job redelivered (to itself or
// another runner) and run again, rather than lost. The API side deduplicates
// results by job id (example_jobs_api). A job whose result cannot be
// published is nacked, so it is redelivered at once; one that keeps failing
// goes to the dead-letter topic after the topic's max_delivery_attempts.
//
// Runs until SIGTERM or SIGINT, or until it ran --max_jobs jobs; then stops
// taking jobs, lets the running ones finish and ack, prints a summary line on
// stdout and exits 0. Exits 1 when the server refuses the consumer for good
// (a durable topic it may not read, a bad group name, ...).
#include <atomic>
#include <cstdint>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "jobs.h"
#include "switchboard/client/client.h"
#include "switchboard/client/consumer.h"
#include "switchboard/client/publisher.h"
#include "worker.h"

ABSL_FLAG(std::string, group, "runners", "The consumer group: its runners share the jobs.");
ABSL_FLAG(int, concurrency, 4, "Jobs run at once, each on a thread of its own.");
ABSL_FLAG(uint32_t, max_in_flight, 16,
          "Jobs the server hands this runner ahead of acks (the prefetch).");
ABSL_FLAG(int64_t, max_jobs, 0, "Exit after running this many jobs; 0: until SIGTERM or SIGINT.");
ABSL_FLAG(absl::Duration, work_time, absl::ZeroDuration(),
          "How long each job pretends to work (e.g. 20ms), to watch jobs spread over runners.");

namespace switchboard::examples {
namespace {

constexpr char kUsage[] = R"(runs the jobs of a durable topic and publishes their results.

  example_job_runner [--server=HOST:PORT] [--token=T] [--group=runners]
                     [--concurrency=4] [--max_jobs=N] [--work_time=DURATION]

Acks a job only after its result is published (at-least-once). Prints one
summary line on stdout when it stops:
  summary: jobs_run=N redelivered=R failed=F stopped_by=REASON)";

// What the runner did, counted from its handler threads.
struct RunnerCounts {
  std::atomic<int64_t> jobs_run{0};
  std::atomic<int64_t> redelivered{0};  // Jobs seen again: run before, or by a runner that died.
  std::atomic<int64_t> failed{0};       // Jobs nacked: malformed, or the result not published.
};

int Run() {
  Shutdown shutdown;
  client::Client client(ClientOptionsFromFlags());
  const std::string jobs_topic = absl::GetFlag(FLAGS_jobs_topic);
  const std::string results_topic = absl::GetFlag(FLAGS_results_topic);
  const int64_t max_jobs = absl::GetFlag(FLAGS_max_jobs);
  const absl::Duration work_time = absl::GetFlag(FLAGS_work_time);

  // Every handler thread publishes through this one Publisher, so results
  // of concurrent jobs share batches.
  client::Publisher results(client, results_topic);
  RunnerCounts counts;
  client::ConsumerOptions options;
  options.group = absl::GetFlag(FLAGS_group);
  options.concurrency = absl::GetFlag(FLAGS_concurrency);
  options.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);

  // OK acks the job; an error nacks it for redelivery.
  client::Consumer consumer(
      client, jobs_topic, options, [&](const v1::Delivery& delivery) -> absl::Status {
        if (delivery.delivery_attempt() > 1) ++counts.redelivered;
        absl::StatusOr<v1::OutgoingMessage> result = RunJob(delivery.message());
        if (!result.ok()) {
          ++counts.failed;
          std::cerr << "job_runner: cannot run message " << delivery.message().message_id()
                    << ", nacked: " << result.status() << std::endl;
          return result.status();
        }
        absl::SleepFor(work_time);
        // Blocks this handler thread until the result is stored: the ack
        // that follows must never overtake it.
        absl::StatusOr<std::string> stored = results.Publish(*std::move(result)).get();
        if (!stored.ok()) {
          ++counts.failed;
          std::cerr << "job_runner: the result of job " << JobIdOf(delivery.message())
                    << " was not published, so the job is nacked for redelivery: "
                    << stored.status() << std::endl;
          return stored.status();
        }
        const int64_t jobs_run = ++counts.jobs_run;
        if (max_jobs > 0 && jobs_run >= max_jobs) shutdown.Request("max_jobs");
        return absl::OkStatus();
      });
  const StopOnShutdown stop_consumer(shutdown, [&consumer] { consumer.Stop(); });
  std::cerr << "job_runner: consuming " << jobs_topic << " in group " << options.group << std::endl;

  // OK once stopped on request; a permanent error ends it by itself.
  const absl::Status ended = consumer.Wait();
  std::cout << "summary: jobs_run=" << counts.jobs_run << " redelivered=" << counts.redelivered
            << " failed=" << counts.failed
            << " stopped_by=" << (ended.ok() ? shutdown.reason() : "error") << std::endl;
  if (!ended.ok()) {
    std::cerr << "job_runner: the server refused the consumer of " << jobs_topic << ": " << ended
              << std::endl;
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace
}  // namespace switchboard::examples

int main(int argc, char** argv) {
  switchboard::examples::ParseWorkerFlags(argc, argv, switchboard::examples::kUsage);
  return switchboard::examples::Run();
}
