// Upstreams: every configured JSON-RPC upstream, behind one thread-safe
// front (DESIGN.md §4).
//
// Owned by the server (server/app); the Rpc service calls it from gRPC's
// threads. Each call first takes one request from its client's own quota
// (ClientQuotas, refused at once with RESOURCE_EXHAUSTED and a retry delay),
// then runs on the upstream dispatcher in its UpstreamClient. All clients,
// their admission queues and HTTP pools live on that one dispatcher thread.
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
#include "absl/strings/string_view.h"
#include "server/event/dispatcher.h"
#include "server/event/posting_gate.h"
#include "server/ratelimit/client_quotas.h"
#include "server/upstream/upstream_client.h"

namespace switchboard::upstream {

class Upstreams {
 public:
  // What builds one upstream's client: its options and how to make its
  // HTTP pool (on the dispatcher thread).
  struct Definition {
    UpstreamOptions options;
    UpstreamClient::PoolFactory make_pool;
  };

  // A call in progress, for Cancel().
  struct CallHandle {
    std::string upstream;
    UpstreamClient::CallId id = 0;
  };

  // Builds every client on `dispatcher` and returns once they exist.
  // `quotas` and `observer` must outlive this object. Do not call on the
  // dispatcher thread.
  Upstreams(event::Dispatcher& dispatcher, std::vector<Definition> definitions,
            ratelimit::ClientQuotas& quotas, UpstreamObserver& observer);
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

  // Answers open calls with UNAVAILABLE and frees the clients. Blocks until
  // done; not on the dispatcher thread. Idempotent.
  void Shutdown();

 private:
  using Clients = absl::flat_hash_map<std::string, std::unique_ptr<UpstreamClient>>;

  event::Dispatcher& dispatcher_;
  ratelimit::ClientQuotas& quotas_;
  UpstreamObserver& observer_;
  // Immutable: read from any thread.
  absl::flat_hash_map<std::string, absl::Duration> request_timeouts_;
  std::atomic<UpstreamClient::CallId> next_id_{1};
  // Used and freed on the dispatcher thread.
  std::unique_ptr<Clients> clients_;
  event::PostingGate<Clients> gate_;
};

}  // namespace switchboard::upstream
