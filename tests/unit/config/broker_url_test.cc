#include "server/config/broker_url.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::config {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kExpectedForms[] =
    "expected memory://, redis://[user:password@]host:port[/db] or "
    "amqp[s]://[user:password@]host[:port][/vhost]";

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
  EXPECT_THAT(ParseBrokerUrl("kafka://user:hunter2@kafka:9092"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(std::string("unsupported scheme \"kafka://\"; ") + kExpectedForms)));
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

TEST(BrokerUrlTest, AmqpDefaults) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://rabbit.default.svc");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, BrokerUrl::Scheme::kAmqp);
  EXPECT_FALSE(url->tls);
  EXPECT_EQ(url->user, "guest");
  EXPECT_EQ(url->password, "guest");
  EXPECT_EQ(url->host, "rabbit.default.svc");
  EXPECT_EQ(url->port, 5672);
  EXPECT_EQ(url->vhost, "/");
  EXPECT_EQ(url->Redacted(), "amqp://guest:***@rabbit.default.svc:5672/");
}

TEST(BrokerUrlTest, AmqpEmptyPathIsTheDefaultVhost) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://guest:guest@127.0.0.1:5673/");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "127.0.0.1");
  EXPECT_EQ(url->port, 5673);
  EXPECT_EQ(url->vhost, "/");
}

TEST(BrokerUrlTest, AmqpEscapedSlashIsTheDefaultVhost) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://rabbit/%2F");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->vhost, "/");
  url = ParseBrokerUrl("amqp://rabbit/%2f");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->vhost, "/");
}

TEST(BrokerUrlTest, AmqpNamedVhostIsPercentDecoded) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://rabbit/prod%2Fblue%20green");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->vhost, "prod/blue green");
  EXPECT_EQ(url->Redacted(), "amqp://guest:***@rabbit:5672/prod%2Fblue%20green");
  url = ParseBrokerUrl("amqp://rabbit/prod");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->vhost, "prod");
  EXPECT_EQ(url->Redacted(), "amqp://guest:***@rabbit:5672/prod");
}

TEST(BrokerUrlTest, AmqpsDefaultsToTlsPort) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqps://worker:s3cret@rabbit.example.com/prod");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->scheme, BrokerUrl::Scheme::kAmqp);
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->port, 5671);
  EXPECT_EQ(url->user, "worker");
  EXPECT_EQ(url->password, "s3cret");
  EXPECT_EQ(url->Redacted(), "amqps://worker:***@rabbit.example.com:5671/prod");
  url = ParseBrokerUrl("amqps://rabbit:15671");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->port, 15671);
}

TEST(BrokerUrlTest, AmqpPasswordWithRawAtAndColon) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://worker:p@ss:w0rd@rabbit:5672/");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->user, "worker");
  EXPECT_EQ(url->password, "p@ss:w0rd");
  EXPECT_EQ(url->host, "rabbit");
  EXPECT_EQ(url->Redacted(), "amqp://worker:***@rabbit:5672/");
}

TEST(BrokerUrlTest, AmqpCredentialsArePercentDecoded) {
  absl::StatusOr<BrokerUrl> url =
      ParseBrokerUrl("amqp://us%40er%3Aname:p%40ss%3Aw%2F0rd%25@rabbit/vh");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->user, "us@er:name");
  EXPECT_EQ(url->password, "p@ss:w/0rd%");
  EXPECT_EQ(url->vhost, "vh");
  const std::string redacted = url->Redacted();
  EXPECT_EQ(redacted, "amqp://us%40er%3Aname:***@rabbit:5672/vh");
  EXPECT_THAT(redacted, Not(HasSubstr("p@ss")));
  EXPECT_THAT(redacted, Not(HasSubstr("p%40ss")));
}

TEST(BrokerUrlTest, AmqpUserWithoutPassword) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://worker@rabbit");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->user, "worker");
  EXPECT_EQ(url->password, "");
  EXPECT_EQ(url->Redacted(), "amqp://worker@rabbit:5672/");
}

TEST(BrokerUrlTest, AmqpIpv6) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl("amqp://u:hunter2@[::1]:5673/");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 5673);
  EXPECT_EQ(url->Redacted(), "amqp://u:***@[::1]:5673/");
  url = ParseBrokerUrl("amqp://[fd00::5]");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "fd00::5");
  EXPECT_EQ(url->port, 5672);
}

TEST(BrokerUrlTest, RejectsMalformedAmqpUrlsWithoutEchoingThePassword) {
  const std::vector<std::string> bad = {
      "amqp://user:hunter2@",              // no host
      "amqp://user:hunter2@rabbit:0",      // port 0
      "amqp://user:hunter2@rabbit:70000",  // port too large
      "amqp://user:hunter2@rabbit:x",      // port not a number
      "amqp://user:hunter2@::1:5672",      // IPv6 without brackets
      "amqp://user:hunter2@[::1:5672",     // no closing bracket
      "amqp://user:hunter2@rabbit/a/b",    // vhost of two segments
      "amqp://user:hunter2%zz@rabbit",     // bad escape in the password
      "amqp://user:hunter2@rabbit/%4",     // bad escape in the vhost
      "amqp://user:hunter2@rabbit/?heartbeat=5",
      "amqp://user:hun/ter2@rabbit",  // raw '/' in the password cuts the authority
      "amqps://user:hunter2@rabbit:",
      "amqp://user:a:hunter2/x@rabbit",  // the address would hold the password
  };
  for (const std::string& url : bad) {
    absl::StatusOr<BrokerUrl> parsed = ParseBrokerUrl(url);
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("hunter2"))))
        << url;
    EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("hun")))) << url;
  }
  EXPECT_THAT(
      ParseBrokerUrl("amqp://user:hunter2@rabbit:0"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("the amqp port must be from 1 to 65535")));
  EXPECT_THAT(ParseBrokerUrl("amqp://user:hunter2@"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(std::string("the amqp URL has no host; ") + kExpectedForms)));
  EXPECT_THAT(ParseBrokerUrl("amqp://user:hunter2%zz@rabbit"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(std::string("the amqp password has a '%' not followed by two hex "
                                      "digits; ") +
                          kExpectedForms)));
  EXPECT_THAT(ParseBrokerUrl("amqp://rabbit/?heartbeat=5"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("amqp URL query parameters are not supported; set broker.amqp "
                          "instead")));
  // Without credentials the address is quoted, to help find the typo.
  EXPECT_THAT(ParseBrokerUrl("amqp://::1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"::1\"")));
}

}  // namespace
}  // namespace switchboard::config
