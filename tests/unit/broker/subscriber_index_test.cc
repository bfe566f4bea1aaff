#include "server/broker/subscriber_index.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::broker {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SubscriberIndexTest, MatchesExactNamesAndPrefixes) {
  SubscriberIndex index;
  index.Add("news.sports", 1);
  index.Add("news.*", 2);
  index.Add("news.sp*", 3);
  index.Add("weather", 4);
  index.Add("*", 5);

  EXPECT_THAT(index.Match("news.sports"), ElementsAre(1, 5, 2, 3));
  EXPECT_THAT(index.Match("news.politics"), ElementsAre(5, 2));
  EXPECT_THAT(index.Match("weather"), ElementsAre(4, 5));
  EXPECT_THAT(index.Match("news"), ElementsAre(5));
}

TEST(SubscriberIndexTest, ExactPatternDoesNotMatchLongerTopics) {
  SubscriberIndex index;
  index.Add("news", 1);
  EXPECT_THAT(index.Match("news.sports"), IsEmpty());
  EXPECT_THAT(index.Match("new"), IsEmpty());
}

TEST(SubscriberIndexTest, CountsReferencesPerPattern) {
  SubscriberIndex index;
  EXPECT_TRUE(index.Add("news.*", 1));
  EXPECT_FALSE(index.Add("news.*", 2));
  EXPECT_TRUE(index.Add("news", 3));  // A different pattern.

  EXPECT_FALSE(index.Remove("news.*", 1));
  EXPECT_THAT(index.Match("news.a"), ElementsAre(2));
  EXPECT_TRUE(index.Remove("news.*", 2));
  EXPECT_THAT(index.Match("news.a"), IsEmpty());
  EXPECT_TRUE(index.Remove("news", 3));
  EXPECT_TRUE(index.Remove("news", 3));  // Already gone.
}

}  // namespace
}  // namespace switchboard::broker
