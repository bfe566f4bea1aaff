#include "server/http/sharded_http_pool.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"

namespace switchboard::http {

std::vector<int> ConnectionShares(int connections, size_t shards) {
  if (shards == 0) return {};
  const size_t total = static_cast<size_t>(std::max(connections, 1));
  const size_t count = std::min(shards, total);
  std::vector<int> shares(count, static_cast<int>(total / count));
  for (size_t i = 0; i < total % count; ++i) ++shares[i];
  return shares;
}

absl::string_view OriginOf(absl::string_view url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == absl::string_view::npos) return url;
  const size_t authority_end = url.find_first_of("/?#", scheme_end + 3);
  return url.substr(0, authority_end);
}

// One shard, on its dispatcher's thread: its pool, and which of the pool's
// requests carries each of the sharded pool's.
class ShardedHttpPool::ShardCore final : public HttpPoolObserver {
 public:
  explicit ShardCore(event::Anchor<ShardedHttpPool> home) : home_(std::move(home)) {}

  void Start(const ShardFactory& make_pool, size_t index, int connections_per_host) {
    pool_ = make_pool(index, connections_per_host, *this);
  }

  void Send(RequestId id, Request request) {
    const RequestId pool_id =
        pool_->Send(std::move(request), [this, id](absl::StatusOr<Response> result) {
          requests_.erase(id);
          ToHome([id, result = std::move(result)](ShardedHttpPool& pool) mutable {
            pool.OnResult(id, std::move(result));
          });
        });
    requests_.emplace(id, pool_id);
  }

  void Cancel(RequestId id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return;  // Its result is on its way home.
    pool_->Cancel(it->second);
    requests_.erase(it);
  }

  void OnConnectionOpened() override {
    ToHome([](ShardedHttpPool& pool) { pool.OnConnectionsChanged(1); });
  }
  void OnConnectionClosed() override {
    ToHome([](ShardedHttpPool& pool) { pool.OnConnectionsChanged(-1); });
  }
  // The sharded pool reports each request's outcome itself, at home.
  void OnRequestDone(const RequestOutcome&) override {}

 private:
  // Runs `fn` with the sharded pool on the home dispatcher (inline for the
  // shard on it), unless the pool is gone by then.
  void ToHome(absl::AnyInvocable<void(ShardedHttpPool& pool)> fn) {
    home_.Run([fn = std::move(fn)](ShardedHttpPool* pool) mutable {
      if (pool != nullptr) fn(*pool);
    });
  }

  const event::Anchor<ShardedHttpPool> home_;
  // The sharded pool's request ids, to the pool's. Declared before pool_:
  // the pool's destructor runs callbacks that erase from it.
  absl::flat_hash_map<RequestId, RequestId> requests_;
  std::unique_ptr<HttpPool> pool_;
};

ShardedHttpPool::ShardedHttpPool(event::Dispatcher& home, std::vector<event::Dispatcher*> shards,
                                 ShardedHttpPoolOptions options, ShardFactory make_pool,
                                 HttpPoolObserver& observer)
    : home_(home), observer_(observer), anchor_(home, this) {
  if (shards.empty()) shards.push_back(&home);
  const std::vector<int> shares = ConnectionShares(options.max_connections_per_host, shards.size());
  for (size_t i = 0; i < shares.size(); ++i) {
    Shard& shard = shards_.emplace_back();
    shard.dispatcher = shards[i];
    shard.home = shards[i] == &home;
    shard.connections = static_cast<size_t>(shares[i]);
    shard.core = new ShardCore(anchor_);
    OnShard(
        i, [make_pool, i, share = shares[i]](ShardCore& core) { core.Start(make_pool, i, share); });
  }
}

ShardedHttpPool::~ShardedHttpPool() {
  anchor_.Clear();  // No shard's closure reaches this pool any more.
  absl::flat_hash_map<RequestId, Pending> pending = std::move(pending_);
  for (auto& [id, request] : pending) {
    observer_.OnRequestDone(
        {absl::StatusCode::kUnavailable, 0, home_.clock().Now() - request.sent_at});
    request.done(absl::UnavailableError("HTTP pool destroyed"));
  }
  for (Shard& shard : shards_) {
    std::unique_ptr<ShardCore> core(shard.core);
    if (shard.home) continue;  // Freed here, on its own thread.
    shard.dispatcher->Post([core = std::move(core)]() mutable { core.reset(); });
  }
}

RequestId ShardedHttpPool::Send(Request request, ResponseCallback done) {
  const RequestId id = next_id_++;
  auto host = hosts_.find(OriginOf(request.url));
  if (host == hosts_.end()) {
    host = hosts_.emplace(std::string(OriginOf(request.url)), std::vector<size_t>(shards_.size()))
               .first;
  }
  std::vector<size_t>& in_flight = host->second;
  const size_t shard = PickShard(in_flight);
  ++in_flight[shard];
  pending_.emplace(id, Pending{std::move(done), shard, &in_flight, home_.clock().Now()});
  OnShard(shard, [id, request = std::move(request)](ShardCore& core) mutable {
    core.Send(id, std::move(request));
  });
  return id;
}

bool ShardedHttpPool::Cancel(RequestId id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return false;
  const Pending& request = it->second;
  --(*request.host_in_flight)[request.shard];
  observer_.OnRequestDone({absl::StatusCode::kCancelled, 0, home_.clock().Now() - request.sent_at});
  OnShard(request.shard, [id](ShardCore& core) { core.Cancel(id); });
  pending_.erase(it);
  return true;
}

void ShardedHttpPool::OnShard(size_t index, absl::AnyInvocable<void(ShardCore& core)> fn) {
  Shard& shard = shards_[index];
  if (shard.home) {
    fn(*shard.core);
    return;
  }
  shard.dispatcher->Post([core = shard.core, fn = std::move(fn)]() mutable { fn(*core); });
}

size_t ShardedHttpPool::PickShard(const std::vector<size_t>& host_in_flight) const {
  // The least (in flight + 1) / connections, compared without division.
  size_t best = 0;
  for (size_t shard = 1; shard < shards_.size(); ++shard) {
    if ((host_in_flight[shard] + 1) * shards_[best].connections <
        (host_in_flight[best] + 1) * shards_[shard].connections) {
      best = shard;
    }
  }
  return best;
}

void ShardedHttpPool::OnResult(RequestId id, absl::StatusOr<Response> result) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // Cancelled.
  Pending request = std::move(it->second);
  pending_.erase(it);
  --(*request.host_in_flight)[request.shard];
  observer_.OnRequestDone({result.ok() ? absl::StatusCode::kOk : result.status().code(),
                           result.ok() ? result->status : 0,
                           home_.clock().Now() - request.sent_at});
  request.done(std::move(result));
}

void ShardedHttpPool::OnConnectionsChanged(int delta) {
  open_connections_ += delta;
  if (delta > 0) {
    observer_.OnConnectionOpened();
  } else {
    observer_.OnConnectionClosed();
  }
}

}  // namespace switchboard::http
