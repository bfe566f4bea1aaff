// The gRPC port's credentials: plaintext, or TLS from `server.tls`.
//
// The TLS files are checked once at startup (readable regular files of
// bounded size, a parseable chain, a key that matches it, a parseable CA
// bundle) so a mistake fails the start with the field named, instead of
// every handshake later. After that gRPC's file watcher reads them again
// every refresh interval, on its own thread: a rotated certificate reaches
// new connections without a restart, and a half-written rotation (a key
// that does not match the chain yet) keeps the previous pair.
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "absl/status/statusor.h"
#include "server/config/config.h"

namespace switchboard::app {

// The largest certificate, key or CA file accepted.
inline constexpr int64_t kMaxTlsFileBytes = 1 << 20;

// Insecure credentials without `server.tls`; TLS ones with it.
// INVALID_ARGUMENT naming the field when a file is unusable.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const config::v1::Server& server);

}  // namespace switchboard::app
