// JsonRpcHttpService: the JSON-RPC front door over HTTP (issue 14). A worker
// that speaks plain JSON-RPC over HTTP, as web3 client libraries do, points
// its provider URL at Switchboard and changes nothing else.
//
// Per upstream, `POST /<upstream>` (or `POST /<upstream>/<token>`, the
// token in the path as providers take API keys) carries one JSON-RPC request
// or a batch. Each call goes through the same pipeline as Rpc.Call (cache,
// coalescing, client quota, admission, batching, retries), validated the
// same way, and its answer comes back byte-exact: the provider's `result` or
// `error` value with the caller's own `id`, in the batch's order;
// notifications (no `id`) get no answer. The caller is identified by
// `Authorization: Bearer <token>` or the token path segment (the header
// wins), as on the gRPC side.
//
// `GET /<upstream>` (or with the token segment) with `Upgrade: websocket`
// opens a WebSocket on the same path, served by JsonRpcWebSockets
// (json_rpc_ws_session.h): subscriptions sharing Rpc.Subscribe's, and calls.
// Same identity rules; 426 without Sec-WebSocket-Version 13, 503 once
// max_websockets are open.
//
// Status codes: 200 with the answers; 429 with `Retry-After` (seconds) when
// every call of the request was refused by a rate limit or quota (a batch
// in which only some were refused gets 200, those items carrying error
// -32005); 401 unknown caller; 404 unknown upstream; 405 not POST. A body
// that is not JSON gets 200 with the JSON-RPC parse error (-32700), an
// empty or too large batch -32600, as providers answer. Upstream failures
// are error objects with code -32000 and the reason (URLs masked).
//
// Every refusal (a bad request, an unknown caller or upstream) is counted
// in switchboard_requests_rejected_total{method="JsonRpcHttp",code}; calls
// that reach the pipeline are counted there, like Rpc.Call's.
//
// A call outlives a client that hangs up: its deadline (the upstream's
// request timeout) bounds it.
//
// Threading: Handle() on the HTTP server's dispatcher; answers come on the
// upstreams' threads and go back through the Responder.
#pragma once

#include <cstdint>

#include "server/http/http_server.h"
#include "server/service/json_rpc_ws_session.h"
#include "server/service/service_context.h"

namespace switchboard::service {

class JsonRpcHttpService {
 public:
  // `context` must outlive the service and every call it started.
  // `max_batch_calls` bounds the calls of one request. `websockets`, when
  // set, serves upgrades to WebSocket (on the same dispatcher; it must
  // outlive the HTTP server).
  JsonRpcHttpService(ServiceContext& context, uint32_t max_batch_calls,
                     JsonRpcWebSockets* websockets = nullptr)
      : context_(context), max_batch_calls_(max_batch_calls), websockets_(websockets) {}

  void Handle(http::HttpRequest request, http::Responder responder);

 private:
  // Answers a `GET /<upstream>` with `Upgrade: websocket` of an
  // authenticated client: 101, and the connection goes to websockets_.
  void Upgrade(const http::HttpRequest& request, http::Responder responder, std::string upstream,
               auth::ClientIdentity client);

  ServiceContext& context_;
  const uint32_t max_batch_calls_;
  JsonRpcWebSockets* const websockets_;
};

}  // namespace switchboard::service
