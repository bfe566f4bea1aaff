// example_jobs_api: the API side of seed 002's scene. It publishes --jobs
// jobs to the durable jobs topic and waits until the server has stored every
// one, then consumes the durable results topic in its own consumer group
// until each job has its result, and prints one summary line on stdout:
//
//   summary: jobs=200 publish_retries=0 distinct_results=200
//            duplicate_results=3 stale_results=0 seconds=1.42
//
// (on one line). Exits 0 only when exactly --jobs distinct results arrived.
//
// At-least-once, handled: a job publish that failed is published again (it
// may have been stored after all, and then runs twice), and runners may run a
// redelivered job again; so a job can have several results. They are matched
// to jobs by job id: the first counts, later ones are acked and counted as
// duplicates. Job ids start with this run's --run_id, so results left in the
// group by an earlier run are told apart, acked and counted as stale. (One
// API instance per --group: instances sharing a group would split the
// results between them.)
//
// Exit codes: 0 all results arrived; 1 a job could not be published, the
// results did not all arrive within --timeout, or it was stopped by a signal
// first (reasons on stderr); 2 bad flags.
#include <unistd.h>

#include <cstdint>
#include <future>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "jobs.h"
#include "switchboard/client/client.h"
#include "switchboard/client/consumer.h"
#include "switchboard/client/publisher.h"
#include "worker.h"

ABSL_FLAG(int, jobs, 100, "Jobs to publish.");
ABSL_FLAG(std::string, group, "api", "The consumer group this API reads results in.");
ABSL_FLAG(std::string, run_id, "",
          "Prefix of this run's job ids (letters, digits, dashes); empty: made from the time "
          "and pid, so that every run's ids are new.");
ABSL_FLAG(int, publish_attempts, 5, "Attempts to publish each job before giving up.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(60),
          "How long to wait for all results once the jobs are published.");

namespace switchboard::examples {
namespace {

constexpr char kUsage[] = R"(publishes jobs and waits for their results.

  example_jobs_api [--server=HOST:PORT] [--token=T] [--jobs=N] [--group=api]
                   [--run_id=ID] [--timeout=60s]

Prints one summary line on stdout; exits 0 only when exactly N distinct
results arrived (duplicates from redelivery are counted, not double-counted).)";

std::string JobId(const std::string& run_id, int index) {
  return absl::StrFormat("%s-%06d", run_id, index);
}

// Publishes a job per id in `job_ids`, retrying the failed ones with
// backoff, and returns how many retries that took; the first permanent
// failure, or the last failure once a job ran out of attempts.
absl::StatusOr<int> PublishJobs(const client::Client& client,
                                const std::vector<std::string>& job_ids, int max_attempts,
                                const Shutdown& shutdown) {
  client::Publisher publisher(client, absl::GetFlag(FLAGS_jobs_topic));
  common::Backoff backoff(RetryBackoff(absl::Milliseconds(100), absl::Seconds(5)));
  absl::BitGen random;
  std::vector<std::string> to_publish = job_ids;
  int retries = 0;
  for (int attempt = 1; !to_publish.empty(); ++attempt) {
    std::vector<std::pair<std::string, std::future<absl::StatusOr<std::string>>>> answers;
    for (const std::string& job_id : to_publish) {
      answers.emplace_back(job_id, publisher.Publish(MakeJob(job_id, "input-" + job_id)));
    }
    std::vector<std::string> failed;
    absl::Status last_failure;
    for (auto& [job_id, answer] : answers) {
      const absl::StatusOr<std::string> stored = answer.get();
      if (stored.ok()) continue;
      if (IsPermanentFailure(stored.status())) return stored.status();
      failed.push_back(job_id);
      last_failure = stored.status();
    }
    if (failed.empty()) break;
    if (attempt == max_attempts) {
      return absl::Status(last_failure.code(),
                          absl::StrCat(failed.size(), " jobs not published after ", max_attempts,
                                       " attempts; the last error: ", last_failure.message()));
    }
    // Publishing again may store a job twice (the failed answer may have
    // come after the server stored it): the runners then run it twice, and
    // the results are deduplicated by job id.
    const absl::Duration delay = absl::Trunc(backoff.Next(random), absl::Milliseconds(1));
    std::cerr << "jobs_api: " << failed.size() << " jobs not published (" << last_failure
              << "); again in " << absl::FormatDuration(delay) << std::endl;
    if (shutdown.WaitFor(delay)) {
      return absl::CancelledError(absl::StrCat("stopped by ", shutdown.reason()));
    }
    retries += static_cast<int>(failed.size());
    to_publish = std::move(failed);
  }
  return retries;
}

// The results of this run's jobs, as they arrive on the consumer's threads.
class ResultTally {
 public:
  explicit ResultTally(const std::vector<std::string>& job_ids)
      : awaited_(job_ids.begin(), job_ids.end()) {}

