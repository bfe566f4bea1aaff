#include "client/flags/connection_flags.h"

#include <string>
#include <utility>

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, server, "127.0.0.1:7070", "Switchboard's gRPC address.");
ABSL_FLAG(std::string, token, "",
          "Bearer token sent as `authorization: Bearer <token>`; empty sends none.");
ABSL_FLAG(bool, tls, false, "Speak TLS to the server, trusting the system's CAs.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM file of the CAs that sign the server's certificate; implies --tls.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain of this client, for mutual TLS (with --tls_key); implies --tls.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert.");
ABSL_FLAG(std::string, tls_server_name, "",
          "The name the server's certificate must carry, when it is not --server's host.");

namespace switchboard::client {

absl::StatusOr<ClientOptions> ClientOptionsFromFlags() {
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.bearer_token = absl::GetFlag(FLAGS_token);
  const std::string ca = absl::GetFlag(FLAGS_tls_ca);
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string server_name = absl::GetFlag(FLAGS_tls_server_name);
  if (!absl::GetFlag(FLAGS_tls) && ca.empty() && cert.empty() && key.empty()) {
    if (!server_name.empty()) {
      return absl::InvalidArgumentError("tls_server_name: needs --tls or --tls_ca");
    }
    return options;
  }
  absl::StatusOr<TlsOptions> tls = LoadTlsFiles(ca, cert, key);
  if (!tls.ok()) return tls.status();
  tls->server_name = server_name;
  options.tls = *std::move(tls);
  return options;
}

}  // namespace switchboard::client
