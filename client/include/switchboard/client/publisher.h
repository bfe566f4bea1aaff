// A batching, asynchronous publisher for one topic, in the style of
// google-cloud-cpp's pubsub::Publisher. Publish() returns at once with a
// future; messages are gathered into batches (by count, bytes and delay) and
// sent over one PublishStream, reopened when it breaks.
//
//   Publisher publisher(client, "orders");
//   std::future<absl::StatusOr<std::string>> id = publisher.Publish(message);
//
// Flow control: at most `max_outstanding_messages` / `max_outstanding_bytes`
// are accepted and not yet answered. Past that, Publish() does NOT block: it
// returns a future that is already resolved with RESOURCE_EXHAUSTED, so it is
// safe to call from any callback. (A lone message larger than the byte bound
// is still accepted when nothing else is outstanding.)
//
// Failures are not retried: a batch that fails (a bad topic, or a stream that
// broke) resolves each of its futures with that status.
//
// Threads: Publish() and Flush() are thread-safe. The Publisher owns one
// thread that seals a batch when its delay expires; futures are resolved on
// gRPC callback threads. Messages of one Publisher are sent in Publish()
// order; the server may complete pipelined batches in another order.
#pragma once

#include <cstddef>
#include <future>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client {

struct PublisherOptions {
  // A batch is sent when it holds this many messages...
  std::size_t max_batch_messages = 100;
  // ...or this many bytes (serialized messages)...
  std::size_t max_batch_bytes = 512 * 1024;
  // ...or when its first message has waited this long.
  absl::Duration max_batch_delay = absl::Milliseconds(5);

  // Bounds on messages accepted by Publish() and not yet answered.
  std::size_t max_outstanding_messages = 10000;
  std::size_t max_outstanding_bytes = 64 * 1024 * 1024;
};

class Publisher {
 public:
  Publisher(const Client& client, std::string topic, PublisherOptions options = {});

  // Sends what is batched and waits until every message has its outcome.
  ~Publisher();

  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Queues `message`. The future resolves with its server-assigned id, or
  // with the error that kept it from being published.
  std::future<absl::StatusOr<std::string>> Publish(v1::OutgoingMessage message);

  // Sends the current batch now and blocks until no message is outstanding
  // (including messages other threads publish meanwhile).
  void Flush();

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
