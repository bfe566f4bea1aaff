// An auto-batching, asynchronous publisher for one topic, in the style of
// google-cloud-cpp's pubsub::Publisher. Publish() returns at once with a
// future; messages are sent over one PublishStream, reopened when it breaks.
//
//   Publisher publisher(client, "orders");
//   std::future<absl::StatusOr<std::string>> id = publisher.Publish(message);
//
// Batching needs no timer (as Redis clients auto-pipeline): a message
// published while fewer than `max_in_flight_requests` requests await their
// answers leaves at once, alone; messages published while that many are in
// flight queue, and leave together in one request as soon as an answer
// frees a slot and its futures are resolved (up to `max_batch_messages` /
// `max_batch_bytes` per request). So a lone message never waits, and under
// load requests grow by themselves: threads that publish one message each and
// wait for its id share requests. One request in flight (the default) makes
// the largest requests; more overlap round trips for a publisher that does
// not wait, at the cost of smaller requests.
//
// Flow control: at most `max_outstanding_messages` / `max_outstanding_bytes`
// are accepted and not yet answered (queued or in flight). Past that,
// Publish() does NOT block: it returns a future that is already resolved with
// RESOURCE_EXHAUSTED, so it is safe to call from any callback. (A lone
// message larger than the byte bound is still accepted when nothing else is
// outstanding.)
//
// Retries: a request whose outcome is unknown (its stream broke, the server
// went away, or it timed out: CANCELLED, UNAVAILABLE, DEADLINE_EXCEEDED) is
// sent again, first, on a new stream, until each message went out
// `max_attempts` times. Every message without a dedup_id gets one (this
// publisher's random prefix and a sequence number), so a retry of a message
// the server had stored is answered with the first id and stored once (within
// the topic's dedup window). Any other failure (a bad topic, a limit) is the
// server's answer and resolves the request's futures with it; what is still
// queued goes on.
//
// Threads: Publish() and Flush() are thread-safe and never wait for the
// server. The Publisher has no thread of its own: requests leave from the
// thread that calls Publish() or from the gRPC callback thread that received
// an answer, and futures are resolved (callbacks run) on gRPC callback
// threads. A worker that publishes from many threads, each waiting for its
// future, pays a thread wake-up per message; callbacks do not. Requests
// leave in Publish() order, so with one request in flight ids increase in
// Publish() order; with more, the server may complete them in another order.
#pragma once

#include <cstddef>
#include <future>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client {

struct PublisherOptions {
  // Requests sent and not yet answered; a message published while this many
  // are in flight waits for the next request. 0 counts as 1. (`sbctl bench
  // publisher`, 50 threads, Redis backend, a loaded 2-core machine: about
  // 70,000 msgs/s at 1 against 57,000 at 2 and 55,000 at 4.)
  std::size_t max_in_flight_requests = 1;

  // Bounds on one request: this many messages (0 counts as 1), and this many
  // bytes (serialized messages; a single larger message goes alone).
  std::size_t max_batch_messages = 100;
  std::size_t max_batch_bytes = 512 * 1024;

  // How many times a message may go out when the outcome of its request is
  // unknown (see Retries above); 1: never again, and no dedup ids assigned.
  int max_attempts = 3;

  // Bounds on messages accepted by Publish() and not yet answered.
  std::size_t max_outstanding_messages = 10000;
  std::size_t max_outstanding_bytes = 64 * 1024 * 1024;
};

class Publisher {
 public:
  Publisher(const Client& client, std::string topic, PublisherOptions options = {});

  // Waits until every message has its outcome (as Flush()), then closes the
  // stream.
  ~Publisher();

  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Queues `message`, or sends it at once when a request slot is free. The
  // future resolves with its server-assigned id, or with the error that kept
  // it from being published.
  std::future<absl::StatusOr<std::string>> Publish(v1::OutgoingMessage message);

  // The same, for a caller that waits without a thread: `done` gets the id
  // or the error, once, on a gRPC callback thread (or on this thread, before
  // Publish returns, when flow control refuses the message). It must not
  // block; it may Publish again.
  using PublishCallback = absl::AnyInvocable<void(absl::StatusOr<std::string>) &&>;
  void Publish(v1::OutgoingMessage message, PublishCallback done);

  // Blocks until no message is outstanding (including messages other threads
  // publish meanwhile). Nothing needs sending: queued messages already leave
  // as answers come.
  void Flush();

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
