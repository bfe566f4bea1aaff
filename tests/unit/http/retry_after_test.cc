// ParseRetryAfter: delay-seconds and the three HTTP-date forms, relative to
// a given now; anything else is no delay at all (nullopt).
#include "server/http/retry_after.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::http {
namespace {

using ::testing::Optional;

// Wed, 21 Oct 2015 07:28:00 GMT.
const absl::Time kNow = absl::FromUnixSeconds(1445412480);

TEST(HttpRetryAfterTest, ParsesDelaySeconds) {
  EXPECT_THAT(ParseRetryAfter("1", kNow), Optional(absl::Seconds(1)));
  EXPECT_THAT(ParseRetryAfter(" 120\r\n", kNow), Optional(absl::Seconds(120)));
  EXPECT_THAT(ParseRetryAfter("0", kNow), Optional(absl::ZeroDuration()));
}

TEST(HttpRetryAfterTest, ParsesHttpDatesRelativeToNow) {
  EXPECT_THAT(ParseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", kNow), Optional(absl::Seconds(30)));
  // The obsolete RFC 850 and asctime forms.
  EXPECT_THAT(ParseRetryAfter("Wednesday, 21-Oct-15 07:29:00 GMT", kNow),
              Optional(absl::Seconds(60)));
  EXPECT_THAT(ParseRetryAfter("Wed Oct 21 07:28:05 2015", kNow), Optional(absl::Seconds(5)));
}

TEST(HttpRetryAfterTest, DateInThePastIsNoDelay) {
  EXPECT_THAT(ParseRetryAfter("Wed, 21 Oct 2015 07:00:00 GMT", kNow),
              Optional(absl::ZeroDuration()));
}

TEST(HttpRetryAfterTest, RejectsAnythingElse) {
  EXPECT_EQ(ParseRetryAfter("", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-5", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon", kNow), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("99999999999999999999", kNow), std::nullopt);
}

}  // namespace
}  // namespace switchboard::http
