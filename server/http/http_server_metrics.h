// HttpServerGauges: an HttpServer's connections as Prometheus series, one
// pair per endpoint: `<endpoint>_connections` (open) and
// `<endpoint>_connections_refused_total` (closed at once because
// max_connections were open).
#pragma once

#include <memory>

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/http/http_server.h"

namespace switchboard::http {

class HttpServerGauges final : public HttpServerObserver {
 public:
  // switchboard_metrics_connections{,_refused_total}.
  static std::unique_ptr<HttpServerGauges> ForMetricsEndpoint(prometheus::Registry& registry);
  // switchboard_json_rpc_http_connections{,_refused_total}.
  static std::unique_ptr<HttpServerGauges> ForJsonRpcFrontDoor(prometheus::Registry& registry);
  // switchboard_json_rpc_websockets{,_refused_total}.
  static std::unique_ptr<HttpServerGauges> ForJsonRpcWebSockets(prometheus::Registry& registry);

  void OnOpened() override { open_.Increment(); }
  void OnClosed() override { open_.Decrement(); }
  void OnRefused() override { refused_.Increment(); }

 private:
  HttpServerGauges(prometheus::Gauge& open, prometheus::Counter& refused)
      : open_(open), refused_(refused) {}

  prometheus::Gauge& open_;
  prometheus::Counter& refused_;
};

}  // namespace switchboard::http
