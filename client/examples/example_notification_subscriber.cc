// example_notification_subscriber: the dedicated subscriber of seed 003's
// scene. It subscribes to an ephemeral topic (fan-out: every subscriber gets
// every message published while it is subscribed) and prints each
// notification's payload on stdout, one per line.
//
// The library's Subscriber is one stream and does not reconnect: when the
// stream ends (a Switchboard restart or drain, an overflow disconnect) this
// worker subscribes again after a jittered exponential backoff, which starts
// over once a subscription is live. Delivery is at-most-once: what is
// published while no subscription is live is not received, and the server
// reports what a slow subscriber lost to its buffer's overflow policy; both
// are counted.
//
// Runs until SIGTERM or SIGINT, or until it received --count messages; then
// prints a summary line on stdout and exits 0. Exits 1 when the server
// refuses the subscription for good (a durable topic, a topic it may not
// read, ...). Progress ("subscribed to ...", reconnects) goes to stderr.
#include <atomic>
#include <cstdint>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "switchboard/client/client.h"
#include "switchboard/client/subscriber.h"
#include "worker.h"

ABSL_FLAG(std::string, topic, "notifications",
          "The ephemeral topic, or a topic prefix ending in '*' (e.g. notifications.*).");
ABSL_FLAG(int64_t, count, 0, "Exit after this many messages; 0: until SIGTERM or SIGINT.");
ABSL_FLAG(absl::Duration, max_backoff, absl::Seconds(5),
          "The longest pause before subscribing again after a stream ended.");

namespace switchboard::examples {
namespace {

constexpr char kUsage[] = R"(prints the notifications of an ephemeral topic, one per line.

  example_notification_subscriber [--server=HOST:PORT] [--token=T]
                                  [--topic=notifications] [--count=N]

Subscribes again, with backoff, whenever the stream ends. Prints a summary
line on stdout when it stops:
  summary: received=N lost=L subscriptions=S stopped_by=REASON)";

// How long to wait for the server to confirm a subscription before treating
// the attempt as failed.
constexpr absl::Duration kLiveTimeout = absl::Seconds(10);

int Run() {
  Shutdown shutdown;
  client::Client client(ClientOptionsFromFlags());
  const std::string topic = absl::GetFlag(FLAGS_topic);
  const int64_t count = absl::GetFlag(FLAGS_count);

  std::atomic<int64_t> received{0};
  std::atomic<int64_t> lost{0};
  // One message at a time, on a gRPC thread: keep it quick, or the stream's
  // server-side buffer fills and its overflow policy drops messages.
  const client::Subscriber::Handler print = [&](const v1::SubscribeResponse& response) {
    if (response.dropped_since_last() > 0) {
      lost += static_cast<int64_t>(response.dropped_since_last());
      std::cerr << "notification_subscriber: the server dropped " << response.dropped_since_last()
                << " messages this subscriber was too slow for" << std::endl;
    }
    std::cout << response.message().payload() << std::endl;
    if (++received == count) shutdown.Request("count");
  };

  common::Backoff backoff(RetryBackoff(absl::Milliseconds(100), absl::GetFlag(FLAGS_max_backoff)));
  absl::BitGen random;
  int subscriptions = 0;
  absl::Status failure;
  while (!shutdown.requested()) {
    client::Subscriber subscriber(client, topic, print);
    const StopOnShutdown stop_subscriber(shutdown, [&subscriber] { subscriber.Stop(); });
    if (subscriber.WaitUntilLive(kLiveTimeout).ok()) {
      ++subscriptions;
      backoff.Reset();
      std::cerr << "notification_subscriber: subscribed to " << topic << std::endl;
    }
    const absl::Status ended = subscriber.Wait();
    if (shutdown.requested()) break;
    if (IsPermanentFailure(ended)) {
      failure = ended;
      break;
    }
    const absl::Duration delay = absl::Trunc(backoff.Next(random), absl::Milliseconds(1));
    std::cerr << "notification_subscriber: the subscription ended (" << ended
              << "); subscribing again in " << absl::FormatDuration(delay) << std::endl;
    shutdown.WaitFor(delay);
  }

  std::cout << "summary: received=" << received << " lost=" << lost
            << " subscriptions=" << subscriptions
            << " stopped_by=" << (failure.ok() ? shutdown.reason() : "error") << std::endl;
  if (!failure.ok()) {
    std::cerr << "notification_subscriber: the server refused the subscription to " << topic << ": "
              << failure << std::endl;
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace
}  // namespace switchboard::examples

int main(int argc, char** argv) {
  switchboard::examples::ParseWorkerFlags(argc, argv, switchboard::examples::kUsage);
  return switchboard::examples::Run();
}
