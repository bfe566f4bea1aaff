#include "server/service/json_rpc_calls.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/service/call_validation.h"
#include "server/upstream/json_rpc.h"
#include "server/upstream/upstream_call.h"

namespace switchboard::service {
namespace {

// The JSON-RPC error of a call the pipeline failed.
std::string FailureObject(const absl::Status& status) {
  const int code =
      status.code() == absl::StatusCode::kResourceExhausted ? kLimited : kUpstreamFailure;
  return ErrorObject(code, status.message());
}

}  // namespace

std::string ErrorObject(int code, absl::string_view message) {
  return absl::StrCat(R"({"code":)", code, R"(,"message":)", upstream::JsonString(message), "}");
}

std::string ResponseObject(absl::string_view id, absl::string_view member,
                           absl::string_view value) {
  return absl::StrCat(R"({"jsonrpc":"2.0","id":)", id, ",\"", member, "\":", value, "}");
}

std::string JsonRpcMessage(const absl::Status& status) {
  std::string message(status.message());
  if (absl::StartsWith(message, "params_json: ")) message.replace(0, 11, "params");
  return message;
}

void StartJsonRpcCall(ServiceContext& context, absl::string_view metric_method,
                      const std::string& upstream, absl::string_view item,
                      const auth::ClientIdentity& client, absl::Time deadline, CallDone done) {
  absl::StatusOr<upstream::RequestParts> parts = upstream::SplitRequest(item);
  if (!parts.ok()) {
    context.metrics.CountRejected(metric_method, "INVALID_ARGUMENT");
    done(ResponseObject("null", "error", ErrorObject(kInvalidRequest, parts.status().message())),
         std::nullopt);
    return;
  }
  std::string id = parts->id.has_value() ? std::string(*parts->id) : std::string();
  v1::CallRequest call_request;
  call_request.set_upstream(upstream);
  call_request.set_method(parts->method);
  if (parts->params.has_value()) call_request.set_params_json(std::string(*parts->params));
  absl::StatusOr<upstream::UpstreamCall> call =
      ValidateCallRequest(call_request, client, context.upstreams, context.limits, deadline);
  if (!call.ok()) {
    context.metrics.CountRejected(metric_method, "INVALID_ARGUMENT");
    const std::string message = JsonRpcMessage(call.status());
    const bool params = absl::StartsWith(message, "params: ");
    done(id.empty()
             ? std::string()
             : ResponseObject(id, "error",
                              ErrorObject(params ? kInvalidParams : kInvalidRequest, message)),
         std::nullopt);
    return;
  }
  context.upstreams.Call(
      upstream, *std::move(call),
      [id = std::move(id),
       done = std::move(done)](absl::StatusOr<upstream::Answer> answer) mutable {
        if (!answer.ok()) {
          std::optional<absl::Duration> limited_for;
          if (answer.status().code() == absl::StatusCode::kResourceExhausted) {
            limited_for = upstream::RetryAfter(answer.status()).value_or(absl::ZeroDuration());
          }
          done(id.empty() ? std::string()
                          : ResponseObject(id, "error", FailureObject(answer.status())),
               limited_for);
          return;
        }
        if (id.empty()) {
          done(std::string(), std::nullopt);
          return;
        }
        const bool error = answer->kind == upstream::Answer::Kind::kError;
        done(ResponseObject(id, error ? "error" : "result", answer->json), std::nullopt);
      });
}

}  // namespace switchboard::service
