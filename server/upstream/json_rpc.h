// JSON-RPC 2.0 bodies without a JSON library: validation, request building and
// response splitting that keep every value byte for byte.
//
// Used by the Rpc service (validating params and raw bodies) and by the
// upstream client (building requests, splitting responses, finding the
// methods of a raw body for its cost). Values are never parsed into numbers
// and printed again: a provider's `result` reaches the caller exactly as sent
// (a u64 lamport balance stays exact). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace switchboard::upstream {

// Deepest nesting of arrays and objects accepted, so a hostile body cannot
// exhaust the stack.
inline constexpr int kMaxJsonDepth = 128;

// OK when `text` is exactly one JSON value (RFC 8259) with surrounding
// whitespace at most. INVALID_ARGUMENT otherwise, naming the byte offset:
// "not valid JSON at byte 17: expected ',' or '}'".
absl::Status ValidateJson(absl::string_view text);

// `{"jsonrpc":"2.0","id":<id>,"method":"<method>","params":<params>}`, the
// params member left out when `params_json` is empty. `method` must be a
// valid method name (common::ValidateMethodName) and `params_json` valid JSON.
std::string BuildRequest(uint64_t id, absl::string_view method, absl::string_view params_json);

// A JSON-RPC response object split into its members, each the raw JSON text
// of the value as it appears in the body.
struct ResponseParts {
  std::optional<absl::string_view> result;
  std::optional<absl::string_view> error;
  std::optional<absl::string_view> id;
};

// Splits a single response object. INVALID_ARGUMENT (naming what is wrong)
// when `body` is not a JSON object with a `result` or an `error` member.
// The views point into `body`.
absl::StatusOr<ResponseParts> SplitResponse(absl::string_view body);

// `[<request>,<request>,...]`: a batch of the request bodies, in order.
std::string BuildBatch(const std::vector<absl::string_view>& requests);

// The elements of a batch, of requests or of responses (a JSON array), as
// raw JSON text in order. INVALID_ARGUMENT when `body` is not a non-empty
// JSON array. The views point into `body`.
absl::StatusOr<std::vector<absl::string_view>> SplitBatchItems(absl::string_view body);

// A JSON-RPC request object split into its members: `id` and `params` as
// the raw JSON text of their values, `method` decoded.
struct RequestParts {
  std::optional<absl::string_view> id;  // Absent: a notification.
  std::string method;
  std::optional<absl::string_view> params;
};

// Splits one request object. INVALID_ARGUMENT, naming what is wrong, when
// `body` is not a JSON object, has no string `method`, or has a `jsonrpc`
// member other than "2.0". The views point into `body`.
absl::StatusOr<RequestParts> SplitRequest(absl::string_view body);

// `text` as a JSON string literal: quotes, backslashes and control
// characters escaped; bytes from 0x80 up pass as they are.
std::string JsonString(absl::string_view text);

// What makes two calls (or two provider subscriptions) identical, so that
// they share one request (coalescing) or one upstream subscription: the
// method and the params text, byte for byte.
std::string SharingKey(absl::string_view method, absl::string_view params_json);

// A provider's subscription notification: a request object without an id
// (`{"jsonrpc":"2.0","method":"slotNotification","params":{"result":...,
// "subscription":42}}`; Ethereum's method is "eth_subscription"), its
// params' members as raw JSON text.
struct NotificationParts {
  std::string method;
  absl::string_view subscription;
  absl::string_view result;
};

// Splits a notification. INVALID_ARGUMENT, naming what is wrong, when
// `body` is not a request object without an id whose params object has
// `subscription` and `result`. The views point into `body`.
absl::StatusOr<NotificationParts> SplitNotification(absl::string_view body);

// The id of a response, when it is a JSON number that fits a uint64 (the
// ids BuildRequest writes); nullopt for any other id or none.
std::optional<uint64_t> NumericId(const ResponseParts& parts);

// The `method` of a request object, or of each element of a batch array, in
// order. INVALID_ARGUMENT when `body` is not a request or a non-empty batch
// of requests each with a string `method`.
absl::StatusOr<std::vector<std::string>> RequestMethods(absl::string_view body);

// True when a JSON-RPC `error` object says the provider is rate limiting:
// code 429 or -32005 (Solana and common Ethereum providers), or a message
// mentioning a rate limit or too many requests.
bool IsRateLimitError(absl::string_view error_json);

}  // namespace switchboard::upstream
