#include "tests/integration/fleet/fleet_harness.h"

#include <algorithm>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/substitute.h"

namespace switchboard::testing {

// The configuration of one replica: broker on database `db` of `redis`,
// the fleet's coordination at its defaults, and upstream `provider` at `url`
// with the global limit. LoadTestConfigYaml's upstream, plus `scope`.
std::string ReplicaConfigYaml(const RedisServer& redis, int db, absl::string_view url) {
  const std::string fleet =
      absl::Substitute("{heartbeat_ms: $0, replica_ttl_ms: $1, lease_ms: $2, redis_timeout_ms: $3}",
                       kHeartbeatMs, kReplicaTtlMs, kLeaseMs, kRedisTimeoutMs);
  return absl::Substitute(R"(
broker:
  url: "$0/$1"
fleet: $2
upstreams:
  - name: $3
    urls: ["$4"]
    max_connections: $5
    rate_limit: {requests_per_second: $6, burst: $7, scope: global}
    coalescing: {enabled: false}
)",
                          redis.url(), db, fleet, kUpstream, url, kMaxConnections, kSwitchboardRate,
                          kSwitchboardBurst);
}

// The value of a counter on `port`; 0 while it is absent (not yet counted).
double CounterValue(int port, absl::string_view series) {
  absl::StatusOr<double> value = ScrapeMetric(port, series);
  return value.ok() ? *value : 0;
}

// `log`'s entries answered in [from, to), in time order (nginx writes a line
// once the request is done, which is not always in answer order).
std::vector<AccessLogEntry> SortedEntries(const AccessLog& log, absl::Time from, absl::Time to) {
  std::vector<AccessLogEntry> entries = EntriesIn(log, from, to);
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const AccessLogEntry& a, const AccessLogEntry& b) { return a.time < b.time; });
  return entries;
}

int CountStatus(const std::vector<AccessLogEntry>& entries, int status) {
  return static_cast<int>(
      std::count_if(entries.begin(), entries.end(),
                    [status](const auto& entry) { return entry.status == status; }));
}

// The requests answered in each whole second [from + k s, from + (k + 1) s)
// that ends by `to`.
std::vector<int> PerSecondTotals(const std::vector<AccessLogEntry>& entries, absl::Time from,
                                 absl::Time to) {
  std::vector<int> totals;
  for (absl::Time second = from; second + absl::Seconds(1) <= to; second += absl::Seconds(1)) {
    totals.push_back(static_cast<int>(
        std::count_if(entries.begin(), entries.end(), [second](const AccessLogEntry& entry) {
          return entry.time >= second && entry.time < second + absl::Seconds(1);
        })));
  }
  return totals;
}

// The most requests answered in any window of `width`: one starting at each
// request of `sorted` (in time order).
int BusiestWindow(const std::vector<AccessLogEntry>& sorted, absl::Duration width) {
  int busiest = 0;
  size_t end = 0;
  for (size_t begin = 0; begin < sorted.size(); ++begin) {
    end = std::max(end, begin);
    while (end < sorted.size() && sorted[end].time < sorted[begin].time + width) ++end;
    busiest = std::max(busiest, static_cast<int>(end - begin));
  }
  return busiest;
}

// Prints per-second totals on one line, with what the first one starts
// after.
void PrintPerSecond(absl::string_view what, absl::string_view origin,
                    const std::vector<int>& totals) {
  std::cout << "[ measured ] " << what << ", per second from " << origin << ": "
            << absl::StrJoin(totals, " ") << std::endl;
}

// Prints when each 429 of `entries` was answered, in seconds after each of
// `events` (name, time), so a failure shows what it followed.
void Print429s(const std::vector<AccessLogEntry>& entries,
               const std::vector<std::pair<std::string, absl::Time>>& events) {
  for (const AccessLogEntry& entry : entries) {
    if (entry.status != 429) continue;
    std::vector<std::string> offsets;
    for (const auto& [name, time] : events) {
      offsets.push_back(
          absl::StrFormat("%+.3f s after %s", absl::ToDoubleSeconds(entry.time - time), name));
    }
    std::cout << "[ measured ] nginx answered 429 at " << absl::StrJoin(offsets, ", ") << std::endl;
  }
}

}  // namespace switchboard::testing
