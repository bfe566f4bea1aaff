// What a Prometheus registry (or another Collectable) exports, read back for
// the metrics tests: the series of a family, their labels, a gauge's value.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace switchboard::metrics::testing {

// The collected series of `family`.
inline std::vector<prometheus::ClientMetric> Collect(const prometheus::Collectable& registry,
                                                     const std::string& family) {
  for (const prometheus::MetricFamily& collected : registry.Collect()) {
    if (collected.name == family) return collected.metric;
  }
  return {};
}

inline std::map<std::string, std::string> Labels(const prometheus::ClientMetric& metric) {
  std::map<std::string, std::string> labels;
  for (const prometheus::ClientMetric::Label& label : metric.label) {
    labels[label.name] = label.value;
  }
  return labels;
}

// The gauge of `family` with exactly `labels`, if exported.
inline std::optional<double> Gauge(const prometheus::Registry& registry, const std::string& family,
                                   const std::map<std::string, std::string>& labels) {
  for (const prometheus::ClientMetric& metric : Collect(registry, family)) {
    if (Labels(metric) == labels) return metric.gauge.value;
  }
  return std::nullopt;
}

}  // namespace switchboard::metrics::testing
