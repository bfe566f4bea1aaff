#include "server/http/http_server_metrics.h"

#include "prometheus/family.h"

namespace switchboard::http {

// The family names are literals, so that tests/deploy finds every family the
// server registers by reading the sources.

std::unique_ptr<HttpServerGauges> HttpServerGauges::ForMetricsEndpoint(
    prometheus::Registry& registry) {
  return std::unique_ptr<HttpServerGauges>(new HttpServerGauges(
      prometheus::BuildGauge()
          .Name("switchboard_metrics_connections")
          .Help("Open connections to the metrics endpoint.")
          .Register(registry)
          .Add({}),
      prometheus::BuildCounter()
          .Name("switchboard_metrics_connections_refused_total")
          .Help("Connections to the metrics endpoint closed at once because max_connections "
                "were open.")
          .Register(registry)
          .Add({})));
}

std::unique_ptr<HttpServerGauges> HttpServerGauges::ForJsonRpcFrontDoor(
    prometheus::Registry& registry) {
  return std::unique_ptr<HttpServerGauges>(new HttpServerGauges(
      prometheus::BuildGauge()
          .Name("switchboard_json_rpc_http_connections")
          .Help("Open connections to the JSON-RPC front door.")
          .Register(registry)
          .Add({}),
      prometheus::BuildCounter()
          .Name("switchboard_json_rpc_http_connections_refused_total")
          .Help("Connections to the JSON-RPC front door closed at once because "
                "server.json_rpc_http.max_connections were open.")
          .Register(registry)
          .Add({})));
}

std::unique_ptr<HttpServerGauges> HttpServerGauges::ForJsonRpcWebSockets(
    prometheus::Registry& registry) {
  return std::unique_ptr<HttpServerGauges>(new HttpServerGauges(
      prometheus::BuildGauge()
          .Name("switchboard_json_rpc_websockets")
          .Help("Open WebSocket connections to the JSON-RPC front door.")
          .Register(registry)
          .Add({}),
      prometheus::BuildCounter()
          .Name("switchboard_json_rpc_websockets_refused_total")
          .Help("WebSocket upgrades of the JSON-RPC front door answered 503 because "
                "server.json_rpc_http.max_websockets were open.")
          .Register(registry)
          .Add({})));
}

}  // namespace switchboard::http
