// Certificates for TLS tests, made with the openssl command line in a
// temporary directory: a CA of its own, and leaf certificates it signs
// (EC P-256, valid for two days, usable by servers and clients alike).
// The destructor removes the directory. Not thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace switchboard::testing {

class TestCertificates {
 public:
  // A leaf certificate's files.
  struct Issued {
    std::string cert_file;
    std::string key_file;
  };

  // Makes the directory and a CA named `ca_name`.
  static absl::StatusOr<std::unique_ptr<TestCertificates>> Create(
      const std::string& ca_name = "Switchboard Test CA");
  ~TestCertificates();

  TestCertificates(const TestCertificates&) = delete;
  TestCertificates& operator=(const TestCertificates&) = delete;

  // Issues `<name>.pem` and `<name>.key`, signed by the CA, with `subject`
  // in openssl's -subj form (`/O=Acme/CN=worker-a`) and `sans` as for
  // subjectAltName (`IP:127.0.0.1,DNS:localhost`; empty: none).
  absl::StatusOr<Issued> Issue(const std::string& name, const std::string& subject,
                               const std::string& sans);

  // The CA's certificate, PEM.
  std::string ca_file() const { return dir_ + "/ca.pem"; }
  const std::string& dir() const { return dir_; }

 private:
  explicit TestCertificates(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
  int serial_ = 1;
};

}  // namespace switchboard::testing
