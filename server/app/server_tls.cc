#include "server/app/server_tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/common/status_macros.h"

namespace switchboard::app {
namespace {

absl::Status FieldError(absl::string_view field, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("server.tls.", field, ": ", message));
}

// A regular file we may read, of at most kMaxTlsFileBytes (a device such as
// /dev/zero would never end).
absl::Status CheckReadableFile(absl::string_view field, const std::string& path) {
  struct stat info = {};
  if (stat(path.c_str(), &info) != 0) {
    return FieldError(field, absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISREG(info.st_mode)) return FieldError(field, absl::StrCat(path, " is not a file"));
  if (info.st_size > kMaxTlsFileBytes) {
    return FieldError(field, absl::StrCat(path, " is larger than ", kMaxTlsFileBytes, " bytes"));
  }
  return absl::OkStatus();
}

// OpenSSL's reason for the last failure, and clears its error queue. Its
// text names the problem (no start line, key values mismatch), never the
// file's content.
std::string TakeOpensslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  const char* reason = ERR_reason_error_string(code);
  return reason != nullptr ? reason : absl::StrCat("OpenSSL error ", code);
}

// Loads the files the way a handshake will, so a start with unusable files
// fails here.
absl::Status CheckTlsFiles(const config::v1::Tls& tls) {
  SB_RETURN_IF_ERROR(CheckReadableFile("cert_file", tls.cert_file()));
  SB_RETURN_IF_ERROR(CheckReadableFile("key_file", tls.key_file()));
  if (!tls.client_ca_file().empty()) {
    SB_RETURN_IF_ERROR(CheckReadableFile("client_ca_file", tls.client_ca_file()));
  }
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_server_method()),
                                                            &SSL_CTX_free);
  if (context == nullptr) return absl::InternalError("cannot create an OpenSSL context");
  if (SSL_CTX_use_certificate_chain_file(context.get(), tls.cert_file().c_str()) != 1) {
    return FieldError("cert_file", absl::StrCat("no PEM certificate chain in ", tls.cert_file(),
                                                ": ", TakeOpensslError()));
  }
  // The key is read on its own: OpenSSL would report a key that does not
  // match the chain as unreadable.
  std::unique_ptr<BIO, decltype(&BIO_free)> key_file(BIO_new_file(tls.key_file().c_str(), "r"),
                                                     &BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      key_file == nullptr ? nullptr
                          : PEM_read_bio_PrivateKey(key_file.get(), nullptr, nullptr, nullptr),
      &EVP_PKEY_free);
  if (key == nullptr) {
    return FieldError("key_file", absl::StrCat("no PEM private key in ", tls.key_file(), ": ",
                                               TakeOpensslError()));
  }
  if (X509_check_private_key(SSL_CTX_get0_certificate(context.get()), key.get()) != 1) {
    ERR_clear_error();
    return FieldError("key_file", "does not match the certificate of cert_file");
  }
  if (!tls.client_ca_file().empty() &&
      SSL_CTX_load_verify_locations(context.get(), tls.client_ca_file().c_str(), nullptr) != 1) {
    return FieldError("client_ca_file", absl::StrCat("no PEM certificate in ", tls.client_ca_file(),
                                                     ": ", TakeOpensslError()));
  }
  return absl::OkStatus();
}

grpc_ssl_client_certificate_request_type ClientCertificateRequest(const config::v1::Tls& tls) {
  if (tls.client_ca_file().empty()) return GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  return tls.require_client_cert() ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                   : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const config::v1::Server& server) {
  if (!server.has_tls()) return grpc::InsecureServerCredentials();
  const config::v1::Tls& tls = server.tls();
  SB_RETURN_IF_ERROR(CheckTlsFiles(tls));
  // The watcher counts whole seconds.
  const unsigned int refresh_seconds = (tls.refresh_interval_ms() + 999) / 1000;
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      tls.key_file(), tls.cert_file(), tls.client_ca_file(), refresh_seconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!tls.client_ca_file().empty()) options.watch_root_certs();
  options.set_cert_request_type(ClientCertificateRequest(tls));
  return grpc::experimental::TlsServerCredentials(options);
}

}  // namespace switchboard::app
