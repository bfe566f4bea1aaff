// A subscriber to an ephemeral topic (or a topic prefix ending in '*'): one
// server-streaming Subscribe RPC that hands every message to a handler.
// Delivery is at-most-once and there is no reconnect: when the stream ends
// (Stop(), a server drain, an overflow DISCONNECT) the Subscriber is over,
// and Wait() says why. Messages published before the subscription is live
// are not received: call WaitUntilLive() before relying on delivery.
//
//   Subscriber subscriber(client, "news.eu", [](const v1::SubscribeResponse& r) { ... });
//   absl::Status live = subscriber.WaitUntilLive(absl::Seconds(10));
//
// Threads: the handler runs on a gRPC callback thread, one message at a time,
// in arrival order; the next message is read only after it returns, so a slow
// handler fills this stream's server-side buffer (and meets the topic's
// overflow policy), never the caller's memory. The handler never runs after
// Wait() or the destructor returns.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client {

class Subscriber {
 public:
  // One message, plus how many this stream lost to overflow before it.
  using Handler = std::function<void(const v1::SubscribeResponse& response)>;

  // Starts subscribing to `topic` at once.
  Subscriber(const Client& client, std::string topic, Handler handler);

  // Stop(), then waits until the stream has ended.
  ~Subscriber();

  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  // Blocks until the server has confirmed the subscription (OK), the stream
  // ended first (its status, e.g. FAILED_PRECONDITION for a durable topic),
  // or `timeout` passed (DEADLINE_EXCEEDED).
  absl::Status WaitUntilLive(absl::Duration timeout);

  // Cancels the stream and returns at once. Idempotent; safe from any
  // thread, including from the handler (even from a handler that runs before
  // the constructor has returned). The handler is not called again (a call
  // already running finishes). Wait() then returns CANCELLED.
  void Stop();

  // Blocks until the stream has ended; returns its status (CANCELLED after
  // Stop()). Must not be called from the handler.
  absl::Status Wait();

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
