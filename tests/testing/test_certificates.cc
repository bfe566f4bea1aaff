#include "tests/testing/test_certificates.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

constexpr char kOpensslBinary[] = "/usr/bin/openssl";
// An EC key is made in milliseconds, an RSA one in tenths of a second.
const std::vector<std::string> kNewKey = {"-newkey", "ec", "-pkeyopt",
                                          "ec_paramgen_curve:prime256v1", "-nodes"};

absl::Status RunOpenssl(std::vector<std::string> args) {
  args.insert(args.begin(), kOpensslBinary);
  const RunResult result = Run(args);
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat("openssl ", args[1], " failed: ", result.stderr_text));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestCertificates>> TestCertificates::Create(
    const std::string& ca_name) {
  std::string dir = (std::filesystem::temp_directory_path() / "sb-certs-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  std::unique_ptr<TestCertificates> certificates(new TestCertificates(dir));
  std::vector<std::string> args = {"req", "-x509"};
  args.insert(args.end(), kNewKey.begin(), kNewKey.end());
  args.insert(args.end(), {"-keyout", dir + "/ca.key", "-out", certificates->ca_file(), "-days",
                           "2", "-subj", "/CN=" + ca_name});
  if (absl::Status made = RunOpenssl(args); !made.ok()) return made;
  return certificates;
}

TestCertificates::~TestCertificates() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::StatusOr<TestCertificates::Issued> TestCertificates::Issue(const std::string& name,
                                                                 const std::string& subject,
                                                                 const std::string& sans) {
  const std::string base = absl::StrCat(dir_, "/", name);
  Issued issued{base + ".pem", base + ".key"};
  std::vector<std::string> request = {"req", "-new"};
  request.insert(request.end(), kNewKey.begin(), kNewKey.end());
  request.insert(request.end(),
                 {"-keyout", issued.key_file, "-out", base + ".csr", "-subj", subject});
  if (absl::Status made = RunOpenssl(request); !made.ok()) return made;
  std::ofstream extensions(base + ".ext");
  extensions << "basicConstraints=CA:FALSE\n"
             << "keyUsage=digitalSignature\n"
             << "extendedKeyUsage=serverAuth,clientAuth\n";
  if (!sans.empty()) extensions << "subjectAltName=" << sans << "\n";
  extensions.close();
  const absl::Status signed_by_ca =
      RunOpenssl({"x509", "-req", "-in", base + ".csr", "-CA", ca_file(), "-CAkey",
                  dir_ + "/ca.key", "-set_serial", absl::StrCat(serial_++), "-days", "2",
                  "-extfile", base + ".ext", "-out", issued.cert_file});
  if (!signed_by_ca.ok()) return signed_by_ca;
  return issued;
}

}  // namespace switchboard::testing
