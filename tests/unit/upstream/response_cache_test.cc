#include "server/upstream/response_cache.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace switchboard::upstream {
namespace {

using ::testing::Optional;

const absl::Time kStart = absl::FromUnixSeconds(1000);

TEST(ResponseCacheTest, AnswersUntilTheTtlEnds) {
  ResponseCache cache(10, 1 << 20);
  cache.Insert("getSlot", "", "42", kStart, absl::Milliseconds(400));
  EXPECT_THAT(cache.Find("getSlot", "", kStart + absl::Milliseconds(399)),
              Optional(std::string("42")));
  EXPECT_EQ(cache.Find("getSlot", "", kStart + absl::Milliseconds(400)), std::nullopt);
  EXPECT_EQ(cache.size(), 0u) << "an expired entry found is dropped";
}

TEST(ResponseCacheTest, OnlyIdenticalParamsShareAnEntry) {
  ResponseCache cache(10, 1 << 20);
  cache.Insert("getBalance", R"(["a"])", "1", kStart, absl::Seconds(1));
  EXPECT_EQ(cache.Find("getBalance", R"(["b"])", kStart), std::nullopt);
  EXPECT_EQ(cache.Find("getBalance", R"([ "a"])", kStart), std::nullopt);
  EXPECT_EQ(cache.Find("getSlot", R"(["a"])", kStart), std::nullopt);
  EXPECT_THAT(cache.Find("getBalance", R"(["a"])", kStart), Optional(std::string("1")));
}

TEST(ResponseCacheTest, PastTheEntryBoundTheSoonestToExpireGoes) {
  ResponseCache cache(2, 1 << 20);
  cache.Insert("a", "", "1", kStart, absl::Seconds(30));
  cache.Insert("b", "", "2", kStart, absl::Seconds(10));
  cache.Insert("c", "", "3", kStart, absl::Seconds(20));
  EXPECT_EQ(cache.size(), 2u);
  EXPECT_EQ(cache.Find("b", "", kStart), std::nullopt);
  EXPECT_THAT(cache.Find("a", "", kStart), Optional(std::string("1")));
  EXPECT_THAT(cache.Find("c", "", kStart), Optional(std::string("3")));
}

TEST(ResponseCacheTest, ByteBoundCountsKeysAndAnswers) {
  ResponseCache cache(100, 20);
  cache.Insert("m", "", std::string(30, 'x'), kStart, absl::Seconds(1));
  EXPECT_EQ(cache.size(), 0u) << "larger than the whole cache";
  cache.Insert("a", "", std::string(8, 'x'), kStart, absl::Seconds(1));  // 2 + 8 bytes.
  cache.Insert("b", "", std::string(8, 'x'), kStart, absl::Seconds(2));
  EXPECT_EQ(cache.bytes(), 20u);
  cache.Insert("c", "", std::string(8, 'x'), kStart, absl::Seconds(3));
  EXPECT_EQ(cache.bytes(), 20u);
  EXPECT_EQ(cache.Find("a", "", kStart), std::nullopt);
}

TEST(ResponseCacheTest, InsertingAgainReplacesTheAnswerAndItsTtl) {
  ResponseCache cache(10, 1 << 20);
  cache.Insert("getSlot", "", "41", kStart, absl::Seconds(1));
  cache.Insert("getSlot", "", "42", kStart, absl::Seconds(5));
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_THAT(cache.Find("getSlot", "", kStart + absl::Seconds(3)), Optional(std::string("42")));
}

}  // namespace
}  // namespace switchboard::upstream
