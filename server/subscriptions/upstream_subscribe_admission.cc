#include "server/subscriptions/upstream_subscribe_admission.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::subscriptions {

SubscribeAdmission::Ticket UpstreamSubscribeAdmission::Admit(absl::string_view upstream,
                                                             absl::string_view client_id,
                                                             absl::string_view method,
                                                             absl::Time deadline, Callback done) {
  return upstreams_.Admit(
      upstream, std::string(client_id), method, deadline,
      [context = absl::StrCat("upstream ", upstream, ": ", method, ": "),
       done = std::move(done)](ratelimit::AdmissionResult result) mutable {
        if (result.status.ok()) {
          done(absl::OkStatus());
          return;
        }
        done(absl::Status(result.status.code(), absl::StrCat(context, result.status.message())));
      });
}

void UpstreamSubscribeAdmission::Cancel(absl::string_view upstream, Ticket ticket) {
  upstreams_.CancelAdmit(upstream, ticket);
}

}  // namespace switchboard::subscriptions
