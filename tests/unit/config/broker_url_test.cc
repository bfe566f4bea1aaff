#include "server/config/broker_url.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::config {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kExpectedForms[] = "expected memory:// or redis://[user:password@]host:port[/db]";

TEST(BrokerUrlTest, Memory) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("memory://");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, BrokerUrl::Scheme::kMemory);
  EXPECT_EQ(url->Redacted(), "memory://");
}

TEST(BrokerUrlTest, RedisWithoutCredentials) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("redis://redis.default.svc:6379");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, BrokerUrl::Scheme::kRedis);
  EXPECT_EQ(url->user, "");
  EXPECT_EQ(url->password, "");
  EXPECT_EQ(url->host, "redis.default.svc");
  EXPECT_EQ(url->port, 6379);
  EXPECT_EQ(url->db, 0u);
  EXPECT_EQ(url->Redacted(), "redis://redis.default.svc:6379/0");
}

TEST(BrokerUrlTest, RedisWithCredentialsAndDatabase) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("redis://worker:p@ss:w0rd@10.0.0.5:6380/3");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->user, "worker");
  EXPECT_EQ(url->password, "p@ss:w0rd");
  EXPECT_EQ(url->host, "10.0.0.5");
  EXPECT_EQ(url->port, 6380);
  EXPECT_EQ(url->db, 3u);
  EXPECT_EQ(url->Redacted(), "redis://worker:***@10.0.0.5:6380/3");
}

TEST(BrokerUrlTest, RedisPasswordOnlyAndIpv6) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("redis://:secret@[::1]:6379");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->user, "");
  EXPECT_EQ(url->password, "secret");
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->Redacted(), "redis://:***@[::1]:6379/0");
}

TEST(BrokerUrlTest, RejectsOtherSchemes) {
  EXPECT_THAT(ParseBrokerUrl("amqp://guest:guest@rabbit:5672"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(std::string("unsupported scheme \"amqp://\"; ") + kExpectedForms)));
  EXPECT_THAT(ParseBrokerUrl("memory"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 Eq(std::string("not a URL; ") + kExpectedForms)));
  EXPECT_THAT(ParseBrokerUrl(""), StatusIs(absl::StatusCode::kInvalidArgument,
                                           Eq(std::string("not a URL; ") + kExpectedForms)));
  EXPECT_THAT(
      ParseBrokerUrl("memory://localhost"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("memory:// takes no host, path or options")));
}

TEST(BrokerUrlTest, RejectsMalformedRedisUrlsWithoutEchoingThePassword) {
  EXPECT_THAT(ParseBrokerUrl("redis://user:hunter2@redis"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("redis address \"redis\": expected host:port or [ipv6]:port")));
  EXPECT_THAT(
      ParseBrokerUrl("redis://user:hunter2@redis:0"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("the redis port must be from 1 to 65535")));
  EXPECT_THAT(ParseBrokerUrl("redis://user:hunter2@redis:6379/x"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(std::string("the redis database after '/' must be a number; ") +
                          kExpectedForms)));
  EXPECT_THAT(ParseBrokerUrl("redis://hunter2@redis:6379"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(std::string("redis credentials must be user:password or :password "
                                      "before '@'; ") +
                          kExpectedForms)));
  EXPECT_THAT(ParseBrokerUrl("rediss://u:hunter2@redis:6379"),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("hunter2"))));
}

}  // namespace
}  // namespace switchboard::config
