#include <cstddef>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench.h"
#include "bench_tally.h"
#include "switchboard/client/publisher.h"

namespace switchboard::sbctl {

int BenchPublisher(const client::Client& client, const PublisherBenchOptions& options) {
  client::PublisherOptions publisher_options;
  if (options.max_in_flight_requests > 0) {
    publisher_options.max_in_flight_requests = options.max_in_flight_requests;
  }
  Tally tally(/*target=*/0);
  const absl::Time start = absl::Now();
  const absl::Time end = start + options.duration;
  absl::Duration elapsed;
  {
    client::Publisher publisher(client, options.topic, publisher_options);
    v1::OutgoingMessage message;
    message.set_payload(std::string(options.size, 'x'));
    std::vector<std::thread> publishers;
    for (int i = 0; i < options.publishers; ++i) {
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
                                          "\"max_in_flight_requests\":%d,\"size\":%d",
                                          options.publishers,
                                          publisher_options.max_in_flight_requests, options.size),
                          elapsed)
            << std::endl;
  return 0;
}

}  // namespace switchboard::sbctl
