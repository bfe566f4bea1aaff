#include "server/service/rpc_service.h"

#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/common/names.h"
#include "server/service/call_validation.h"
#include "server/service/pipelined_stream.h"
#include "server/service/rpc_subscribe_reactor.h"
#include "server/service/status_conversion.h"

namespace switchboard::service {
namespace {

constexpr char kRetryAfterTrailer[] = "retry-after-ms";

// The gRPC deadline of `call`, or the upstream's request timeout from now
// when the caller set none.
absl::Time CallDeadline(const grpc::CallbackServerContext& call, absl::Duration fallback) {
  const absl::Time deadline = absl::FromChrono(call.deadline());
  const absl::Time bound = absl::Now() + fallback;
  return deadline < bound ? deadline : bound;
}

void FillAnswer(upstream::Answer answer, v1::CallResponse& response) {
  switch (answer.kind) {
    case upstream::Answer::Kind::kResult:
      response.set_result_json(std::move(answer.json));
      break;
    case upstream::Answer::Kind::kError:
      response.set_error_json(std::move(answer.json));
      break;
    case upstream::Answer::Kind::kRawBody:
      response.set_raw_body(std::move(answer.json));
      break;
  }
  response.set_cached(answer.cached);
  response.set_coalesced(answer.coalesced);
  response.set_batched(answer.batched);
  response.set_upstream_attempts(answer.upstream_attempts);
}

uint32_t RetryAfterMs(const absl::Status& status) {
  std::optional<absl::Duration> retry_after = upstream::RetryAfter(status);
  return retry_after.has_value() ? static_cast<uint32_t>(absl::ToInt64Milliseconds(*retry_after))
                                 : 0;
}

// One unary Call. Lives until its answer has been sent (the upstream proxy
// answers every call exactly once).
class CallReactor final : public grpc::ServerUnaryReactor {
 public:
  CallReactor(ServiceContext& context, grpc::CallbackServerContext& call,
              const v1::CallRequest& request, v1::CallResponse& response)
      : context_(context), call_(call), response_(response) {
    absl::StatusOr<upstream::UpstreamCall> upstream_call = Validate(request);
    if (!upstream_call.ok()) {
      context_.metrics.CountRejected("Call", StatusCodeName(upstream_call.status().code()));
      Finish(ToGrpcStatus(upstream_call.status()));
      return;
    }
    absl::MutexLock lock(&mu_);
    handle_ = context_.upstreams.Call(
        request.upstream(), *std::move(upstream_call),
        [this](absl::StatusOr<upstream::Answer> answer) { OnAnswer(std::move(answer)); });
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    if (handle_.has_value()) context_.upstreams.Cancel(*handle_);
  }

  void OnDone() override { delete this; }

 private:
  absl::StatusOr<upstream::UpstreamCall> Validate(const v1::CallRequest& request) {
    absl::StatusOr<auth::ClientIdentity> client = AuthenticateCall(context_, call_);
    if (!client.ok()) return client.status();
    const absl::Duration fallback = context_.upstreams.Contains(request.upstream())
                                        ? context_.upstreams.request_timeout(request.upstream())
                                        : absl::ZeroDuration();
    return ValidateCallRequest(request, *client, context_.upstreams, context_.limits,
                               CallDeadline(call_, fallback));
  }

  void OnAnswer(absl::StatusOr<upstream::Answer> answer) {
    {
      absl::MutexLock lock(&mu_);  // The constructor has stored the handle.
      handle_.reset();
    }
    if (!answer.ok()) {
      if (const uint32_t retry_after_ms = RetryAfterMs(answer.status()); retry_after_ms > 0) {
        call_.AddTrailingMetadata(kRetryAfterTrailer, absl::StrCat(retry_after_ms));
      }
      Finish(ToGrpcStatus(answer.status()));
      return;
    }
    FillAnswer(*std::move(answer), response_);
    Finish(grpc::Status::OK);
  }

  ServiceContext& context_;
  grpc::CallbackServerContext& call_;
  v1::CallResponse& response_;
  absl::Mutex mu_;
  std::optional<upstream::UpstreamProxy::CallHandle> handle_ ABSL_GUARDED_BY(mu_);
};

// One CallStream: each request is answered by its request_id, in completion
// order. When the client cancels the stream, its calls still waiting for
// admission are withdrawn (each still answered, CANCELLED, so the reactor's
// outstanding work ends).
class CallStreamReactor final : public PipelinedStream<v1::CallRequest, v1::CallResponse> {
 public:
  CallStreamReactor(ServiceContext& context, grpc::CallbackServerContext& call)
      : PipelinedStream(context, call, metrics::StreamMethod::kCallStream) {
    Start();
  }

 private:
  void OnCancelled() override {
    absl::MutexLock lock(&calls_mu_);
    for (const auto& [sequence, handle] : calls_) context_.upstreams.Cancel(handle);
  }

