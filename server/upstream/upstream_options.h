// UpstreamOptions: one JSON-RPC upstream's configuration, resolved from the
// config file (server/config) and handed to its UpstreamClient, whose
// layers each read the part they act on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "server/ratelimit/upstream_admission.h"

namespace switchboard::upstream {

// Auto-batching: calls admitted while every connection to their URL is
// busy wait for the next free one and leave together, as one JSON-RPC
// batch. No timer: a call that finds a free connection goes at once, alone.
struct BatchOptions {
  size_t max_calls = 100;      // Calls per batch at most.
  size_t max_bytes = 1 << 20;  // Request body bytes per batch at most.
  // Not empty: only these methods are batched (transaction submissions and
  // coalescing.never methods too, when listed here).
  absl::flat_hash_set<std::string> methods;
  // With `methods` empty: every method but these, transaction submissions
  // and coalescing.never methods. Slow methods (getProgramAccounts) belong
  // here, so that they do not hold fast calls back.
  absl::flat_hash_set<std::string> except;
};

// One upstream's configuration, resolved.
struct UpstreamOptions {
  std::string name;
  std::vector<std::string> urls;  // Primary first.
  // One upstream request's timeout (also bounded by the call's deadline).
  absl::Duration request_timeout = absl::Seconds(10);
  absl::flat_hash_map<std::string, uint32_t> method_cost;  // Absent: 1.
  uint32_t max_attempts = 1;
  absl::flat_hash_set<std::string> retry_methods;
  absl::Duration retry_backoff = absl::Milliseconds(50);  // Doubles per attempt.
  absl::flat_hash_map<std::string, absl::Duration> cache_ttl;
  bool coalescing = true;
  // Never coalesced, besides kTransactionSubmissions.
  absl::flat_hash_set<std::string> never_coalesce;
  uint32_t breaker_failure_threshold = 5;
  absl::Duration breaker_open_time = absl::Seconds(5);
  size_t cache_max_entries = 10000;
  size_t cache_max_bytes = 64 << 20;
  ratelimit::UpstreamAdmissionOptions admission;
  // False: no rate limit (calls are admitted at once).
  bool rate_limited = true;
  // Requests one URL carries at once: its connections, over HTTP/1.1.
  // Batchable calls beyond wait to leave in a batch.
  size_t max_connections = 2;
  // Requests one connection carries at once over HTTP/2; 0: HTTP/1.1 only.
  // A URL counts as HTTP/2 from a response that came over it (the protocol
  // is negotiated per connection: ALPN may settle on HTTP/1.1) until one
  // comes over HTTP/1.1; while it does, it carries max_connections times
  // this, and admission.max_in_flight (set for HTTP/1.1) scales the same.
  size_t http2_streams_per_connection = 0;
  // Absent: no batching.
  std::optional<BatchOptions> batch;
};

}  // namespace switchboard::upstream
