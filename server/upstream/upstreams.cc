#include "server/upstream/upstreams.h"

#include <utility>

#include "absl/synchronization/notification.h"

namespace switchboard::upstream {

Upstreams::Upstreams(event::Dispatcher& dispatcher, std::vector<Definition> definitions,
                     Quotas quotas, UpstreamObserver& observer,
                     ratelimit::LeaseService* lease_service)
    : dispatcher_(dispatcher),
      lease_service_(lease_service),
      clients_(std::make_unique<Clients>()),
      gate_(dispatcher, clients_.get()) {
  for (const Definition& definition : definitions) {
    request_timeouts_.emplace(definition.options.name, definition.options.request_timeout);
  }
  absl::Notification built;
  dispatcher_.Post([this, &definitions, &quotas, &observer, &built] {
    quotas_ = std::make_unique<ratelimit::ClientQuotas>(dispatcher_, quotas.requests_per_second,
                                                        std::move(quotas.make_limiter));
    for (Definition& definition : definitions) {
      std::string name = definition.options.name;
      clients_->emplace(std::move(name), std::make_unique<UpstreamClient>(
                                             dispatcher_, std::move(definition.options),
                                             std::move(definition.make_pool), observer,
                                             quotas_.get(), std::move(definition.make_limiter)));
    }
    built.Notify();
  });
  built.WaitForNotification();
}

Upstreams::~Upstreams() { Shutdown(); }

Upstreams::CallHandle Upstreams::Call(absl::string_view name, UpstreamCall call,
                                      AnswerCallback done) {
  CallHandle handle{std::string(name), next_id_.fetch_add(1)};
  gate_.Post([handle, call = std::move(call), done = std::move(done)](Clients* clients) mutable {
    if (clients == nullptr) {
      done(absl::UnavailableError("the upstream proxy is shutting down"));
      return;
    }
    clients->at(handle.upstream)->Start(handle.id, std::move(call), std::move(done));
  });
  return handle;
}

void Upstreams::Cancel(const CallHandle& handle) {
  gate_.Post([handle](Clients* clients) {
    if (clients != nullptr) clients->at(handle.upstream)->Cancel(handle.id);
  });
}

ratelimit::UpstreamAdmission::Ticket Upstreams::Admit(absl::string_view name, std::string client_id,
                                                      absl::string_view method, absl::Time deadline,
                                                      ratelimit::UpstreamAdmission::Callback done) {
  if (clients_ == nullptr) {  // Shut down (a drain's cut-off): refused, never inline.
    dispatcher_.Post([done = std::move(done)]() mutable {
      done({absl::UnavailableError("the upstream proxy is shutting down")});
    });
    return 0;
  }
  return clients_->at(name)->Admit(std::move(client_id), method, deadline, std::move(done));
}

void Upstreams::CancelAdmit(absl::string_view name, ratelimit::UpstreamAdmission::Ticket ticket) {
  if (clients_ != nullptr) clients_->at(name)->CancelAdmit(ticket);
}

void Upstreams::DescribeLimit(absl::string_view name,
                              absl::AnyInvocable<void(absl::StatusOr<LimitDescription>)> done) {
  gate_.Post([this, name = std::string(name), done = std::move(done)](Clients* clients) mutable {
    if (clients == nullptr) {
      done(absl::UnavailableError("the upstream proxy is shutting down"));
      return;
    }
    const UpstreamClient& client = *clients->at(name);
    const ratelimit::UpstreamAdmission& admission = client.admission();
    LimitDescription description;
    description.rate_limited = client.options().rate_limited;
    description.configured_rate = client.options().admission.rate;
    description.burst = client.options().admission.burst;
    description.rate = admission.rate();
    description.queue_depth = admission.queue_depth();
    description.in_flight = admission.in_flight();
    description.fallback = admission.limiter().fallback();
    const ratelimit::SharedLimit* shared = admission.limiter().shared_limit();
    if (!description.rate_limited || shared == nullptr || lease_service_ == nullptr) {
      done(std::move(description));
      return;
    }
    description.global = true;
    lease_service_->Describe(*shared,
                             [description = std::move(description), done = std::move(done)](
                                 absl::StatusOr<ratelimit::SharedLimitState> state) mutable {
                               description.shared = std::move(state);
                               done(std::move(description));
                             });
  });
}

void Upstreams::Shutdown() {
  if (!gate_.Close()) return;
  absl::Notification freed;
  dispatcher_.Post([this, &freed] {
    clients_.reset();
    quotas_.reset();
    freed.Notify();
  });
  freed.WaitForNotification();
}

}  // namespace switchboard::upstream
