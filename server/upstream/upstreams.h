// Upstreams: every configured JSON-RPC upstream, behind one thread-safe
// front (DESIGN.md §4).
//
// Owned by the server (server/app); the Rpc service calls it from gRPC's
// threads. Each call runs on the upstream dispatcher in its UpstreamClient.
// All clients, their admission queues and HTTP pools, and the clients'
// quotas (ClientQuotas, shared by every upstream) live on that one
// dispatcher thread.
//
// Lifetime: the dispatcher must run until Shutdown() returns; Shutdown()
// answers calls still open with UNAVAILABLE and frees the clients on the
// dispatcher thread. Calls after Shutdown() fail with UNAVAILABLE.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/event/dispatcher.h"
#include "server/event/posting_gate.h"
#include "server/ratelimit/client_quotas.h"
#include "server/ratelimit/lease_service.h"
#include "server/upstream/upstream_client.h"

namespace switchboard::upstream {

class Upstreams {
 public:
  // What builds one upstream's client: its options and how to make its
  // HTTP pool (on the dispatcher thread).
  struct Definition {
    UpstreamOptions options;
    UpstreamClient::PoolFactory make_pool;
    // Null: the rate limit is this process's alone.
    UpstreamClient::LimiterFactory make_limiter;
  };

  // The clients' quotas: requests per second by client id, and what builds
  // a quota's limiter (null: this process's alone).
  struct Quotas {
    absl::flat_hash_map<std::string, double> requests_per_second;
    ratelimit::ClientQuotas::LimiterFactory make_limiter;
  };

  // An upstream's rate limit as this replica sees it, and for a global
  // limit as the fleet shares it.
  struct LimitDescription {
    bool rate_limited = false;
    bool global = false;
    double configured_rate = 0;
    double burst = 0;
    double rate = 0;  // Now, after provider pushback (AIMD).
    size_t queue_depth = 0;
    size_t in_flight = 0;
    bool fallback = false;  // Global: running on this replica's share.
    // Global: the shared state in Redis, or why it could not be read.
    absl::StatusOr<ratelimit::SharedLimitState> shared = absl::UnavailableError("not global");
  };

  // A call in progress, for Cancel().
  struct CallHandle {
    std::string upstream;
    UpstreamClient::CallId id = 0;
  };

  // Builds every client and the quotas on `dispatcher` and returns once
  // they exist. `observer` must outlive this object. Do not call on the
  // dispatcher thread.
  // `lease_service`, when set, serves the global limits (it must outlive
  // this object, and run on `dispatcher`).
  Upstreams(event::Dispatcher& dispatcher, std::vector<Definition> definitions, Quotas quotas,
            UpstreamObserver& observer, ratelimit::LeaseService* lease_service = nullptr);
  ~Upstreams();  // Calls Shutdown().

  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  // Whether `name` is a configured upstream. Any thread.
  bool Contains(absl::string_view name) const { return request_timeouts_.contains(name); }

  // The request timeout of upstream `name`, which must exist: the deadline
  // of a call that brings none. Any thread.
  absl::Duration request_timeout(absl::string_view name) const {
    return request_timeouts_.at(name);
  }

  // Starts `call` on upstream `name`, which must exist. `done` runs exactly
  // once, on the dispatcher thread, never inline. Any thread. Calling
  // Cancel() with the handle is optional.
  CallHandle Call(absl::string_view name, UpstreamCall call, AnswerCallback done);

  // Withdraws a call still waiting for admission (see UpstreamClient).
  void Cancel(const CallHandle& handle);

  // Describes upstream `name`'s rate limit; `name` must exist. `done` runs
  // once, on the dispatcher thread (UNAVAILABLE after Shutdown()). Any
  // thread.
  void DescribeLimit(absl::string_view name,
                     absl::AnyInvocable<void(absl::StatusOr<LimitDescription>)> done);

  // Answers open calls with UNAVAILABLE and frees the clients. Blocks until
  // done; not on the dispatcher thread. Idempotent.
  void Shutdown();

 private:
  using Clients = absl::flat_hash_map<std::string, std::unique_ptr<UpstreamClient>>;

  event::Dispatcher& dispatcher_;
  ratelimit::LeaseService* const lease_service_;
  // Immutable: read from any thread.
  absl::flat_hash_map<std::string, absl::Duration> request_timeouts_;
  std::atomic<UpstreamClient::CallId> next_id_{1};
  // Used and freed on the dispatcher thread; the quotas after the clients,
  // which hold them.
  std::unique_ptr<ratelimit::ClientQuotas> quotas_;
  std::unique_ptr<Clients> clients_;
  event::PostingGate<Clients> gate_;
};

}  // namespace switchboard::upstream
