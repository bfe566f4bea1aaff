#include "server/app/metrics_endpoint.h"

#include <iterator>
#include <utility>
#include <vector>

#include "prometheus/text_serializer.h"
#include "server/config/listen_address.h"

namespace switchboard::app {

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    event::DispatcherImpl& dispatcher, Options options,
    std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<config::HostPort> address = config::ParseHostPort(options.listen);
  if (!address.ok()) return address.status();
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint());
  endpoint->gauges_ = http::HttpServerGauges::ForMetricsEndpoint(*registry);
  http::HttpServer::Options server_options;
  server_options.host = address->host;
  server_options.port = address->port;
  server_options.max_connections = options.max_connections;
  server_options.request_timeout = options.request_timeout;
  server_options.max_head_bytes = options.max_request_bytes;
  // The registry's families, then the collectables', serialized on the
  // dispatcher thread at each scrape.
  auto serve = [registry = std::move(registry), collectables = std::move(options.collectables)](
                   http::HttpRequest request, http::Responder responder) {
    http::HttpResponse response;
    if (request.method != "GET") {
      response.status = 405;
      response.body = "only GET\n";
    } else if (request.path != "/metrics") {
      response.status = 404;
      response.body = "only /metrics is served\n";
    } else {
      std::vector<prometheus::MetricFamily> families = registry->Collect();
      for (const std::shared_ptr<prometheus::Collectable>& collectable : collectables) {
        std::vector<prometheus::MetricFamily> more = collectable->Collect();
        families.insert(families.end(), std::make_move_iterator(more.begin()),
                        std::make_move_iterator(more.end()));
      }
      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      response.body = prometheus::TextSerializer().Serialize(families);
    }
    responder.Send(std::move(response));
  };
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Start(
      dispatcher, std::move(server_options), std::move(serve), *endpoint->gauges_);
  if (!server.ok()) return server.status();
  endpoint->server_ = *std::move(server);
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() = default;

}  // namespace switchboard::app
