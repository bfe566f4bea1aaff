// The process' own metrics, in the names every Prometheus client library
// uses (so standard dashboards and alerts work): `process_cpu_seconds_total`,
// `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds` and
// `process_start_time_seconds`, read from /proc/self when scraped; and
// `switchboard_build_info{version}`, a constant 1.
//
// Debian's prometheus-cpp (1.0) has no process collector, hence this one.
// ProcessCollector is owned by the wiring (server/app), which hands it to the
// metrics endpoint beside the registry; the endpoint calls Collect() on its
// own thread at every scrape. Stateless after construction, so thread-safe.
// On a system without /proc, the families it cannot read are left out.
#pragma once

#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace switchboard::metrics {

class ProcessCollector final : public prometheus::Collectable {
 public:
  // Reads the process' start time (it never changes).
  ProcessCollector();

  // The process families as of now.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  double start_time_seconds_ = 0;  // 0 when /proc could not say.
};

// Registers `switchboard_build_info{version=<version>}` = 1 in `registry`.
void ExportBuildInfo(prometheus::Registry& registry, const std::string& version);

}  // namespace switchboard::metrics