  void Handle(v1::CallRequest& request) override {
    const uint64_t request_id = request.request_id();
    absl::StatusOr<upstream::UpstreamCall> upstream_call = Validate(request);
    if (!upstream_call.ok()) {
      context_.metrics.CountRejected("CallStream", StatusCodeName(upstream_call.status().code()));
      Respond(Failure(request_id, upstream_call.status()));
      return;
    }
    BeginAsync();
    absl::MutexLock lock(&calls_mu_);  // The answer comes later, never inline.
    const uint64_t sequence = next_sequence_++;
    calls_.emplace(sequence,
                   context_.upstreams.Call(
                       request.upstream(), *std::move(upstream_call),
                       [this, request_id, sequence](absl::StatusOr<upstream::Answer> answer) {
                         {
                           absl::MutexLock lock(&calls_mu_);
                           calls_.erase(sequence);
                         }
                         if (!answer.ok()) {
                           CompleteAsync(Failure(request_id, answer.status()));
                           return;
                         }
                         v1::CallResponse response;
                         response.set_request_id(request_id);
                         FillAnswer(*std::move(answer), response);
                         CompleteAsync(std::move(response));
                       }));
  }

  absl::StatusOr<upstream::UpstreamCall> Validate(const v1::CallRequest& request) {
    if (!context_.upstreams.Contains(request.upstream())) {
      return ValidateCallRequest(request, client(), context_.upstreams, context_.limits,
                                 absl::Now());
    }
    const absl::Duration timeout = request.timeout_ms() > 0
                                       ? absl::Milliseconds(request.timeout_ms())
                                       : context_.upstreams.request_timeout(request.upstream());
    return ValidateCallRequest(request, client(), context_.upstreams, context_.limits,
                               CallDeadline(call(), timeout));
  }

  static v1::CallResponse Failure(uint64_t request_id, const absl::Status& status) {
    v1::CallResponse response;
    response.set_request_id(request_id);
    *response.mutable_status() = ToErrorStatus(status);
    response.set_retry_after_ms(RetryAfterMs(status));
    return response;
  }

  absl::Mutex calls_mu_;
  // The calls not yet answered, by the order they were made (request ids
  // are the client's and need not be unique).
  absl::flat_hash_map<uint64_t, upstream::UpstreamProxy::CallHandle> calls_
      ABSL_GUARDED_BY(calls_mu_);
  uint64_t next_sequence_ ABSL_GUARDED_BY(calls_mu_) = 0;
};

}  // namespace

grpc::ServerUnaryReactor* RpcService::Call(grpc::CallbackServerContext* call,
                                           const v1::CallRequest* request,
                                           v1::CallResponse* response) {
  return new CallReactor(context_, *call, *request, *response);
}

grpc::ServerBidiReactor<v1::CallRequest, v1::CallResponse>* RpcService::CallStream(
    grpc::CallbackServerContext* call) {
  return new CallStreamReactor(context_, *call);
}

grpc::ServerUnaryReactor* RpcService::DescribeLimit(grpc::CallbackServerContext* call,
                                                    const v1::DescribeLimitRequest* request,
                                                    v1::DescribeLimitResponse* response) {
  grpc::ServerUnaryReactor* reactor = call->DefaultReactor();
  absl::Status valid = AuthenticateCall(context_, *call).status();
  if (valid.ok()) valid = common::ValidateUpstreamName(request->upstream(), "upstream");
  if (valid.ok() && !context_.upstreams.Contains(request->upstream())) {
    valid = absl::NotFoundError(
        absl::StrCat("upstream: no upstream named \"", request->upstream(), "\" is configured"));
  }
  if (!valid.ok()) {
    context_.metrics.CountRejected("DescribeLimit", StatusCodeName(valid.code()));
    reactor->Finish(ToGrpcStatus(valid));
    return reactor;
  }
  context_.upstreams.DescribeLimit(
      request->upstream(),
      [this, reactor, response, name = request->upstream()](
          absl::StatusOr<upstream::UpstreamProxy::LimitDescription> description) {
        if (!description.ok()) {
          reactor->Finish(ToGrpcStatus(description.status()));
          return;
        }
        response->set_upstream(name);
        response->set_scope(!description->rate_limited ? "none"
                            : description->global      ? "global"
                                                       : "local");
        response->set_configured_rate(description->configured_rate);
        response->set_rate(description->rate);
        response->set_burst(description->burst);
        response->set_queue_depth(description->queue_depth);
        response->set_in_flight(description->in_flight);
        if (description->global) {
          response->set_replica_id(context_.replica_id);
          response->set_fallback(description->fallback);
          if (description->shared.ok()) {
            const ratelimit::SharedLimitState& shared = *description->shared;
            if (shared.rate > 0) response->set_rate(shared.rate);
            response->set_live_replicas(shared.live_replicas);
            const absl::Duration paused = shared.paused_until - absl::Now();
            if (paused > absl::ZeroDuration()) {
              response->set_paused_for_ms(absl::ToInt64Milliseconds(paused));
            }
            for (const ratelimit::ReplicaLease& lease : shared.replicas) {
              v1::DescribeLimitResponse::ReplicaTokens* replica = response->add_replicas();
              replica->set_replica_id(lease.replica_id);
              replica->set_tokens_ahead(lease.tokens_ahead);
            }
          } else {
            response->set_shared_error(std::string(description->shared.status().message()));
          }
        }
        reactor->Finish(grpc::Status::OK);
      });
  return reactor;
}

grpc::ServerWriteReactor<v1::RpcNotification>* RpcService::Subscribe(
    grpc::CallbackServerContext* call, const v1::RpcSubscribeRequest* request) {
  return new RpcSubscribeReactor(context_, *call, *request);
}

}  // namespace switchboard::service
