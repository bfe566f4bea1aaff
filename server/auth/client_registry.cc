#include "server/auth/client_registry.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace switchboard::auth {
namespace {

constexpr absl::string_view kBearerScheme = "Bearer";

// Compares without an early exit, so the time taken depends only on the
// length of `presented` (which the caller knows), never on how much of
// `expected` it matches. `expected` must not be empty.
bool ConstantTimeEquals(absl::string_view presented, absl::string_view expected) {
  unsigned char difference = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < presented.size(); ++i) {
    difference |= static_cast<unsigned char>(presented[i]) ^
                  static_cast<unsigned char>(expected[i % expected.size()]);
  }
  return difference == 0;
}

}  // namespace

ClientRegistry::ClientRegistry(std::vector<ClientCredential> clients)
    : clients_(std::move(clients)) {}

absl::StatusOr<ClientIdentity> ClientRegistry::Authenticate(
    absl::string_view authorization, const PeerCertificate* certificate) const {
  if (anonymous()) {
    ClientIdentity anonymous_client;
    anonymous_client.id = std::string(kAnonymousClientId);
    return anonymous_client;
  }
  if (authorization.empty() && certificate != nullptr) return AuthenticateCertificate(*certificate);
  return AuthenticateToken(authorization);
}

absl::StatusOr<ClientIdentity> ClientRegistry::AuthenticateCertificate(
    const PeerCertificate& certificate) const {
  for (const ClientCredential& client : clients_) {
    if (!client.cert_subject.empty() && client.cert_subject == certificate.subject) {
      return client.identity;
    }
  }
  for (const ClientCredential& client : clients_) {
    if (client.cert_san.empty()) continue;
    for (const std::string& san : certificate.sans) {
      if (san == client.cert_san) return client.identity;
    }
  }
  // The subject is no secret, but it is the caller's text: not echoed.
  return absl::UnauthenticatedError(
      "the client certificate matches no client's cert_subject or cert_san, and no bearer "
      "token was sent");
}

absl::StatusOr<ClientIdentity> ClientRegistry::AuthenticateToken(
    absl::string_view authorization) const {
  // RFC 7235: the scheme is case-insensitive and followed by whitespace.
  absl::string_view credentials = absl::StripAsciiWhitespace(authorization);
  if (!absl::StartsWithIgnoreCase(credentials, kBearerScheme) ||
      credentials.size() == kBearerScheme.size() ||
      !absl::ascii_isspace(static_cast<unsigned char>(credentials[kBearerScheme.size()]))) {
    return absl::UnauthenticatedError(
        "missing bearer token: send metadata \"authorization: Bearer <token>\"");
  }
  const absl::string_view token =
      absl::StripLeadingAsciiWhitespace(credentials.substr(kBearerScheme.size()));
  // Every configured token is compared, so the time taken does not reveal
  // which one matched.
  const ClientCredential* match = nullptr;
  for (const ClientCredential& client : clients_) {
    if (client.token.empty()) continue;  // A certificate-only client.
    if (ConstantTimeEquals(token, client.token) && match == nullptr) match = &client;
  }
  if (match == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  return match->identity;
}

}  // namespace switchboard::auth
