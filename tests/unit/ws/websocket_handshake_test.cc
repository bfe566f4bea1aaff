#include "server/ws/websocket_handshake.h"

#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::ws {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseWebSocketUrlTest, ReadsSchemeHostPortAndTarget) {
  absl::StatusOr<WebSocketUrl> url = ParseWebSocketUrl("wss://api.example.com/v1/KEY?x=1");
  ASSERT_THAT(url, IsOk());
  EXPECT_TRUE(url->tls);
  EXPECT_EQ(url->host, "api.example.com");
  EXPECT_EQ(url->port, 443);
  EXPECT_EQ(url->target, "/v1/KEY?x=1");
  EXPECT_EQ(url->host_header, "api.example.com");

  url = ParseWebSocketUrl("ws://127.0.0.1:8900");
  ASSERT_THAT(url, IsOk());
  EXPECT_FALSE(url->tls);
  EXPECT_EQ(url->port, 8900);
  EXPECT_EQ(url->target, "/");
  EXPECT_EQ(url->host_header, "127.0.0.1:8900");

  url = ParseWebSocketUrl("ws://host?apikey=1");
  ASSERT_THAT(url, IsOk());
  EXPECT_EQ(url->port, 80);
  EXPECT_EQ(url->target, "/?apikey=1");

  url = ParseWebSocketUrl("ws://[::1]:9000/ws");
  ASSERT_THAT(url, IsOk());
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->host_header, "[::1]:9000");
  EXPECT_EQ(url->target, "/ws");
}

TEST(ParseWebSocketUrlTest, RefusesWhatIsNotAWebSocketUrlWithoutEchoingIt) {
  struct Case {
    const char* url;
    const char* message;
  };
  for (const Case& c : {
           Case{"https://host/SECRET", "a WebSocket URL starts with ws:// or wss://"},
           Case{"ws://host/SECRET#frag", "a WebSocket URL has no fragment"},
           Case{"ws://user:SECRET@host/",
                "a WebSocket URL carries no user info: put a key in the path or the query"},
           Case{"ws:///SECRET", "a WebSocket URL needs a host"},
           Case{"ws://host:0/SECRET", "the port of a WebSocket URL must be 1-65535"},
           Case{"ws://host:70000/SECRET", "the port of a WebSocket URL must be 1-65535"},
           Case{"ws://host:SECRET/", "the port of a WebSocket URL must be 1-65535"},
           Case{"ws://[::1/SECRET", "an IPv6 host in a WebSocket URL lacks its ']'"},
           Case{"ws://[::1]x/SECRET", "unexpected text after the IPv6 host of a WebSocket URL"},
       }) {
    absl::StatusOr<WebSocketUrl> url = ParseWebSocketUrl(c.url);
    EXPECT_THAT(url, StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message))) << c.url;
  }
}

TEST(AcceptForTest, MatchesTheRfcExample) {
  // RFC 6455 §1.3.
  EXPECT_EQ(AcceptFor("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(NewWebSocketKeyTest, IsSixteenRandomBytesInBase64) {
  const std::string a = NewWebSocketKey();
  const std::string b = NewWebSocketKey();
  EXPECT_EQ(a.size(), 24u);  // 16 bytes -> 24 base64 characters with "==".
  EXPECT_TRUE(absl::EndsWith(a, "=="));
  EXPECT_NE(a, b);
}

TEST(BuildUpgradeRequestTest, WritesTheRequestAndExtraHeaders) {
  absl::StatusOr<WebSocketUrl> url = ParseWebSocketUrl("ws://127.0.0.1:8900/path?q=1");
  ASSERT_THAT(url, IsOk());
  EXPECT_EQ(BuildUpgradeRequest(*url, "a2V5", {{"Authorization", "Bearer t"}}),
            "GET /path?q=1 HTTP/1.1\r\n"
            "Host: 127.0.0.1:8900\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Key: a2V5\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Authorization: Bearer t\r\n"
            "\r\n");
}

class CheckUpgradeAnswerTest : public ::testing::Test {
 protected:
  const std::string key_ = "dGhlIHNhbXBsZSBub25jZQ==";
  const std::string accept_ = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
};

TEST_F(CheckUpgradeAnswerTest, AcceptsAValidAnswerWhateverTheHeaderCase) {
  EXPECT_THAT(CheckUpgradeAnswer("HTTP/1.1 101 Switching Protocols\r\n"
                                 "upgrade: WebSocket\r\n"
                                 "connection: keep-alive, Upgrade\r\n"
                                 "sec-websocket-accept:  " +
                                     accept_,
                                 key_),
              IsOk());
}

TEST_F(CheckUpgradeAnswerTest, NamesTheFirstRuleBroken) {
  EXPECT_THAT(CheckUpgradeAnswer("SSH-2.0-OpenSSH", key_),
              StatusIs(absl::StatusCode::kUnavailable,
                       Eq("the WebSocket handshake's answer is not HTTP/1.1")));
  EXPECT_THAT(CheckUpgradeAnswer("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1", key_),
              StatusIs(absl::StatusCode::kUnavailable,
                       Eq("the server refused the WebSocket upgrade: HTTP/1.1 429 Too Many "
                          "Requests")));
  EXPECT_THAT(
      CheckUpgradeAnswer(
          "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept_, key_),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("'Upgrade: websocket'")));
  EXPECT_THAT(
      CheckUpgradeAnswer(
          "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " + accept_, key_),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("'Connection: upgrade'")));
  EXPECT_THAT(CheckUpgradeAnswer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: "
                                 "Upgrade\r\nSec-WebSocket-Accept: bm90IGl0",
                                 key_),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("does not match")));
  EXPECT_THAT(
      CheckUpgradeAnswer("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade", key_),
      Not(IsOk()));
}

}  // namespace
}  // namespace switchboard::ws
