// One Consume RPC: the subscription request, then deliveries in and acks,
// nacks and deadline extensions out. The low layer under `Consumer`, and what
// `sbctl bench consume` drives directly. It neither retries nor reconnects.
//
// Acks and nacks queued while a write is in flight are coalesced
// into the next ConsumeRequest, so a busy stream sends few, large requests.
//
// Threads: Ack(), Nack(), Close() and Cancel() may be called from
// any thread, including from the handlers (even from a handler that runs
// before the constructor has returned). The response handler runs on a gRPC
// callback thread, one response at a time (the next is read after it
// returns); the done handler runs once, last, on a gRPC callback thread.
// Neither runs after the destructor returns.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client {

class ConsumeStream {
 public:
  // New deliveries and refused acks. May move from `response`.
  using ResponseHandler = std::function<void(v1::ConsumeResponse& response)>;
  // The stream's final status.
  using DoneHandler = std::function<void(const absl::Status& status)>;

  // Opens the stream and sends `subscription` as its first request.
  ConsumeStream(const Client& client, v1::ConsumeSubscription subscription,
                ResponseHandler on_response, DoneHandler on_done);

  // Cancels the stream unless it already ended, and waits for the end. The
  // server releases the leases of a cancelled stream at once.
  ~ConsumeStream();

  ConsumeStream(const ConsumeStream&) = delete;
  ConsumeStream& operator=(const ConsumeStream&) = delete;

  // Queue an ack or a nack. Each is dropped silently once the stream is
  // closing or has ended: its lease died with the stream and the message will
  // be redelivered. A nack without a delay redelivers at once, or after the
  // topic's retry_backoff; with one (at most an hour), not before it.
  void Ack(std::string ack_id);
  void Nack(std::string ack_id);
  void Nack(std::string ack_id, absl::Duration delay);

  // Half-closes after the queued acks are written: the server then ends the
  // stream, releasing the leases it still holds. Returns at once.
  void Close();

  // Ends the stream now.
  void Cancel();

  // Blocks until the stream has ended; returns its final status.
  absl::Status Wait();

  // As Wait(), giving up after `timeout`: false when the stream is still open.
  bool WaitWithTimeout(absl::Duration timeout);

  // Whether the server accepted the stream (it did not refuse it outright).
  // Meaningful once the stream has ended.
  bool was_live() const;

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
