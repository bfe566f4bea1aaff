// ShardedHttpPool: one upstream's HTTP pool spread over several I/O threads
// (server.upstream_threads; DESIGN.md §4).
//
// A pool and its libcurl multi handle belong to one dispatcher, so one
// thread does all of their work: with one pool per upstream, one thread
// caps how many requests a process makes, whatever its cores. The sharded
// pool keeps the one-thread rule per shard: it holds a pool on each of
// several dispatchers (its shards), each with a share of the upstream's
// connections to every host. The shares add up to max_connections_per_host,
// so the provider sees no more connections than configured, and no shard
// gets none (so there are at most that many shards).
//
// The sharded pool itself lives on the home dispatcher, where the upstream's
// admission and batching run. Each request goes to the shard least loaded
// for its host for its share: the fewest requests in flight there per
// connection it holds, whatever each connection carries (one request over
// HTTP/1.1, many over HTTP/2); on a tie the first (put a shard on the home
// dispatcher first: it needs no thread hop). A request never moves between
// shards. Its result comes back to the home dispatcher.
//
// Ownership and threads: the sharded pool owns its shards. Each shard's pool
// is made, used and destroyed on its own dispatcher's thread, through
// closures posted there in order. Results and connection events come back
// through the pool's Anchor (server/event/anchor.h), which the pool clears
// at destruction, so none reaches it afterwards.
// Destroying the sharded pool answers its open requests with UNAVAILABLE
// (from the destructor, as HttpPool says) and posts each remote shard's
// destruction to its dispatcher, which must run until then: shut the shards'
// dispatchers down after the sharded pools are gone and before the home
// dispatcher stops.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher.h"
#include "server/http/http_pool.h"

namespace switchboard::http {

struct ShardedHttpPoolOptions {
  // Connections to one host, in total over the shards.
  int max_connections_per_host = 2;
};

// The shares of `connections` connections over at most `shards` shards:
// as even as can be, the larger ones first, none empty. Pure.
std::vector<int> ConnectionShares(int connections, size_t shards);

// "scheme://authority" of `url`: what libcurl caps connections by. Pure.
absl::string_view OriginOf(absl::string_view url);

class ShardedHttpPool final : public HttpPool {
 public:
  // Makes the pool of shard `index` (its dispatcher's place in `shards`) with
  // `connections_per_host` connections to each host, reporting to `observer`. Runs on that shard's
  // dispatcher thread, each shard with its own copy: a copy must be safe to run beside another on
  // another thread.
  using ShardFactory = std::function<std::unique_ptr<HttpPool>(
      size_t index, int connections_per_host, HttpPoolObserver& observer)>;

  // `home` is the dispatcher this pool is used on; `shards` the
  // dispatchers that may hold a shard (the first ConnectionShares() of them
  // do; `home` may be among them; none: `home` alone). All must outlive the pool's shards (see
  // above); `observer` must outlive the pool and is called on `home`.
  ShardedHttpPool(event::Dispatcher& home, std::vector<event::Dispatcher*> shards,
                  ShardedHttpPoolOptions options, ShardFactory make_pool,
                  HttpPoolObserver& observer);
  ~ShardedHttpPool() override;

  ShardedHttpPool(const ShardedHttpPool&) = delete;
  ShardedHttpPool& operator=(const ShardedHttpPool&) = delete;

  RequestId Send(Request request, ResponseCallback done) override;
  bool Cancel(RequestId id) override;
  int open_connections() const override { return open_connections_; }

  // The shards (for tests and logs).
  size_t shard_count() const { return shards_.size(); }

 private:
  class ShardCore;
  struct Shard {
    event::Dispatcher* dispatcher = nullptr;
    bool home = false;       // On the home dispatcher: called directly.
    size_t connections = 0;  // Its share of the connections to each host.
    // Owned: destroyed on the shard's dispatcher (see ~ShardedHttpPool).
    ShardCore* core = nullptr;
  };
  struct Pending {
    ResponseCallback done;
    size_t shard = 0;
    std::vector<size_t>* host_in_flight = nullptr;  // Requests by shard.
    absl::Time sent_at;
  };

  // Runs `fn` with shard `index`'s core, on the shard's dispatcher.
  void OnShard(size_t index, absl::AnyInvocable<void(ShardCore& core)> fn);
  size_t PickShard(const std::vector<size_t>& host_in_flight) const;
  // Shard results and events, on the home dispatcher.
  void OnResult(RequestId id, absl::StatusOr<Response> result);
  void OnConnectionsChanged(int delta);

  event::Dispatcher& home_;
  HttpPoolObserver& observer_;
  // How shards reach this pool (cleared at destruction).
  event::Anchor<ShardedHttpPool> anchor_;
  std::vector<Shard> shards_;
  // Requests in flight to each host (origin), by shard.
  absl::node_hash_map<std::string, std::vector<size_t>> hosts_;
  absl::flat_hash_map<RequestId, Pending> pending_;
  RequestId next_id_ = 1;
  int open_connections_ = 0;
};

}  // namespace switchboard::http
