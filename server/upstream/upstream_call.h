// A call to a JSON-RPC upstream and its answer: what the Rpc service hands
// to an upstream and what comes back (DESIGN.md §4).
//
// Plain values, shared by every stage of the upstream pipeline
// (upstream_client.h) and by response classification
// (response_classification.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace switchboard::upstream {

// Methods that submit transactions: never coalesced, and never batched
// unless a batch's `methods` names them, whatever else the configuration
// says.
inline constexpr const char* kTransactionSubmissions[] = {
    "sendTransaction", "sendRawTransaction", "eth_sendTransaction", "eth_sendRawTransaction"};

// One call.
struct UpstreamCall {
  std::string client_id;
  uint32_t client_weight = 1;
  // A JSON-RPC call: its method and params (JSON text, empty for none).
  std::string method;
  std::string params_json;
  // A raw call: a whole JSON-RPC body (one request or a batch), sent as is.
  // Never cached, coalesced, batched or retried.
  std::string raw_body;
  uint32_t priority = 0;
  absl::Time deadline = absl::InfiniteFuture();
};

// What the provider answered.
struct Answer {
  enum class Kind { kResult, kError, kRawBody };
  Kind kind = Kind::kResult;
  std::string json;  // The `result` value, the `error` object, or the body.
  bool cached = false;
  bool coalesced = false;
  // The call's request went out inside a JSON-RPC batch with other calls.
  bool batched = false;
  uint32_t upstream_attempts = 0;
};

using AnswerCallback = absl::AnyInvocable<void(absl::StatusOr<Answer> answer)>;

// True for the methods in kTransactionSubmissions.
bool IsTransactionSubmission(absl::string_view method);

// A RESOURCE_EXHAUSTED status that tells the caller when to come back: the
// service layer sends it as the `retry-after-ms` trailer.
absl::Status WithRetryAfter(absl::Status status, absl::Duration retry_after);
std::optional<absl::Duration> RetryAfter(const absl::Status& status);

}  // namespace switchboard::upstream
