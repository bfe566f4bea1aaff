#include "jobs.h"

#include <cstdint>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

ABSL_FLAG(std::string, jobs_topic, "jobs", "The durable topic of jobs.");
ABSL_FLAG(std::string, results_topic, "results", "The durable topic of job results.");

namespace switchboard::examples {
namespace {

uint64_t Fnv1a(const std::string& bytes) {
  uint64_t hash = 14695981039346656037ull;
  for (const unsigned char byte : bytes) {
    hash ^= byte;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace

v1::OutgoingMessage MakeJob(const std::string& job_id, const std::string& input) {
  v1::OutgoingMessage job;
  job.set_payload(absl::StrCat(R"({"job_id":")", job_id, R"(","input":")", input, R"("})"));
  (*job.mutable_attributes())[kJobIdAttribute] = job_id;
  return job;
}

absl::StatusOr<v1::OutgoingMessage> RunJob(const v1::ReceivedMessage& job) {
  const std::string job_id = JobIdOf(job);
  if (job_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("message ", job.message_id(), " of topic ",
                                                   job.topic(), " has no '", kJobIdAttribute,
                                                   "' attribute"));
  }
  v1::OutgoingMessage result;
  result.set_payload(absl::StrFormat(R"({"job_id":"%s","status":"completed","digest":"%016x"})",
                                     job_id, Fnv1a(job.payload())));
  (*result.mutable_attributes())[kJobIdAttribute] = job_id;
  return result;
}

std::string JobIdOf(const v1::ReceivedMessage& message) {
  const auto it = message.attributes().find(kJobIdAttribute);
  return it == message.attributes().end() ? "" : it->second;
}

}  // namespace switchboard::examples
