// Who is calling: the identity a bearer token maps to, with the client's
// weight, quota and the topics it may use.
//
// Produced by ClientRegistry::Authenticate (client_registry.h) once per RPC
// and carried by the service layer for the life of the call. A plain value:
// copy it freely; any thread may read a const one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace switchboard::auth {

// The id every caller gets when no clients are configured.
inline constexpr absl::string_view kAnonymousClientId = "anonymous";

struct ClientIdentity {
  std::string id;
  // Share of fair-queued upstream capacity relative to other clients (>= 1).
  uint32_t weight = 1;
  // Per-client request quota; 0 means none.
  double requests_per_second = 0;
  // Topic names and prefix patterns (`news.*`) this client may use. Empty
  // means every topic.
  std::vector<std::string> allowed_topics;

  // True when `topic` (a concrete topic name) is allowed.
  bool MayUseTopic(absl::string_view topic) const;
};

}  // namespace switchboard::auth
