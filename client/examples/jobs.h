// The messages of seed 002's scene, shared by example_jobs_api (publishes
// jobs, collects their results) and example_job_runner (runs jobs, publishes
// results): like the seed's shared/types.go, the one module both sides use,
// so that they agree on topics and formats.
//
// Both topics are durable. Every message carries its job's id in the
// attribute `job_id`, so that either side can route or deduplicate without
// parsing the JSON payload. Delivery is at-least-once on both topics: a
// runner may run a job twice, and the API may see a result twice; the job id
// is what makes that harmless.
#pragma once

#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "switchboard/v1/broker.pb.h"

// --jobs_topic and --results_topic (default "jobs" and "results"), the
// topics both programs use.
ABSL_DECLARE_FLAG(std::string, jobs_topic);
ABSL_DECLARE_FLAG(std::string, results_topic);

namespace switchboard::examples {

inline constexpr char kJobIdAttribute[] = "job_id";

// A job for the jobs topic: the payload is {"job_id":ID,"input":INPUT}. Both
// must be plain text without `"` or `\` (the callers' ids and inputs are
// letters, digits and dashes), so no JSON escaping is needed.
v1::OutgoingMessage MakeJob(const std::string& job_id, const std::string& input);

// Runs `job` (a message of the jobs topic) and returns its result for the
// results topic: {"job_id":ID,"status":"completed","digest":HEX}, where the
// digest (FNV-1a of the job's payload) stands in for real, deterministic
// work: running a job twice gives the same result. INVALID_ARGUMENT for a
// message without a job id.
absl::StatusOr<v1::OutgoingMessage> RunJob(const v1::ReceivedMessage& job);

// The job id of a message of either topic; empty when it has none.
std::string JobIdOf(const v1::ReceivedMessage& message);

}  // namespace switchboard::examples
