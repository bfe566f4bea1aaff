// Validation of Rpc requests (proto/switchboard/v1/rpc.proto), before
// anything reaches an upstream.
//
// Every error is INVALID_ARGUMENT (or NOT_FOUND for an unknown upstream) and
// starts with the path of the offending field: "params_json: not valid JSON
// at byte 17: expected ',' or '}'". Used by the Rpc service in this folder.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/client_identity.h"
#include "server/service/request_validation.h"
#include "server/subscriptions/subscriptions.h"
#include "server/upstream/upstream_call.h"
#include "server/upstream/upstream_proxy.h"
#include "switchboard/v1/rpc.pb.h"

namespace switchboard::service {

// The longest `timeout_ms` a streamed call may ask for.
inline constexpr uint32_t kMaxCallTimeoutMs = 600000;

// Checks `request` and builds the call `client` makes to its upstream, with
// `deadline`. `params_json` and `raw_body` are bounded by
// limits.max_message_bytes.
absl::StatusOr<upstream::UpstreamCall> ValidateCallRequest(const v1::CallRequest& request,
                                                           const auth::ClientIdentity& client,
                                                           const upstream::UpstreamProxy& upstreams,
                                                           const RequestLimits& limits,
                                                           absl::Time deadline);

// Checks a Subscribe request: NOT_FOUND for an unknown upstream,
// FAILED_PRECONDITION for one without ws_urls, INVALID_ARGUMENT naming the
// field otherwise (a method that is no subscription and names no
// unsubscribe_method among them). The spec's unsubscribe method is resolved.
absl::StatusOr<subscriptions::SubscribeSpec> ValidateSubscribeRequest(
    const v1::RpcSubscribeRequest& request, const upstream::UpstreamProxy& upstreams,
    const subscriptions::Subscriptions& subscriptions, const RequestLimits& limits);

}  // namespace switchboard::service
