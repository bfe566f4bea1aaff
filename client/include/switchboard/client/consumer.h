// A consumer of a durable topic as a member of a consumer group: it keeps a
// Consume stream open, runs a handler for every delivery on a small pool of
// threads it owns, acks each delivery whose handler returned OK and nacks the
// others (so they are redelivered at once, to any consumer of the group).
//
//   ConsumerOptions options;
//   options.group = "workers";
//   options.concurrency = 4;
//   Consumer consumer(client, "jobs", options,
//                     [](const v1::Delivery& d) { return Process(d.message()); });
//   ...
//   consumer.Stop();                  // from anywhere, e.g. a signal thread
//   absl::Status why = consumer.Wait();
//
// Flow control: the server hands the stream at most `max_in_flight`
// unacknowledged deliveries, and every delivery is acked or nacked exactly
// once, so the Consumer never holds more than that many messages.
//
// Reconnects: when the stream ends with a retryable status (UNAVAILABLE,
// a server restart or drain, ...), the Consumer opens a new one after an
// exponential backoff with jitter; the backoff starts over once a stream has
// been accepted. Deliveries of the ended stream that were still queued are
// dropped (the server redelivers them); a handler already running finishes,
// and its ack is dropped for the same reason. A permanent error
// (FAILED_PRECONDITION for an ephemeral topic, INVALID_ARGUMENT, ...) stops
// the Consumer, and Wait() returns it.
//
// Threads: the handler runs on the Consumer's own `concurrency` threads, never
// on gRPC threads. The Consumer also owns one supervisor thread that opens
// streams and waits out backoffs. No handler runs after Wait() returns, and
// no thread outlives the Consumer.
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

struct ConsumerOptions {
  // The consumer group (required).
  std::string group;

  // Unacknowledged deliveries the server may hand this consumer: 1 to 10000.
  uint32_t max_in_flight = 100;

  // Lease length in milliseconds (1000 to 600000); 0 takes the topic's
  // configured ack deadline. A handler that runs longer than its lease sees
  // its message redelivered.
  uint32_t ack_deadline_ms = 0;

  // Handler threads: at most this many deliveries are processed at once.
  int concurrency = 1;

  // Reconnect backoff between streams.
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(10);
  double backoff_multiplier = 2.0;

  // How long Stop() lets the server end the stream gracefully (after the last
  // acks are written) before it cancels the stream.
  absl::Duration shutdown_timeout = absl::Seconds(5);
};

class Consumer {
 public:
  // OK acks the delivery; any error nacks it.
  using Handler = std::function<absl::Status(const v1::Delivery& delivery)>;

  // Starts consuming `topic` at once.
  Consumer(const Client& client, std::string topic, ConsumerOptions options, Handler handler);

  // Stop(), Wait(), then joins the threads.
  ~Consumer();

  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  // Asks the Consumer to stop, and returns at once. Safe from any thread,
  // including from the handler (even from a handler that runs before the
  // constructor has returned). No new delivery is handed to the handler;
  // the ones running finish and are acked or nacked; then the stream is
  // closed, and the server releases whatever the Consumer did not process.
  void Stop();

  // Blocks until the Consumer has stopped: OK after Stop(), or the permanent
  // error that stopped it. Must not be called from the handler.
  absl::Status Wait();

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
