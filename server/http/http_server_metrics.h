// HttpServerGauges: an HttpServer's connections as Prometheus series,
// `<prefix>_connections` (open) and `<prefix>_connections_refused_total`
// (closed at once because max_connections were open).
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "server/http/http_server.h"

namespace switchboard::http {

class HttpServerGauges final : public HttpServerObserver {
 public:
  // `what` names the endpoint in the help texts ("the metrics endpoint").
  HttpServerGauges(prometheus::Registry& registry, absl::string_view prefix,
                   absl::string_view what);

  void OnOpened() override { open_.Increment(); }
  void OnClosed() override { open_.Decrement(); }
  void OnRefused() override { refused_.Increment(); }

 private:
  prometheus::Gauge& open_;
  prometheus::Counter& refused_;
};

}  // namespace switchboard::http
