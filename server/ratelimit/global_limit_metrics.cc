#include "server/ratelimit/global_limit_metrics.h"

#include <map>
#include <string>

namespace switchboard::ratelimit {

GlobalLimitMetrics::GlobalLimitMetrics(metrics::Metrics& metrics)
    : round_trips_(metrics::AddCounter(
          *metrics.registry(), "switchboard_global_limit_lease_round_trips_total",
          "Round trips to Redis to lease tokens of a global limit, per kind (upstream, client), "
          "name and outcome (ok, error).")),
      tokens_leased_(
          metrics::AddCounter(*metrics.registry(), "switchboard_global_limit_tokens_leased_total",
                              "Tokens (cost units) of a global limit leased by this replica.")),
      tokens_returned_(metrics::AddCounter(
          *metrics.registry(), "switchboard_global_limit_tokens_returned_total",
          "Leased tokens of a global limit given back unused (expired, or voided by a provider "
          "pause).")),
      fallback_(metrics::AddGauge(*metrics.registry(), "switchboard_global_limit_fallback",
                                  "1 while a global limit runs on this replica's fallback share "
                                  "(Redis unreachable or slow), else 0.")) {}

void GlobalLimitMetrics::OnLeaseRoundTrip(absl::string_view kind, absl::string_view name, bool ok,
                                          uint32_t tokens) {
  const std::map<std::string, std::string> labels{{"kind", std::string(kind)},
                                                  {"name", std::string(name)}};
  std::map<std::string, std::string> with_outcome = labels;
  with_outcome["outcome"] = ok ? "ok" : "error";
  round_trips_.Add(with_outcome).Increment();
  if (tokens > 0) tokens_leased_.Add(labels).Increment(tokens);
}

void GlobalLimitMetrics::OnTokensReturned(absl::string_view kind, absl::string_view name,
                                          uint32_t tokens) {
  tokens_returned_.Add({{"kind", std::string(kind)}, {"name", std::string(name)}})
      .Increment(tokens);
}

void GlobalLimitMetrics::OnFallback(absl::string_view kind, absl::string_view name, bool fallback) {
  fallback_.Add({{"kind", std::string(kind)}, {"name", std::string(name)}}).Set(fallback ? 1 : 0);
}

}  // namespace switchboard::ratelimit
