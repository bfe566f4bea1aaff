#include "server/config/listen_address.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::config {
namespace {

using ::switchboard::testing::StatusIs;
using ::testing::Eq;

TEST(ParseHostPortTest, ParsesHostnamesAndAddresses) {
  absl::StatusOr<HostPort> parsed = ParseHostPort("127.0.0.1:7070");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->host, "127.0.0.1");
  EXPECT_EQ(parsed->port, 7070);

  parsed = ParseHostPort("redis-0.redis.svc_x:65535");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->host, "redis-0.redis.svc_x");
  EXPECT_EQ(parsed->port, 65535);

  parsed = ParseHostPort("[::1]:0");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->host, "::1");
  EXPECT_EQ(parsed->port, 0);
}

TEST(ParseHostPortTest, RejectsMalformedAddresses) {
  const std::string form = "expected host:port or [ipv6]:port";
  EXPECT_THAT(ParseHostPort("localhost"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("\"localhost\": " + form)));
  EXPECT_THAT(ParseHostPort("[::1]7070"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("\"[::1]7070\": " + form)));
  EXPECT_THAT(ParseHostPort("::1:7070"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                  Eq("\"::1:7070\": invalid host; " + form)));
  EXPECT_THAT(ParseHostPort("[nope]:7070"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                     Eq("\"[nope]:7070\": invalid host; " + form)));
  EXPECT_THAT(ParseHostPort("host name:1"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                     Eq("\"host name:1\": invalid host; " + form)));
  EXPECT_THAT(ParseHostPort(":7070"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("\":7070\": the host is empty; write 0.0.0.0 or [::] to listen on every "
                          "interface")));
  for (const char* bad_port : {"h:", "h:65536", "h:-1", "h:+80", "h:80x", "h:99999999999"}) {
    EXPECT_THAT(ParseHostPort(bad_port),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("\"" + std::string(bad_port) +
                            "\": the port must be a number from 0 to 65535")));
  }
}

TEST(ParseHostPortTest, AnAddressTooLongToBeOneIsNotQuoted) {
  // A misplaced URL with a key, say: only its length is shown.
  const std::string long_value = "https://host/v1/SECRETKEY123?apikey=" + std::string(40, 'x');
  EXPECT_THAT(ParseHostPort(long_value),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("a value of 76 characters (not shown): the port must be a number "
                          "from 0 to 65535")));
}

TEST(IsLoopbackAddressTest, LoopbackAddresses) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackAddress("127.1.2.3:0"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:7070"));
  EXPECT_TRUE(IsLoopbackAddress("LocalHost:7070"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7070"));
}

TEST(IsLoopbackAddressTest, EverythingElseIsNotLoopback) {
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7070"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.1:7070"));
  EXPECT_FALSE(IsLoopbackAddress("128.0.0.1:7070"));
  EXPECT_FALSE(IsLoopbackAddress("[::2]:7070"));
  EXPECT_FALSE(IsLoopbackAddress("switchboard.example.com:7070"));
  EXPECT_FALSE(IsLoopbackAddress("localhost.example.com:7070"));
  EXPECT_FALSE(IsLoopbackAddress("not an address"));
}

}  // namespace
}  // namespace switchboard::config
