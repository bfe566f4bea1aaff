// A watcher of a provider subscription (`slotSubscribe`, `accountSubscribe`,
// `eth_subscribe`, ...) through Switchboard: one server-streaming
// Rpc.Subscribe RPC that hands every notification to a handler. Switchboard
// shares one upstream subscription among every stream that asks for the same
// method and params, and subscribes again by itself when its connection to
// the provider drops (the next notification then says `after_resubscribe`).
// The Watcher itself does not reconnect: when the stream ends (Stop(), a
// server drain, the provider refusing the subscription, the stream falling
// behind under the `disconnect` overflow policy) the Watcher is over, and
// Wait() says why. Notifications sent before the provider accepted the
// subscription are not received: call WaitUntilLive() before relying on
// delivery.
//
//   v1::RpcSubscribeRequest request;
//   request.set_upstream("solana");
//   request.set_method("slotSubscribe");
//   Watcher watcher(client, request, [](const v1::RpcNotification& n) { ... });
//   absl::Status live = watcher.WaitUntilLive(absl::Seconds(10));
//   ...
//   absl::Status ended = watcher.Wait();  // e.g. FAILED_PRECONDITION with the
//                                         // provider's error object
//
// Threads: the handler runs on a gRPC callback thread, one notification at a
// time, in arrival order; the next one is read only after it returns, so a
// slow handler fills this stream's buffer in Switchboard (which then drops or
// disconnects by the upstream's `subscriptions.overflow`, and says so in
// `dropped_since_last`), never the caller's memory. The handler may run
// before the constructor has returned, and never runs after Wait() or the
// destructor returns.
//
// Lifetime: the Client must outlive the Watcher. A Watcher is used in place
// (neither copied nor moved).
#pragma once

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/rpc.pb.h"

namespace switchboard::client {

class Watcher {
 public:
  // One notification: the provider's `result` byte for byte, its sequence
  // in the upstream subscription, whether it is the first after Switchboard
  // subscribed again, and how many this stream lost just before it.
  using Handler = std::function<void(const v1::RpcNotification& notification)>;

  // Starts the subscription at once: `request` names the upstream, the
  // method, its params (JSON text, or empty) and, for a method that follows
  // neither `fooSubscribe` nor `<ns>_subscribe`, its unsubscribe method.
  Watcher(const Client& client, v1::RpcSubscribeRequest request, Handler handler);

  // Stop(), then waits until the stream has ended (and a handler call in
  // progress has returned). Must not run on the handler's thread.
  ~Watcher();

  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Blocks until the provider has accepted the subscription (OK), the
  // stream ended first (its status: NOT_FOUND for an unknown upstream,
  // FAILED_PRECONDITION for an upstream without `ws_urls` or the provider's
  // refusal, INVALID_ARGUMENT naming a bad field, ...), or `timeout` passed
  // (DEADLINE_EXCEEDED). Must not be called from the handler.
  absl::Status WaitUntilLive(absl::Duration timeout);

  // Cancels the stream and returns at once. Idempotent; safe from any
  // thread, including from the handler (even from a handler that runs before
  // the constructor has returned). The handler is not called again (a call
  // already running finishes). Wait() then returns CANCELLED, unless the
  // stream had already ended otherwise.
  void Stop();

  // Blocks until the stream has ended; returns its status: CANCELLED after
  // Stop(), otherwise the server's (UNAVAILABLE for a drain, the codes of
  // WaitUntilLive() for a refusal). Must not be called from the handler.
  absl::Status Wait();

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
