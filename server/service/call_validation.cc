#include "server/service/call_validation.h"

#include "absl/strings/str_cat.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::service {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

absl::Status CheckSize(absl::string_view field, absl::string_view text,
                       const RequestLimits& limits) {
  if (text.size() <= limits.max_message_bytes) return absl::OkStatus();
  return FieldError(field, absl::StrCat(text.size(), " bytes exceeds the ",
                                        limits.max_message_bytes, "-byte limit"));
}

absl::Status CheckJson(absl::string_view field, absl::string_view text) {
  absl::Status valid = upstream::ValidateJson(text);
  if (!valid.ok()) return FieldError(field, valid.message());
  return absl::OkStatus();
}

// Params of a call or a subscription: bounded, valid JSON, an array or an
// object.
absl::Status CheckParams(absl::string_view text, const RequestLimits& limits) {
  if (text.empty()) return absl::OkStatus();
  SB_RETURN_IF_ERROR(CheckSize("params_json", text, limits));
  SB_RETURN_IF_ERROR(CheckJson("params_json", text));
  const char opening = text[text.find_first_not_of(" \t\r\n")];
  if (opening != '[' && opening != '{') {
    return FieldError("params_json", "must be a JSON array or object");
  }
  return absl::OkStatus();
}

absl::Status CheckUpstream(absl::string_view name, const upstream::UpstreamProxy& upstreams) {
  SB_RETURN_IF_ERROR(common::ValidateUpstreamName(name, "upstream"));
  if (!upstreams.Contains(name)) {
    return absl::NotFoundError(
        absl::StrCat("upstream: no upstream named \"", name, "\" is configured"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<upstream::UpstreamCall> ValidateCallRequest(const v1::CallRequest& request,
                                                           const auth::ClientIdentity& client,
                                                           const upstream::UpstreamProxy& upstreams,
                                                           const RequestLimits& limits,
                                                           absl::Time deadline) {
  SB_RETURN_IF_ERROR(CheckUpstream(request.upstream(), upstreams));
  if (request.timeout_ms() > kMaxCallTimeoutMs) {
    return FieldError("timeout_ms", absl::StrCat("must be at most ", kMaxCallTimeoutMs, ", got ",
                                                 request.timeout_ms()));
  }
  upstream::UpstreamCall call;
  call.client_id = client.id;
  call.client_weight = client.weight;
  call.priority = request.priority();
  call.deadline = deadline;
  if (!request.raw_body().empty()) {
    if (!request.method().empty() || !request.params_json().empty()) {
      return FieldError("raw_body", "is exclusive with method and params_json");
    }
    SB_RETURN_IF_ERROR(CheckSize("raw_body", request.raw_body(), limits));
    SB_RETURN_IF_ERROR(CheckJson("raw_body", request.raw_body()));
    call.raw_body = request.raw_body();
    return call;
  }
  if (request.method().empty()) return FieldError("method", "is required unless raw_body is set");
  SB_RETURN_IF_ERROR(common::ValidateMethodName(request.method(), "method"));
  SB_RETURN_IF_ERROR(CheckParams(request.params_json(), limits));
  call.method = request.method();
  call.params_json = request.params_json();
  return call;
}

absl::StatusOr<subscriptions::SubscribeSpec> ValidateSubscribeRequest(
    const v1::RpcSubscribeRequest& request, const upstream::UpstreamProxy& upstreams,
    const subscriptions::Subscriptions& subscriptions, const RequestLimits& limits) {
  SB_RETURN_IF_ERROR(CheckUpstream(request.upstream(), upstreams));
  if (!subscriptions.Serves(request.upstream())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "upstream: \"", request.upstream(), "\" serves no subscriptions (it has no ws_urls)"));
  }
  if (request.method().empty()) return FieldError("method", "is required");
  SB_RETURN_IF_ERROR(common::ValidateMethodName(request.method(), "method"));
  SB_RETURN_IF_ERROR(CheckParams(request.params_json(), limits));
  subscriptions::SubscribeSpec spec;
  spec.method = request.method();
  spec.params_json = request.params_json();
  if (!request.unsubscribe_method().empty()) {
    SB_RETURN_IF_ERROR(
        common::ValidateMethodName(request.unsubscribe_method(), "unsubscribe_method"));
    spec.unsubscribe_method = request.unsubscribe_method();
  } else if (std::optional<std::string> derived =
                 subscriptions::UnsubscribeMethodFor(request.method())) {
    spec.unsubscribe_method = *std::move(derived);
  } else {
    return FieldError("method", absl::StrCat("\"", request.method(),
                                             "\" is not a subscription method (fooSubscribe or "
                                             "<ns>_subscribe); for another, name its "
                                             "unsubscribe_method"));
  }
  return spec;
}

}  // namespace switchboard::service
