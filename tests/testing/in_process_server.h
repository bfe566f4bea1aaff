// Starts a real Switchboard server inside the test process, on loopback
// ports picked at run time, from a YAML configuration. Used by the
// integration tests that speak gRPC to it with generated stubs or the client
// library. HttpGet() and ScrapeMetric() read the metrics endpoint of any
// server, in-process or a child process.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/app/server.h"

namespace switchboard::testing {

struct InProcessServer {
  std::unique_ptr<app::Server> server;
  std::string target;  // "127.0.0.1:<port>" for grpc::CreateChannel.
  int metrics_port = 0;
};

// Parses `yaml` (server.listen and server.metrics_listen are forced to
// 127.0.0.1:0) and starts the server.
absl::StatusOr<InProcessServer> StartInProcessServer(absl::string_view yaml = "");

// A TCP connection to 127.0.0.1:`port` (blocking), or -1.
int ConnectToLoopback(int port);

// GETs http://127.0.0.1:`port``path` and returns the body.
absl::StatusOr<std::string> HttpGet(int port, absl::string_view path);

// The value of one series of the Prometheus page /metrics on `port`, named
// as the page writes it: `switchboard_acks_total{topic="jobs"}` (labels in
// alphabetical order). NOT_FOUND when the page has no such series.
absl::StatusOr<double> ScrapeMetric(int port, absl::string_view series);

// Scrapes `series` from the metrics page on `port` until it equals `value`
// or `timeout` passes; returns the last value scraped.
absl::StatusOr<double> PollMetric(int port, absl::string_view series, double value,
                                  absl::Duration timeout);

}  // namespace switchboard::testing