  // Counts the result for `job_id`; true when it was the last one awaited.
  bool Add(const std::string& job_id) {
    absl::MutexLock lock(&mu_);
    if (awaited_.count(job_id) == 0) {
      ++stale_;
    } else if (!received_.insert(job_id).second) {
      ++duplicates_;
    }
    return received_.size() == awaited_.size();
  }

  int64_t distinct() const {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(received_.size());
  }
  int64_t duplicates() const {
    absl::MutexLock lock(&mu_);
    return duplicates_;
  }
  int64_t stale() const {
    absl::MutexLock lock(&mu_);
    return stale_;
  }

  // Up to `limit` job ids without a result, for the error message.
  std::vector<std::string> Missing(size_t limit) const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> missing;
    for (const std::string& job_id : awaited_) {
      if (missing.size() == limit) break;
      if (received_.count(job_id) == 0) missing.push_back(job_id);
    }
    return missing;
  }

 private:
  const std::set<std::string> awaited_;
  mutable absl::Mutex mu_;
  std::set<std::string> received_ ABSL_GUARDED_BY(mu_);
  int64_t duplicates_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t stale_ ABSL_GUARDED_BY(mu_) = 0;
};

int Run() {
  const int job_count = absl::GetFlag(FLAGS_jobs);
  if (job_count < 1) {
    std::cerr << "jobs_api: --jobs must be at least 1, got " << job_count << std::endl;
    return kExitUsage;
  }
  Shutdown shutdown;
  client::Client client(ClientOptionsFromFlags());
  std::string run_id = absl::GetFlag(FLAGS_run_id);
  if (run_id.empty()) run_id = absl::StrCat(absl::ToUnixMillis(absl::Now()), "-", getpid());
  std::vector<std::string> job_ids;
  for (int i = 0; i < job_count; ++i) job_ids.push_back(JobId(run_id, i));
  const absl::Time start = absl::Now();

  const absl::StatusOr<int> publish_retries =
      PublishJobs(client, job_ids, absl::GetFlag(FLAGS_publish_attempts), shutdown);
  if (!publish_retries.ok()) {
    std::cerr << "jobs_api: cannot publish the jobs to " << absl::GetFlag(FLAGS_jobs_topic) << ": "
              << publish_retries.status() << std::endl;
    return kExitFailure;
  }
  std::cerr << "jobs_api: published " << job_count << " jobs (run " << run_id
            << "), waiting for their results" << std::endl;

  // Every result is acked, ours or not: a stale or duplicate one must not
  // come back either.
  ResultTally tally(job_ids);
  client::ConsumerOptions options;
  options.group = absl::GetFlag(FLAGS_group);
  client::Consumer consumer(client, absl::GetFlag(FLAGS_results_topic), options,
                            [&](const v1::Delivery& delivery) {
                              if (tally.Add(JobIdOf(delivery.message()))) {
                                shutdown.Request("all results");
                              }
                              return absl::OkStatus();
                            });
  const StopOnShutdown stop_consumer(shutdown, [&consumer] { consumer.Stop(); });
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  std::thread timer([&shutdown, timeout] {
    if (!shutdown.WaitFor(timeout)) shutdown.Request("timeout");
  });
  // OK once stopped on request; a permanent error ends it by itself.
  const absl::Status ended = consumer.Wait();
  shutdown.Request("consumer ended");  // Releases the timer.
  timer.join();

  std::cout << "summary: jobs=" << job_count << " publish_retries=" << *publish_retries
            << " distinct_results=" << tally.distinct()
            << " duplicate_results=" << tally.duplicates() << " stale_results=" << tally.stale()
            << " seconds=" << absl::ToDoubleSeconds(absl::Now() - start) << std::endl;
  if (!ended.ok()) {
    std::cerr << "jobs_api: the server refused the consumer of "
              << absl::GetFlag(FLAGS_results_topic) << ": " << ended << std::endl;
    return kExitFailure;
  }
  if (tally.distinct() != job_count) {
    std::cerr << "jobs_api: stopped by " << shutdown.reason() << " with "
              << job_count - tally.distinct() << " of " << job_count
              << " results missing, e.g. job";
    for (const std::string& job_id : tally.Missing(5)) std::cerr << " " << job_id;
    std::cerr << std::endl;
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
