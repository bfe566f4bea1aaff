// Upstreams: every configured JSON-RPC upstream, behind one thread-safe
// front, the UpstreamProxy (upstream_proxy.h; DESIGN.md §4).
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
#include "server/event/anchor.h"
#include "server/event/dispatcher.h"
#include "server/ratelimit/client_quotas.h"
#include "server/ratelimit/lease_service.h"
#include "server/upstream/upstream_client.h"
#include "server/upstream/upstream_proxy.h"

namespace switchboard::upstream {

class Upstreams final : public UpstreamProxy {
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

  // Builds every client and the quotas on `dispatcher` and returns once
  // they exist. `observer` must outlive this object. Do not call on the
  // dispatcher thread.
  // `lease_service`, when set, serves the global limits (it must outlive
  // this object, and run on `dispatcher`).
  Upstreams(event::Dispatcher& dispatcher, std::vector<Definition> definitions, Quotas quotas,
            UpstreamObserver& observer, ratelimit::LeaseService* lease_service = nullptr);
  ~Upstreams() override;  // Calls Shutdown().

  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  // UpstreamProxy. Callbacks run on the dispatcher thread; after
  // Shutdown(), calls and descriptions fail with UNAVAILABLE.
  bool Contains(absl::string_view name) const override { return request_timeouts_.contains(name); }
  absl::Duration request_timeout(absl::string_view name) const override {
    return request_timeouts_.at(name);
  }
  CallHandle Call(absl::string_view name, UpstreamCall call, AnswerCallback done) override;
  void Cancel(const CallHandle& handle) override;
  void DescribeLimit(absl::string_view name,
                     absl::AnyInvocable<void(absl::StatusOr<LimitDescription>)> done) override;

  // Paces a provider subscribe through upstream `name`'s admission
  // (UpstreamClient::Admit). On the dispatcher thread only: for the
  // subscription hubs, which live on it too. After Shutdown() (a drain's
  // cut-off may come first), `done` runs on the next loop iteration with
  // UNAVAILABLE, and the ticket cancels nothing.
  ratelimit::UpstreamAdmission::Ticket Admit(absl::string_view name, std::string client_id,
                                             absl::string_view method, absl::Time deadline,
                                             ratelimit::UpstreamAdmission::Callback done);
  void CancelAdmit(absl::string_view name, ratelimit::UpstreamAdmission::Ticket ticket);

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
  event::Anchor<Clients> gate_;
};

}  // namespace switchboard::upstream
