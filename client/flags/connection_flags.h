// The flags that say how to reach Switchboard, shared by sbctl and the
// example workers so they read the same way everywhere:
//
//   --server=HOST:PORT     the gRPC address
//   --token=T              bearer token
//   --tls                  TLS with the system's CAs
//   --tls_ca=FILE          TLS, trusting the CAs in FILE (implies --tls)
//   --tls_cert=FILE --tls_key=FILE
//                          the worker's certificate and key (mutual TLS)
//   --tls_server_name=N    the name the server's certificate carries, when
//                          it is not --server's host
#pragma once

#include "absl/status/statusor.h"
#include "switchboard/client/client.h"

namespace switchboard::client {

// ClientOptions from the flags above; the other options keep the library's
// defaults. INVALID_ARGUMENT naming the flag when a TLS file cannot be used.
absl::StatusOr<ClientOptions> ClientOptionsFromFlags();

}  // namespace switchboard::client
