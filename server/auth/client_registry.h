// Maps the bearer token of a call to the caller's ClientIdentity.
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

// A client: the bearer token it presents, and who it is then.
struct ClientCredential {
  std::string token;
  ClientIdentity identity;
};

class ClientRegistry {
 public:
  // Tokens must be non-empty and unique (config::ValidateConfig checks the
  // configuration's). None: anonymous mode.
  explicit ClientRegistry(std::vector<ClientCredential> clients);

  // Identifies a caller from its `authorization` metadata value (empty when
  // absent), which must be `Bearer <token>` unless the registry is anonymous.
  // UNAUTHENTICATED when the token is missing or unknown; the message never
  // contains the token. Tokens are compared in time that does not depend on
  // which configured token, or which prefix of one, the presented token
  // matches.
  absl::StatusOr<ClientIdentity> Authenticate(absl::string_view authorization) const;

  // True when no clients are configured and every caller is `anonymous`.
  bool anonymous() const { return clients_.empty(); }

 private:
  std::vector<ClientCredential> clients_;
};

}  // namespace switchboard::auth
