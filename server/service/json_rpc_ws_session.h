// JsonRpcWebSockets: the WebSocket side of the JSON-RPC front door (issue
// 14). A web3 client's WebSocket provider (Solana's `Connection` with its
// `onSlotChange`, ethers' WebSocketProvider) points at
// `ws://switchboard:8899/<upstream>` and changes nothing else.
//
// Each connection speaks JSON-RPC, one request object per message:
//   * a subscribe method ("fooSubscribe", "<ns>_subscribe") on an upstream
//     with ws_urls shares the upstream subscriptions of Rpc.Subscribe (same
//     sharing, linger, rate limit and per-stream buffer); its answer is a
//     subscription id of this connection (a number, or a hex string for
//     "<ns>_subscribe" as Ethereum clients expect), and each notification
//     comes as the provider sends it: `{"jsonrpc":"2.0","method":
//     "slotNotification","params":{"result":...,"subscription":<id>}}`, the
//     result byte for byte;
//   * the matching unsubscribe ("fooUnsubscribe", "<ns>_unsubscribe") with
//     the id answers true (false for an id this connection does not hold);
//   * any other method is a call, through the same pipeline as POST and
//     Rpc.Call, answered with the caller's id.
// A subscription the provider refuses is answered with its error; one that
// ends later (the buffer overflowed under `disconnect`, a drain) ends the
// connection with close code 1011 or 1001, so that the client reconnects
// and subscribes again.
//
// Bounds: max_websockets connections (the upgrade of one more is answered
// 503), max_subscriptions_per_websocket subscriptions each, the message
// size (limits.max_message_bytes), and the bytes waiting to be written: a
// client slow to read its notifications holds them in each subscription's
// buffer, where the overflow policy applies (as for an Rpc.Subscribe
// stream), and one whose answers to calls pile up past the connection's
// write bound is closed (1008). The keepalive pings clients like providers.
//
// Threading: everything on the front door's dispatcher; notifications come
// from the upstream dispatcher through each connection's Anchor, and call
// answers from the upstream threads the same way. Create it on any thread;
// Accept(), CloseAll() and the destructor on the dispatcher thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "server/auth/client_identity.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher_impl.h"
#include "server/http/http_server.h"
#include "server/service/service_context.h"
#include "server/ws/websocket_connection.h"

struct bufferevent;

namespace switchboard::service {

class JsonRpcWebSockets {
 public:
  struct Options {
    size_t max_websockets = 1024;
    size_t max_subscriptions_per_websocket = 100;
    ws::WebSocketConnectionOptions connection;
  };

  // `context` and `observer` (connections opened, closed, refused) must
  // outlive this object.
  JsonRpcWebSockets(event::DispatcherImpl& dispatcher, ServiceContext& context, Options options,
                    http::HttpServerObserver& observer);
  ~JsonRpcWebSockets();  // Drops every connection and leaves its subscriptions.

  JsonRpcWebSockets(const JsonRpcWebSockets&) = delete;
  JsonRpcWebSockets& operator=(const JsonRpcWebSockets&) = delete;

  // Whether another connection may open; when not, counts a refusal.
  // Dispatcher thread.
  bool Admit();

  // Serves the upgraded connection `bev` (the 101 answer queued) for
  // `client` on `upstream`, which exists. Dispatcher thread.
  void Accept(bufferevent* bev, std::string upstream, auth::ClientIdentity client);

  // For a drain: closes every connection with 1001 (going away).
  // Dispatcher thread.
  void CloseAll();

 private:
  class Session;

  // Frees session `id` (on a later loop iteration: it may be in a callback).
  void Release(uint64_t id);

  event::DispatcherImpl& dispatcher_;
  ServiceContext& context_;
  const Options options_;
  http::HttpServerObserver& observer_;
  uint64_t next_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Session>> sessions_;
  event::Anchor<JsonRpcWebSockets> anchor_;
};

}  // namespace switchboard::service
