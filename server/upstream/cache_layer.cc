#include "server/upstream/cache_layer.h"

#include <optional>
#include <string>
#include <utility>

namespace switchboard::upstream {

CacheLayer::CacheLayer(const UpstreamOptions& options, common::Clock& clock,
                       UpstreamObserver& observer, CallLayer& next)
    : options_(options),
      clock_(clock),
      observer_(observer),
      next_(next),
      cache_(options.cache_max_entries, options.cache_max_bytes) {}

void CacheLayer::Start(CallId id, LayerCall call, OutcomeCallback done) {
  const UpstreamCall& upstream_call = call.call;
  auto ttl = upstream_call.raw_body.empty() ? options_.cache_ttl.find(upstream_call.method)
                                            : options_.cache_ttl.end();
  if (ttl == options_.cache_ttl.end()) {
    next_.Start(id, std::move(call), std::move(done));
    return;
  }
  std::optional<std::string> cached =
      cache_.Find(upstream_call.method, upstream_call.params_json, clock_.Now());
  if (cached.has_value()) {
    observer_.OnCacheHit(options_.name, upstream_call.method);
    Answer answer;
    answer.json = *std::move(cached);
    answer.cached = true;
    done(CallOutcome(std::move(answer)));
    return;
  }
  // The call that made the request keeps its answer; calls that shared it
  // (coalesced) bring the same answer again.
  std::string method = upstream_call.method;
  std::string params_json = upstream_call.params_json;
  next_.Start(id, std::move(call),
              [this, method = std::move(method), params_json = std::move(params_json),
               ttl = ttl->second, done = std::move(done)](CallOutcome outcome) mutable {
                const absl::StatusOr<Answer>& result = outcome.result;
                if (result.ok() && result->kind == Answer::Kind::kResult && !result->coalesced) {
                  cache_.Insert(method, params_json, result->json, clock_.Now(), ttl);
                }
                done(std::move(outcome));
              });
}

}  // namespace switchboard::upstream
