#include <cstddef>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench.h"
#include "bench_tally.h"
#include "switchboard/client/publisher.h"

namespace switchboard::sbctl {

namespace {

// One publisher of --callbacks: publishes a message, and the next from the
// callback that gets its id, until `end`.
class PublishChain {
 public:
  PublishChain(client::Publisher& publisher, const v1::OutgoingMessage& message, Tally& tally,
               absl::Time end)
      : publisher_(publisher), message_(message), tally_(tally), end_(end) {}

  void PublishNext() {
    const absl::Time sent_at = absl::Now();
    publisher_.Publish(message_, [this, sent_at](absl::StatusOr<std::string> id) {
      const absl::Time now = absl::Now();
      if (id.ok()) {
        tally_.AddMessages(1);
        tally_.AddLatency(now - sent_at);
      } else {
        tally_.AddError(id.status());
      }
      if (now < end_) PublishNext();
    });
  }

 private:
  client::Publisher& publisher_;
  const v1::OutgoingMessage& message_;
  Tally& tally_;
  const absl::Time end_;
};

}  // namespace

int BenchPublisher(const client::Client& client, const PublisherBenchOptions& options) {
  client::PublisherOptions publisher_options;
  if (options.max_in_flight_requests > 0) {
    publisher_options.max_in_flight_requests = options.max_in_flight_requests;
  }
  if (options.max_attempts > 0) publisher_options.max_attempts = options.max_attempts;
  Tally tally(/*target=*/0);
  const absl::Time start = absl::Now();
  const absl::Time end = start + options.duration;
  absl::Duration elapsed;
  v1::OutgoingMessage message;
  message.set_payload(std::string(options.size, 'x'));
  // Before the Publisher: its destructor waits for the last callbacks.
  std::vector<std::unique_ptr<PublishChain>> chains;
  {
    client::Publisher publisher(client, options.topic, publisher_options);
    std::vector<std::thread> publishers;
    for (int i = 0; i < options.publishers; ++i) {
      if (options.callbacks) {
        chains.push_back(std::make_unique<PublishChain>(publisher, message, tally, end));
        chains.back()->PublishNext();
        continue;
      }
      publishers.emplace_back([&] {
        for (absl::Time sent_at = start; sent_at < end; sent_at = absl::Now()) {
          absl::StatusOr<std::string> id = publisher.Publish(message).get();
          if (id.ok()) {
            tally.AddMessages(1);
            tally.AddLatency(absl::Now() - sent_at);
          } else {
            tally.AddError(id.status());
          }
        }
      });
    }
    RunClock(tally, start, options.duration);
    tally.Stop();
    elapsed = absl::Now() - start;
    for (std::thread& thread : publishers) thread.join();
  }
  std::cout << tally.Json(absl::StrFormat("\"mode\":\"publisher\",\"publishers\":%d,"
                                          "\"callbacks\":%s,\"max_in_flight_requests\":%d,"
                                          "\"max_attempts\":%d,\"size\":%d",
                                          options.publishers, options.callbacks ? "true" : "false",
                                          publisher_options.max_in_flight_requests,
                                          publisher_options.max_attempts, options.size),
                          elapsed)
            << std::endl;
  return 0;
}

}  // namespace switchboard::sbctl
