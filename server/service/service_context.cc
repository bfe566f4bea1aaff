#include "server/service/service_context.h"

#include "absl/strings/str_cat.h"

namespace switchboard::service {

absl::StatusOr<auth::ClientIdentity> AuthenticateCall(const ServiceContext& context,
                                                      const grpc::CallbackServerContext& call) {
  const auto& metadata = call.client_metadata();
  auto it = metadata.find("authorization");
  absl::string_view authorization;
  if (it != metadata.end()) authorization = absl::string_view(it->second.data(), it->second.size());
  return context.clients.Authenticate(authorization);
}

absl::Status CheckTopicAllowed(const auth::ClientIdentity& client, absl::string_view topic,
                               absl::string_view field) {
  if (client.MayUseTopic(topic)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(field, ": client '", client.id, "' may not use topic '", topic, "'"));
}

}  // namespace switchboard::service
