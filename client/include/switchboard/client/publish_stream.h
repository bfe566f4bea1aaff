// One PublishStream RPC: pipelined publishing, where every request is
// acknowledged by its own response. The low layer under `Publisher`, and what
// `sbctl bench publish` drives directly (a fixed window of requests per
// stream).
//
//   PublishStream stream(client);
//   absl::Status queued = stream.Send("orders", {message}, [](auto ids) { ... });
//   stream.Close();   // waits for every answer
//
// Threads: Send() and Close() may be called from any thread, including from
// inside a `done` callback. Each `done` callback runs exactly once, on a gRPC
// callback thread, never inline in Send(); callbacks of one stream run one at
// a time and should return quickly (the next response is read after).
//
// No retries: a request whose stream breaks before its answer fails with the
// stream's status (UNAVAILABLE...), and the caller decides whether to publish
// again; the message may or may not have been stored.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client {

class PublishStream {
 public:
  // The message ids in request order, or why nothing was published.
  using DoneCallback = std::function<void(absl::StatusOr<std::vector<std::string>>)>;

  // Opens the stream; it connects in the background.
  explicit PublishStream(const Client& client);

  // Cancels the stream unless Close() already ended it, then waits until
  // every callback has returned.
  ~PublishStream();

  PublishStream(const PublishStream&) = delete;
  PublishStream& operator=(const PublishStream&) = delete;

  // Queues one request and takes `messages` and `done`. Returns an error, and
  // leaves both untouched, when the stream has ended or Close() was called:
  // open a new stream and send them there.
  absl::Status Send(const std::string& topic, std::vector<v1::OutgoingMessage>&& messages,
                    DoneCallback&& done);

  // Half-closes after the queued requests and waits until the server has
  // answered them and ended the stream (at most ClientOptions::rpc_timeout,
  // then the stream is cancelled). Returns the stream's final status.
  absl::Status Close();

 private:
  class Impl;
  const std::unique_ptr<Impl> impl_;
};

}  // namespace switchboard::client
