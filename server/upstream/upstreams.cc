#include "server/upstream/upstreams.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace switchboard::upstream {

Upstreams::Upstreams(event::Dispatcher& dispatcher, std::vector<Definition> definitions,
                     ratelimit::ClientQuotas& quotas, UpstreamObserver& observer)
    : dispatcher_(dispatcher),
      quotas_(quotas),
      observer_(observer),
      clients_(std::make_unique<Clients>()),
      gate_(dispatcher, clients_.get()) {
  for (const Definition& definition : definitions) {
    request_timeouts_.emplace(definition.options.name, definition.options.request_timeout);
  }
  absl::Notification built;
  dispatcher_.Post([this, &definitions, &observer, &built] {
    for (Definition& definition : definitions) {
      std::string name = definition.options.name;
      clients_->emplace(std::move(name), std::make_unique<UpstreamClient>(
                                             dispatcher_, std::move(definition.options),
                                             std::move(definition.make_pool), observer));
    }
    built.Notify();
  });
  built.WaitForNotification();
}

Upstreams::~Upstreams() { Shutdown(); }

Upstreams::CallHandle Upstreams::Call(absl::string_view name, UpstreamCall call,
                                      AnswerCallback done) {
  CallHandle handle{std::string(name), next_id_.fetch_add(1)};
  ratelimit::AdmissionResult quota = quotas_.TryAcquire(call.client_id);
  if (!quota.status.ok()) {
    observer_.OnRejected(name, "client_quota");
    absl::Status refused = WithRetryAfter(quota.status, quota.retry_after);
    dispatcher_.Post([done = std::move(done), refused = std::move(refused)]() mutable {
      done(std::move(refused));
    });
    return handle;
  }
  gate_.Run([handle, call = std::move(call), done = std::move(done)](Clients* clients) mutable {
    if (clients == nullptr) {
      done(absl::UnavailableError("the upstream proxy is shutting down"));
      return;
    }
    clients->at(handle.upstream)->Start(handle.id, std::move(call), std::move(done));
  });
  return handle;
}

void Upstreams::Cancel(const CallHandle& handle) {
  gate_.Run([handle](Clients* clients) {
    if (clients != nullptr) clients->at(handle.upstream)->Cancel(handle.id);
  });
}

void Upstreams::Shutdown() {
  if (!gate_.Close()) return;
  absl::Notification freed;
  dispatcher_.Post([this, &freed] {
    clients_.reset();
    freed.Notify();
  });
  freed.WaitForNotification();
}

}  // namespace switchboard::upstream
