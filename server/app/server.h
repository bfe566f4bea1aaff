// The assembled Switchboard server: every component built from a Config,
// started in dependency order and stopped in reverse (DESIGN.md §3).
//
// Owned by main (and by integration tests, which run it in-process on ports
// picked at run time). This is the only place that names backend
// implementations. Thread-safe: Shutdown() may be called from any thread,
// once or more.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/config/config.h"

namespace switchboard::app {

class Server {
 public:
  // Builds and starts everything. Fails with INVALID_ARGUMENT when the
  // configuration names something this build cannot serve, and UNAVAILABLE
  // when a listen address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const config::Config& config);

  virtual ~Server() = default;

  // The bound ports (useful when the configuration asked for port 0).
  virtual int grpc_port() const = 0;
  virtual int metrics_port() const = 0;
  // 0 when server.json_rpc_listen is empty.
  virtual int json_rpc_port() const = 0;

  // Graceful drain, in order: health goes NOT_SERVING and new streams are
  // refused; open streams end (consumers' leases are released, subscribers
  // get UNAVAILABLE); in-flight unary calls finish within the drain budget;
  // pending publishes complete; connections close. Idempotent.
  virtual void Shutdown() = 0;
};

}  // namespace switchboard::app
