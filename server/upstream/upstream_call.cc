#include "server/upstream/upstream_call.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"

namespace switchboard::upstream {
namespace {

constexpr char kRetryAfterPayload[] = "type.switchboard.dev/retry-after-ms";

}  // namespace

bool IsTransactionSubmission(absl::string_view method) {
  for (const char* submission : kTransactionSubmissions) {
    if (method == submission) return true;
  }
  return false;
}

absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after) {
  status.SetPayload(kRetryAfterPayload, absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(
                                            std::max(retry_after, absl::Milliseconds(1))))));
  return status;
}

std::optional<absl::Duration> RetryAfter(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kRetryAfterPayload);
  int64_t milliseconds = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &milliseconds)) {
    return std::nullopt;
  }
  return absl::Milliseconds(milliseconds);
}

}  // namespace switchboard::upstream
