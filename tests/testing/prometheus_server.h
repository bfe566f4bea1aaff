// A real Prometheus server (Debian's `prometheus`) for integration tests: it
// scrapes one target every second, on a loopback port picked at run time,
// with its data in a temporary directory that the destructor removes along
// with the process. Query() asks its HTTP API for an instant vector, as a
// dashboard or an alert would.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {

class PrometheusServer {
 public:
  // Starts Prometheus with one scrape job, `job`, on 127.0.0.1:`target_port`
  // (path /metrics), and waits until its HTTP API answers. Its own port is
  // picked; a Prometheus that could not bind it (taken since it was picked)
  // is started again on another (StartOnPickedPorts).
  static absl::StatusOr<std::unique_ptr<PrometheusServer>> Start(absl::string_view job,
                                                                 int target_port);

  ~PrometheusServer();

  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  // The value of the instant query `expr` (PromQL) now: its first series'
  // value. NOT_FOUND when the result is empty (no such series yet).
  absl::StatusOr<double> Query(absl::string_view expr) const;

  // What Prometheus logged so far.
  std::string log() const { return process_->stderr_text(); }

 private:
  PrometheusServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}

  // Writes the configuration, starts Prometheus and waits until it answers.
  absl::Status Launch(absl::string_view job, int target_port);

  const std::string dir_;
  const int port_;
  std::optional<Subprocess> process_;
};

}  // namespace switchboard::testing
