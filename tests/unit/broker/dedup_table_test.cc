#include "server/broker/dedup_table.h"

#include <string>

#include "gtest/gtest.h"

namespace switchboard::broker {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1700000000);

TEST(DedupTableTest, RemembersAnIdPerTopicUntilItsWindowEnds) {
  DedupTable table(10);
  table.Remember("jobs", "d1", "1-0", kStart + absl::Seconds(120));
  const std::string* found = table.Find("jobs", "d1", kStart + absl::Seconds(119));
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(*found, "1-0");
  EXPECT_EQ(table.Find("other", "d1", kStart), nullptr);
  EXPECT_EQ(table.Find("jobs", "d2", kStart), nullptr);
  // The window's end is exclusive: at it, the id is forgotten.
  EXPECT_EQ(table.Find("jobs", "d1", kStart + absl::Seconds(120)), nullptr);
  EXPECT_EQ(table.size(), 0u);
}

TEST(DedupTableTest, IsBoundedAndMakesRoomAsWindowsEnd) {
  DedupTable table(2);
  table.Remember("t", "d1", "1-0", kStart + absl::Seconds(1));
  table.Remember("t", "d2", "2-0", kStart + absl::Seconds(5));
  EXPECT_TRUE(table.HasRoomFor(0));
  EXPECT_FALSE(table.HasRoomFor(1));
  EXPECT_EQ(table.Find("t", "d3", kStart + absl::Seconds(1)), nullptr);  // Forgets d1.
  EXPECT_EQ(table.size(), 1u);
  EXPECT_TRUE(table.HasRoomFor(1));
}

TEST(DedupTableTest, RememberingAnIdAgainMovesItsWindow) {
  DedupTable table(10);
  table.Remember("t", "d1", "1-0", kStart + absl::Seconds(1));
  table.Remember("t", "d1", "2-0", kStart + absl::Seconds(10));
  const std::string* found = table.Find("t", "d1", kStart + absl::Seconds(5));
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(*found, "2-0");
}

}  // namespace
}  // namespace switchboard::broker
