#include "server/upstream/response_classification.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/http/url_mask.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::upstream {
namespace {

absl::string_view TransportOutcome(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kDeadlineExceeded:
      return "timeout";
    case absl::StatusCode::kResourceExhausted:
      return "too_large";
    case absl::StatusCode::kInvalidArgument:
      return "invalid";
    default:
      return "unavailable";
  }
}

// "upstream NAME (URL)", the URL masked.
std::string Where(const ResponseSource& source) {
  return absl::StrCat("upstream ", source.upstream, " (", http::MaskUrl(source.url), ")");
}

}  // namespace

std::optional<Verdict> ClassifyHttpFailure(const absl::StatusOr<http::Response>& response,
                                           const ResponseSource& source) {
  Verdict verdict;
  if (!response.ok()) {
    const absl::StatusCode code = response.status().code();
    verdict.outcome = TransportOutcome(code);
    verdict.result = response.status();
    // A response over the size limit is our refusal, not the host's fault,
    // and would be as large the next time.
    if (code == absl::StatusCode::kResourceExhausted) return verdict;
    verdict.url_health = Verdict::UrlHealth::kDown;
    verdict.retryable = true;
    verdict.never_sent = http::RequestNeverSent(response.status());
    return verdict;
  }
  if (response->status == 429) {
    verdict.outcome = "http_429";
    verdict.url_health = Verdict::UrlHealth::kUp;  // The host is up; it asks us to slow down.
    verdict.throttled = true;
    verdict.retry_after = response->retry_after;
    verdict.retryable = true;
    verdict.result = WithRetryAfter(
        absl::ResourceExhaustedError(absl::StrCat(Where(source), " is rate limiting: HTTP 429")),
        response->retry_after.value_or(absl::Seconds(1)));
    return verdict;
  }
  if (response->status >= 500) {
    verdict.outcome = "http_5xx";
    verdict.url_health = Verdict::UrlHealth::kDown;
    verdict.retryable = true;
    verdict.result =
        absl::UnavailableError(absl::StrCat(Where(source), " answered HTTP ", response->status));
    return verdict;
  }
  return std::nullopt;
}

Verdict ClassifyRpcResponse(int http_status, absl::string_view body, const ResponseSource& source) {
  Verdict verdict;
  verdict.url_health = Verdict::UrlHealth::kUp;
  const bool http_ok = http_status >= 200 && http_status < 300;
  absl::StatusOr<ResponseParts> parts = SplitResponse(body);
  if (!parts.ok()) {
    verdict.outcome = http_ok ? "invalid" : "http_4xx";
    verdict.result = absl::UnavailableError(
        absl::StrCat(Where(source), " answered HTTP ", http_status,
                     " without a JSON-RPC response: ", parts.status().message()));
    return verdict;
  }
  if (parts->error.has_value()) {
    verdict.result = Answer{Answer::Kind::kError, std::string(*parts->error)};
    if (IsRateLimitError(*parts->error)) {
      verdict.outcome = "rpc_throttled";
      verdict.throttled = true;
      verdict.retryable = true;
    } else {
      verdict.outcome = "rpc_error";
      verdict.served = true;
    }
    return verdict;
  }
  verdict.outcome = "ok";
  verdict.served = true;
  verdict.result = Answer{Answer::Kind::kResult, std::string(*parts->result)};
  return verdict;
}

Verdict ClassifyResponse(const absl::StatusOr<http::Response>& response, bool raw,
                         const ResponseSource& source) {
  if (std::optional<Verdict> failure = ClassifyHttpFailure(response, source)) {
    return *std::move(failure);
  }
  if (raw && response->status >= 200 && response->status < 300) {
    Verdict verdict;
    verdict.outcome = "ok";
    verdict.url_health = Verdict::UrlHealth::kUp;
    verdict.served = true;
    verdict.result = Answer{Answer::Kind::kRawBody, response->body};
    return verdict;
  }
  return ClassifyRpcResponse(response->status, response->body, source);
}

Verdict MissingFromBatch(absl::string_view why, const ResponseSource& source) {
  Verdict verdict;
  verdict.outcome = "invalid";
  verdict.url_health = Verdict::UrlHealth::kUp;
  verdict.retryable = true;
  verdict.result =
      absl::UnavailableError(absl::StrCat(Where(source), "'s answer to a JSON-RPC batch ", why));
  return verdict;
}

}  // namespace switchboard::upstream
