// `sbctl bench`: the load generator that users and tests/perf share. Every
// mode prints progress on stderr once a second and, as the LAST line on
// stdout, one JSON object:
//   {"mode":"publish", ..., "msgs":N, "msgs_per_sec":X, "p50_us":P, "p99_us":Q,
//    "max_us":M, "errors":{"UNAVAILABLE":3}}
// (the call mode counts "calls" and "calls_per_sec" instead). `errors` counts
// failed requests (publish, call), failed messages (publisher) or ended
// streams (consume) by status code; it is {} on a clean run. Only what
// completes within the measured interval counts. Concurrency is bounded: each
// stream keeps a fixed window of requests (publish) or credits (consume) in
// flight, each publishing thread one message (publisher), and the call mode
// keeps a fixed number of calls in flight; the latency mode, and the call
// mode with a rate, instead send at a fixed rate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "switchboard/client/client.h"

namespace switchboard::sbctl {

struct PublishBenchOptions {
  std::string topic;
  int streams = 8;  // PublishStream RPCs, all on the one channel.
  int window = 16;  // Requests in flight per stream.
  int batch = 1;    // Messages per request.
  int size = 100;   // Payload bytes per message.
  absl::Duration duration = absl::Seconds(10);
};

// Publishes for `duration`. Latency is one request's round trip: from Send()
// to its acknowledgement (so it includes waiting behind the stream's window).
int BenchPublish(const client::Client& client, const PublishBenchOptions& options);

struct PublisherBenchOptions {
  std::string topic;
  int publishers = 50;  // Sharing one client::Publisher.
  // Each publisher a chain of callbacks (Publish with a callback that
  // publishes the next message) rather than a thread waiting on futures.
  bool callbacks = false;
  int size = 100;  // Payload bytes per message.
  // The Publisher's max_in_flight_requests; 0 keeps its default.
  std::size_t max_in_flight_requests = 0;
  // The Publisher's max_attempts (1: no retries, so no dedup ids); 0 keeps
  // its default.
  int max_attempts = 0;
  absl::Duration duration = absl::Seconds(10);
};

// Publishes for `duration` as a worker process does: `publishers` share one
// client::Publisher (auto-batching, its default options), and each
// publishes one message per call and waits for its id before the next, as
// an unpipelined Redis client waits for its reply: a thread each, waiting on
// the future, or with `callbacks` a callback each, publishing the next
// message when its id arrives (as redis-benchmark's clients share one event
// loop). Latency is one message's Publish() to its id. The JSON adds
// `publishers`, `callbacks`, `max_in_flight_requests` and `max_attempts`.
int BenchPublisher(const client::Client& client, const PublisherBenchOptions& options);

struct ConsumeBenchOptions {
  std::string topic;
  std::string group;
  int streams = 8;               // Consume RPCs in the group.
  uint32_t max_in_flight = 100;  // Credits per stream.
  int64_t messages = 100000;     // Published before the clock starts; 0: consume the backlog.
  int size = 100;                // Payload bytes of the pre-published messages.
  int keys = 0;                  // Ordering keys of the pre-published messages; 0: none.
  absl::Duration duration = absl::Seconds(10);
};

// Pre-publishes `messages` (untimed), then consumes and acks until all of
// them are consumed or `duration` passes. Latency is the ack round trip: from
// queueing the acks that return a stream's credits to the next delivery
// batch on that stream.
int BenchConsume(const client::Client& client, const ConsumeBenchOptions& options);

struct LatencyBenchOptions {
  std::string topic;
  // Non-empty: receive with one Consume stream in this group (a durable
  // topic), acking each delivery at once. Empty: one Subscribe stream (an
  // ephemeral topic).
  std::string group;
  double rate = 1000;            // Messages per second, one per request.
  int size = 100;                // Payload bytes per message.
  uint32_t max_in_flight = 100;  // Credits of the Consume stream.
  absl::Duration duration = absl::Seconds(10);
};

// End-to-end latency at a steady load: publishes on one PublishStream at
// `rate`, open loop (the schedule never waits for answers or deliveries),
// each message stamped with its send time in an attribute, and receives them
// in the same process. Latency is from Send() to the receive handler. Before
// the clock starts it publishes unstamped warm-up messages until one arrives
// (the subscription or group is live); after `duration` it waits a few
// seconds at most for the stragglers. The JSON adds `published` (publishes
// acknowledged); `msgs` counts stamped messages received, and
// `msgs_per_sec` is that over the publishing interval.
int BenchLatency(const client::Client& client, const LatencyBenchOptions& options);

struct CallBenchOptions {
  std::string upstream;
  std::string method;
  // The params of every call. Empty: call i sends `[i]`, so that no two
  // calls in flight are identical; the server coalesces identical calls into
  // one upstream request, which would measure the coalescer, not the proxy.
  std::string params_json;
  int concurrency = 16;  // Calls in flight (closed loop).
  // Multiplex every call on one CallStream instead of making unary Calls.
  bool stream = false;
  // Above 0: open loop instead, starting this many calls per second whatever
  // the answers (how many are in flight follows).
  double rate = 0;
  absl::Duration duration = absl::Seconds(10);
};

// JSON-RPC calls through the Rpc service for `duration`, each a unary Call
// made with the stub's callback API (no thread per call), or with `stream`
// all multiplexed on one CallStream (as a busy worker would make them), timed
// from its start to its answer. Closed loop: `concurrency` callers, each
// starting its next call when its last one is answered. A call answered with
// a JSON-RPC error object counts as an error under JSON_RPC_ERROR, not as a
// call. The JSON adds `upstream`, `method`, `params` ("counter" or "fixed"),
// `transport` ("unary" or "stream"), `concurrency` (0 with a rate) and
// `rate` (0 without).
int BenchCall(const client::Client& client, const CallBenchOptions& options);

}  // namespace switchboard::sbctl
