// Loading the config: from a file (bounded, with its errors), with flag
// overrides, or the default when there is no file.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config/config.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/config/config_examples.h"

namespace switchboard::config {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;
using testing_examples::ExampleEnv;
using testing_examples::FakeEnv;
using testing_examples::kExample;

// A config file in the test's temporary directory, removed at the end.
class ConfigFileTest : public ::testing::Test {
 protected:
  ~ConfigFileTest() override { std::remove(path_.c_str()); }

  void Write(absl::string_view contents) {
    std::FILE* file = std::fopen(path_.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    ASSERT_EQ(std::fwrite(contents.data(), 1, contents.size(), file), contents.size());
    ASSERT_EQ(std::fclose(file), 0);
  }

  const std::string path_ =
      ::testing::TempDir() + "switchboard_config_test_" + std::to_string(getpid()) + ".yaml";
};

TEST_F(ConfigFileTest, LoadsAFile) {
  Write(kExample);
  absl::StatusOr<Config> config = LoadConfigFile(path_, ExampleEnv());
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->clients(0).token(), "burn-secret");
  EXPECT_EQ(config->topics_size(), 2);
}

TEST_F(ConfigFileTest, FileErrorsHaveTheFieldPath) {
  Write("limits:\n  max_message_bytes: 0\n");
  EXPECT_THAT(LoadConfigFile(path_, FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("limits.max_message_bytes: must be between 1 and 67108864, got 0")));
}

TEST_F(ConfigFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(LoadConfigFile(path_, FakeEnv()),
              StatusIs(absl::StatusCode::kNotFound,
                       Eq("cannot read config file " + path_ + ": No such file or directory")));
  EXPECT_THAT(LoadConfig(path_, FlagOverrides(), FakeEnv()), StatusIs(absl::StatusCode::kNotFound));
}

TEST(LoadConfigFileTest, AnEndlessFileIsRefusedPastOneMebibyte) {
  EXPECT_THAT(LoadConfigFile("/dev/zero", FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("config file /dev/zero is larger than 1048576 bytes")));
}

TEST(LoadConfigFileTest, ADirectoryIsNotAConfigFile) {
  const std::string directory = ::testing::TempDir();
  EXPECT_THAT(LoadConfigFile(directory, FakeEnv()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       Eq("cannot read config file " + directory + ": Is a directory")));
}

TEST_F(ConfigFileTest, FlagsOverrideTheFile) {
  Write(
      "server: {listen: \"0.0.0.0:1000\", metrics_listen: \"0.0.0.0:1001\"}\n"
      "broker: {url: \"redis://r:6379\"}\n");
  FlagOverrides overrides;
  overrides.listen = "127.0.0.1:2000";
  overrides.broker_url = "memory://";
  absl::StatusOr<Config> config = LoadConfig(path_, overrides, FakeEnv());
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->server().listen(), "127.0.0.1:2000");
  EXPECT_EQ(config->server().metrics_listen(), "0.0.0.0:1001");
  EXPECT_EQ(config->broker().url(), "memory://");
}

TEST_F(ConfigFileTest, TheBrokerFlagMayMakeAGlobalLimitValid) {
  Write(
      "upstreams: [{name: p, urls: [\"http://h/\"], rate_limit: {requests_per_second: 5, "
      "scope: global}}]\n");
  EXPECT_THAT(LoadConfig(path_, FlagOverrides(), FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("upstreams[0].rate_limit.scope: global needs a redis://")));
  FlagOverrides overrides;
  overrides.broker_url = "redis://r:6379";
  EXPECT_THAT(LoadConfig(path_, overrides, FakeEnv()), IsOk());
}

TEST(LoadConfigTest, WithoutAFileRunsTheDefaultConfig) {
  absl::StatusOr<Config> config = LoadConfig("", FlagOverrides(), FakeEnv());
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->SerializeAsString(), DefaultConfig().SerializeAsString());

  FlagOverrides overrides;
  overrides.metrics_listen = "127.0.0.1:0";
  config = LoadConfig("", overrides, FakeEnv());
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->server().listen(), "127.0.0.1:7070");
  EXPECT_EQ(config->server().metrics_listen(), "127.0.0.1:0");
}

TEST(LoadConfigTest, InvalidOverridesAreReportedUnderTheirField) {
  FlagOverrides listen;
  listen.listen = "nowhere";
  EXPECT_THAT(LoadConfig("", listen, FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("server.listen: \"nowhere\": expected host:port or [ipv6]:port")));
  FlagOverrides broker;
  broker.broker_url = "kafka://k:9092";
  EXPECT_THAT(LoadConfig("", broker, FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::StartsWith("broker.url: unsupported scheme \"kafka://\"")));
}

}  // namespace
}  // namespace switchboard::config
