// The `switchboard` binary refusing bad configuration files (issue 15 point
// 5), end to end: exit code 2, one short line on stderr that names the bad
// field, and never a value that may be a secret (a URL with its API key, a
// token, the expansion of a ${VAR}), nor a huge value repeated. The config
// loader's own tests (tests/unit/config/) check the exact messages; these
// check what an operator sees from the process, after flags, environment
// and main()'s error path.
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// switchboard's exit code for invalid flags or configuration (server/main.cc).
constexpr int kExitBadConfig = 2;
// "A few kilobytes": one error line, whatever the size of the bad value.
constexpr size_t kMaxStderrBytes = 4096;
constexpr absl::Duration kRunTimeout = absl::Seconds(30);
constexpr char kConfigError[] = "switchboard: invalid configuration: ";

class ConfigErrorsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = "/tmp/switchboard-config-errors-XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    dir_ = std::move(dir);
  }

  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Writes `yaml` to a file of the test's directory and runs switchboard on
  // it, with `env` ("NAME=value", ...) added to its environment.
  RunResult RunOn(const std::string& yaml, const std::vector<std::string>& env = {}) {
    const std::string path = absl::StrCat(dir_, "/config.yaml");
    std::ofstream(path, std::ios::binary | std::ios::trunc) << yaml;
    std::vector<std::string> argv = {"/usr/bin/env"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.push_back(SWITCHBOARD_BINARY);
    argv.push_back(absl::StrCat("--config=", path));
    // Should a bad file ever be accepted, the server must not take real ports.
    argv.push_back("--listen=127.0.0.1:0");
    argv.push_back("--metrics_listen=127.0.0.1:0");
    return testing::Run(std::move(argv), std::nullopt, kRunTimeout);
  }

  // Expects a refusal on stderr that names `field`, shows none of `secrets`
  // and stays short.
  static void ExpectRefusedNaming(const RunResult& run, const std::string& field,
                                  const std::vector<std::string>& secrets) {
    EXPECT_EQ(run.exit_code, kExitBadConfig) << run.stderr_text;
    EXPECT_THAT(run.stderr_text, StartsWith(absl::StrCat(kConfigError, field, ": ")));
    EXPECT_LT(run.stderr_text.size(), kMaxStderrBytes);
    for (const std::string& secret : secrets) {
      EXPECT_THAT(run.stderr_text, Not(HasSubstr(secret))) << "echoes " << secret;
      EXPECT_THAT(run.stdout_text, Not(HasSubstr(secret))) << "echoes " << secret;
    }
  }

  std::string dir_;
};

TEST_F(ConfigErrorsProcessTest, AUrlWithAnApiKeyWhereAListIsExpectedIsNamedButNotShown) {
  const RunResult run = RunOn(R"(upstreams:
  - name: sol
    urls: "https://host/v1/SECRETKEY123?apikey=SECRET2"
)");
  ExpectRefusedNaming(run, "upstreams[0].urls",
                      {"SECRETKEY123", "SECRET2", "apikey", "host/v1", "https://"});
  EXPECT_THAT(run.stderr_text, HasSubstr("must be a list"));
}

TEST_F(ConfigErrorsProcessTest, ATokenWhereANumberIsExpectedIsNamedButNotShown) {
  const RunResult run = RunOn(R"(server:
  drain_timeout_ms: sbtok_live_SECRET3_4f9a2c7e1b
)");
  ExpectRefusedNaming(run, "server.drain_timeout_ms", {"SECRET3", "4f9a2c7e1b", "sbtok"});
  EXPECT_THAT(run.stderr_text, HasSubstr("must be a non-negative integer"));
}

// The variable holds a URL with its key (from a Kubernetes Secret, say).
TEST_F(ConfigErrorsProcessTest, AnExpandedVariableInATypeErrorIsNamedByItsReferenceOnly) {
  const std::string secret = "https://rpc.example/v2/SECRET4KEY9d8c7b6a";
  const std::vector<std::string> secret_parts = {secret, "SECRET4KEY", "9d8c7b6a", "rpc.example",
                                                 "https://"};
  const std::vector<std::string> env = {absl::StrCat("SB_TEST_RPC_URL=", secret)};
  // Expanded, then refused as a number.
  const RunResult number = RunOn(R"(server:
  drain_timeout_ms: "${SB_TEST_RPC_URL}"
)",
                                 env);
  ExpectRefusedNaming(number, "server.drain_timeout_ms", secret_parts);
  EXPECT_THAT(number.stderr_text, HasSubstr("the expansion of \"${SB_TEST_RPC_URL}\" (not shown)"));
  // Refused as a list (before any expansion).
  const RunResult list = RunOn(R"(upstreams:
  - name: sol
    urls: "${SB_TEST_RPC_URL}"
)",
                               env);
  ExpectRefusedNaming(list, "upstreams[0].urls", secret_parts);
}

// Just under the 1 MiB file cap: the value reaches the field, which
// describes it by its length.
TEST_F(ConfigErrorsProcessTest, AHugeBadValueIsDescribedNotRepeated) {
  std::string huge;
  while (huge.size() < 1000000) huge += "SECRET5-";
  const RunResult run = RunOn(absl::StrCat("server:\n  drain_timeout_ms: ", huge, "\n"));
  ExpectRefusedNaming(run, "server.drain_timeout_ms", {"SECRET5"});
  EXPECT_THAT(run.stderr_text, HasSubstr(absl::StrCat("a value of ", huge.size(), " characters")));
}

// Ten megabytes: the file is refused by its size (a bound on what is read
// before parsing), so no field is reached; nothing of the value is shown.
TEST_F(ConfigErrorsProcessTest, ATenMegabyteBadValueIsRefusedByTheFileSizeCap) {
  std::string huge;
  while (huge.size() < (10u << 20)) huge += "SECRET6-";
  const RunResult run = RunOn(absl::StrCat("server:\n  drain_timeout_ms: ", huge, "\n"));
  EXPECT_EQ(run.exit_code, kExitBadConfig) << run.stderr_text.substr(0, kMaxStderrBytes);
  EXPECT_THAT(run.stderr_text,
              StartsWith(absl::StrCat(kConfigError, "config file ", dir_,
                                      "/config.yaml is larger than 1048576 bytes")));
  EXPECT_LT(run.stderr_text.size(), kMaxStderrBytes);
  EXPECT_THAT(run.stderr_text, Not(HasSubstr("SECRET6")));
}

TEST_F(ConfigErrorsProcessTest, AFileOfTwoYamlDocumentsIsRefused) {
  const RunResult run = RunOn(R"(server:
  listen: "127.0.0.1:0"
---
server:
  listen: "127.0.0.1:1"
)");
  EXPECT_EQ(run.exit_code, kExitBadConfig) << run.stderr_text;
  EXPECT_THAT(run.stderr_text, StartsWith(absl::StrCat(
                                   kConfigError, "YAML: the config holds more than one document")));
  EXPECT_LT(run.stderr_text.size(), kMaxStderrBytes);
}

}  // namespace
}  // namespace switchboard::testing
