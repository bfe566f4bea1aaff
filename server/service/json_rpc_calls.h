// What the JSON-RPC front door's two transports share (HTTP POST in
// json_rpc_http_service, WebSocket in json_rpc_ws_session): JSON-RPC
// response and error objects, and one request object run through the same
// pipeline and validation as Rpc.Call.
#pragma once

#include <optional>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/auth/client_identity.h"
#include "server/service/service_context.h"

namespace switchboard::service {

// JSON-RPC 2.0 error codes (the spec's, and -32005 for a limit, as Solana
// and common Ethereum providers answer a rate limit).
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kLimited = -32005;
inline constexpr int kUpstreamFailure = -32000;

// {"code":code,"message":"message"}.
std::string ErrorObject(int code, absl::string_view message);

// One response object with the caller's id ("null" when it had none we
// could read): {"jsonrpc":"2.0","id":id,"<member>":value}.
std::string ResponseObject(absl::string_view id, absl::string_view member, absl::string_view value);

// A validation error's message with the gRPC field names as the JSON-RPC
// member names ("params_json: ..." -> "params: ...").
std::string JsonRpcMessage(const absl::Status& status);

// The caller's answer to one request object: the response object (empty
// for a notification, which gets none) and, when a rate limit or quota
// refused the call, how long it asked to wait.
using CallDone =
    absl::AnyInvocable<void(std::string response, std::optional<absl::Duration> limited_for)>;

// Runs request object `item` of `client` on `upstream` (which must exist)
// through the Rpc pipeline, validated as Rpc.Call validates, by `deadline`.
// `done` runs once, on an upstream thread, or inline for a request refused
// here. Refusals are counted in switchboard_requests_rejected_total under
// `metric_method`.
void StartJsonRpcCall(ServiceContext& context, absl::string_view metric_method,
                      const std::string& upstream, absl::string_view item,
                      const auth::ClientIdentity& client, absl::Time deadline, CallDone done);

}  // namespace switchboard::service
