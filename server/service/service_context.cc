#include "server/service/service_context.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace switchboard::service {

absl::StatusOr<auth::ClientIdentity> AuthenticateCall(const ServiceContext& context,
                                                      const grpc::CallbackServerContext& call) {
  const auto& metadata = call.client_metadata();
  const auto [first, end] = metadata.equal_range("authorization");
  absl::string_view authorization;
  if (first != end) {
    // Which one would count is ambiguous (a proxy may have added one).
    if (std::next(first) != end) {
      return absl::UnauthenticatedError("more than one authorization header: send exactly one");
    }
    authorization = absl::string_view(first->second.data(), first->second.size());
  }
  return context.clients.Authenticate(authorization);
}

absl::Status CheckTopicAllowed(const auth::ClientIdentity& client, absl::string_view topic,
                               absl::string_view field) {
  if (client.MayUseTopic(topic)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(field, ": client '", client.id, "' may not use topic '", topic, "'"));
}

}  // namespace switchboard::service
