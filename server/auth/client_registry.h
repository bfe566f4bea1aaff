// Maps the bearer token, or else the verified TLS client certificate, of a
// call to the caller's ClientIdentity.
//
// Built once at startup from the clients' definitions (the configuration's
// `clients:`, through config::ClientCredentials) and shared by every RPC
// handler (server/service). Immutable after construction, so
// Authenticate may be called from any thread concurrently without locking.
// With no clients configured the registry is in anonymous mode: every caller,
// with or without a token, is `anonymous` with weight 1, no quota and every
// topic allowed (local development needs no token).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/auth/client_identity.h"

namespace switchboard::auth {

// A client: the bearer token and/or certificate it presents, and who it is
// then. Empty fields identify nobody.
struct ClientCredential {
  std::string token;
  // Matched exactly against the certificate's RFC 2253 subject, and against
  // each of its subject alternative names.
  std::string cert_subject;
  std::string cert_san;
  ClientIdentity identity;
};

// What the TLS handshake verified about the caller's certificate.
struct PeerCertificate {
  // RFC 2253, most specific first (`CN=worker-a,O=Acme`).
  std::string subject;
  // DNS names, URIs, e-mail and IP addresses, as gRPC reports them.
  std::vector<std::string> sans;
};

class ClientRegistry {
 public:
  // Tokens, subjects and SANs must be unique where set, and each client has
  // one of them (config::ValidateConfig checks the configuration's). None:
  // anonymous mode.
  explicit ClientRegistry(std::vector<ClientCredential> clients);

  // Identifies a caller from its `authorization` metadata value (empty when
  // absent) or, when there is none, from `certificate` (null: the caller
  // presented none). The value must be `Bearer <token>` unless the registry
  // is anonymous. UNAUTHENTICATED when neither identifies a client; the
  // message never contains the token. Tokens are compared in time that does
  // not depend on which configured token, or which prefix of one, the
  // presented token matches.
  absl::StatusOr<ClientIdentity> Authenticate(absl::string_view authorization,
                                              const PeerCertificate* certificate = nullptr) const;

  // True when no clients are configured and every caller is `anonymous`.
  bool anonymous() const { return clients_.empty(); }

 private:
  absl::StatusOr<ClientIdentity> AuthenticateToken(absl::string_view authorization) const;
  absl::StatusOr<ClientIdentity> AuthenticateCertificate(const PeerCertificate& certificate) const;

  std::vector<ClientCredential> clients_;
};

}  // namespace switchboard::auth
