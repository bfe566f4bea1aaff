// MaskUrl: scheme, host and port kept; user info, path segments, query
// values and fragments never shown.
#include "server/http/url_mask.h"

#include "gtest/gtest.h"

namespace switchboard::http {
namespace {

TEST(HttpMaskUrlTest, KeepsSchemeHostAndPortOnly) {
  EXPECT_EQ(MaskUrl("http://127.0.0.1:8899"), "http://127.0.0.1:8899");
  EXPECT_EQ(MaskUrl("http://127.0.0.1:8899/"), "http://127.0.0.1:8899/");
  EXPECT_EQ(MaskUrl("https://[::1]:8443/rpc"), "https://[::1]:8443/***");
}

TEST(HttpMaskUrlTest, MasksEveryPathSegment) {
  EXPECT_EQ(MaskUrl("https://eth-mainnet.example.com/v2/abcd1234secret"),
            "https://eth-mainnet.example.com/***/***");
  EXPECT_EQ(MaskUrl("https://host/token/"), "https://host/***/");
  EXPECT_EQ(MaskUrl("https://host//a"), "https://host//***");
}

TEST(HttpMaskUrlTest, MasksQueryValuesButKeepsTheirNames) {
  EXPECT_EQ(MaskUrl("https://host/?api-key=xyz"), "https://host/?api-key=***");
  EXPECT_EQ(MaskUrl("https://host/v2/abcd1234secret?key=xyz&cluster=main&bare"),
            "https://host/***/***?key=***&cluster=***&***");
  EXPECT_EQ(MaskUrl("https://host?key=xyz"), "https://host?key=***");
  EXPECT_EQ(MaskUrl("https://host/a?"), "https://host/***?");
}

TEST(HttpMaskUrlTest, DropsUserInfoAndFragment) {
  EXPECT_EQ(MaskUrl("https://user:password@host:8443/x#key=abc"), "https://host:8443/***");
  EXPECT_EQ(MaskUrl("https://token@host#frag"), "https://host");
  // An '@' in the path is not user info.
  EXPECT_EQ(MaskUrl("https://host/a@b"), "https://host/***");
}

TEST(HttpMaskUrlTest, MasksWhatIsNotAUrlEntirely) {
  EXPECT_EQ(MaskUrl(""), "***");
  EXPECT_EQ(MaskUrl("abcd1234secret"), "***");
  EXPECT_EQ(MaskUrl("127.0.0.1:8899/key"), "***");
  EXPECT_EQ(MaskUrl("://host/key"), "***");
  EXPECT_EQ(MaskUrl("1http://host/key"), "***");
}

}  // namespace
}  // namespace switchboard::http
