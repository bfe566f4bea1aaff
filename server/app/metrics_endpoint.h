// MetricsEndpoint: serves `GET /metrics` (the Prometheus text format) on a
// dispatcher of its own (DESIGN.md §5).
//
// On an http::HttpServer, so an idle or a slowloris connection costs a
// socket and a few kilobytes, never a thread: scrapes go on whatever other
// connections do. Every connection has one deadline from its accept
// (`request_timeout`, whatever it sends meanwhile) and at most
// `max_request_bytes` of request head; the server answers one request per
// connection, then closes it. Beyond `max_connections` open connections a
// new one is closed at once and counted. Exports `switchboard_metrics_connections` (open) and
// `switchboard_metrics_connections_refused_total` into the registry it
// serves.
//
// Threading: Start() and the destructor from any thread but the
// dispatcher's (they wait for it); everything else runs on the dispatcher,
// which must outlive the endpoint.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "prometheus/collectable.h"
#include "prometheus/registry.h"
#include "server/event/dispatcher_impl.h"
#include "server/http/http_server.h"
#include "server/http/http_server_metrics.h"

namespace switchboard::app {

class MetricsEndpoint {
 public:
  struct Options {
    std::string listen;  // host:port; port 0 picks one.
    size_t max_connections = 512;
    absl::Duration request_timeout = absl::Seconds(5);
    size_t max_request_bytes = 8192;
    // Served after the registry's families, each collected at every scrape
    // on the dispatcher thread (the process metrics).
    std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
  };

  // Listens on `options.listen` and serves `registry` (and
  // `options.collectables`). UNAVAILABLE when it cannot listen.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      event::DispatcherImpl& dispatcher, Options options,
      std::shared_ptr<prometheus::Registry> registry);

  // Stops listening and closes every connection.
  ~MetricsEndpoint();

  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The port it listens on.
  int port() const { return server_->port(); }

 private:
  MetricsEndpoint() = default;

  std::unique_ptr<http::HttpServerGauges> gauges_;
  std::unique_ptr<http::HttpServer> server_;  // Destroyed first: it reports to gauges_.
};

}  // namespace switchboard::app
