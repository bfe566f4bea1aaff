// UpstreamSubscribeAdmission: paces the subscription hubs' subscribes
// through the upstreams' admission queues, so that a subscribe counts
// against an upstream's rate limit (local or global) as a call of the same
// method does, and takes its turn in the same weighted-fair queue.
//
// Owned by the server (server/app), beside Upstreams and Subscriptions. Both
// live on the upstream dispatcher, and so does this: use it on that thread
// only, and only until Upstreams::Shutdown() (Subscriptions shuts down
// first).
#pragma once

#include "server/subscriptions/subscription_hub.h"
#include "server/upstream/upstreams.h"

namespace switchboard::subscriptions {

class UpstreamSubscribeAdmission final : public SubscribeAdmission {
 public:
  // `upstreams` must outlive this object.
  explicit UpstreamSubscribeAdmission(upstream::Upstreams& upstreams) : upstreams_(upstreams) {}

  Ticket Admit(absl::string_view upstream, absl::string_view client_id, absl::string_view method,
               absl::Time deadline, Callback done) override;
  void Cancel(absl::string_view upstream, Ticket ticket) override;

 private:
  upstream::Upstreams& upstreams_;
};

}  // namespace switchboard::subscriptions
