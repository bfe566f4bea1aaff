#include "server/service/service_context.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include <iterator>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"

namespace switchboard::service {
namespace {

// The client certificate the TLS handshake verified, if the caller sent one.
std::optional<auth::PeerCertificate> VerifiedCertificate(const grpc::CallbackServerContext& call) {
  const std::shared_ptr<const grpc::AuthContext> auth = call.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return std::nullopt;
  const std::vector<grpc::string_ref> subject =
      auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
  if (subject.empty()) return std::nullopt;
  auth::PeerCertificate certificate;
  certificate.subject.assign(subject.front().data(), subject.front().size());
  for (const grpc::string_ref& san : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    certificate.sans.emplace_back(san.data(), san.size());
  }
  return certificate;
}

}  // namespace

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
  // A token decides when sent, so the certificate is read (an AuthContext
  // and copies of its names) only for calls without one.
  std::optional<auth::PeerCertificate> certificate;
  if (authorization.empty() && !context.clients.anonymous()) {
    certificate = VerifiedCertificate(call);
  }
  return context.clients.Authenticate(authorization,
                                      certificate.has_value() ? &*certificate : nullptr);
}

absl::Status CheckTopicAllowed(const auth::ClientIdentity& client, absl::string_view topic,
                               absl::string_view field) {
  if (client.MayUseTopic(topic)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(field, ": client '", client.id, "' may not use topic '", topic, "'"));
}

}  // namespace switchboard::service
