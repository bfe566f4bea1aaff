// BuildTopicPolicies: topic declarations of the config as the brokers' policies.
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
using ::testing::HasSubstr;
using testing_examples::ExampleEnv;
using testing_examples::FakeEnv;
using testing_examples::kExample;

TEST(BuildTopicPoliciesTest, MapsDeclarationsByExactNameAndPrefix) {
  absl::StatusOr<Config> config = ParseConfig(kExample, ExampleEnv());
  ASSERT_THAT(config, IsOk());
  const broker::TopicPolicies policies = BuildTopicPolicies(*config);
  ASSERT_EQ(policies.declarations().size(), 2u);

  const broker::TopicPolicy& news = policies.Resolve("news.sports");
  EXPECT_EQ(news.kind, broker::TopicKind::kEphemeral);
  EXPECT_EQ(news.subscriber_buffer, 200u);
  EXPECT_EQ(news.overflow, broker::OverflowPolicy::kDropNewest);
  EXPECT_EQ(&policies.Resolve("news."), &news);
  EXPECT_EQ(policies.Resolve("news").kind, broker::TopicKind::kDurable);

  const broker::TopicPolicy& jobs = policies.Resolve("jobs");
  EXPECT_EQ(jobs.kind, broker::TopicKind::kDurable);
  EXPECT_EQ(jobs.max_len, 5000u);
  EXPECT_EQ(jobs.ack_deadline, absl::Seconds(15));
  EXPECT_EQ(jobs.max_delivery_attempts, 3u);
  EXPECT_EQ(jobs.dead_letter_suffix, ".dead");
  EXPECT_TRUE(jobs.exclusive);

  // Undeclared topics are durable with the broker's defaults.
  const broker::TopicPolicy& other = policies.Resolve("jobs2");
  EXPECT_EQ(other.kind, broker::TopicKind::kDurable);
  EXPECT_EQ(other.max_len, broker::TopicPolicy().max_len);
}

TEST(BuildTopicPoliciesTest, MapsGroupsDeclaredAtStartup) {
  absl::StatusOr<Config> config = ParseConfig(R"yaml(
topics:
  - {name: jobs, groups: [workers, audit]}
  - {name: "jobs.*"}
)yaml",
                                              FakeEnv());
  ASSERT_THAT(config, IsOk());
  const broker::TopicPolicies policies = BuildTopicPolicies(*config);
  EXPECT_THAT(policies.Resolve("jobs").groups, ::testing::ElementsAre("workers", "audit"));
  EXPECT_THAT(policies.Resolve("jobs.x").groups, ::testing::IsEmpty());
  EXPECT_THAT(policies.Resolve("other").groups, ::testing::IsEmpty());
}

TEST(BuildTopicPoliciesTest, ExactNamesWinOverPrefixes) {
  absl::StatusOr<Config> config = ParseConfig(R"yaml(
topics:
  - {name: "news.*", kind: ephemeral, overflow: disconnect}
  - {name: "news.archive", kind: durable, max_len: 7}
  - {name: "news.eu.*", kind: ephemeral, overflow: drop_newest}
)yaml",
                                              FakeEnv());
  ASSERT_THAT(config, IsOk());
  const broker::TopicPolicies policies = BuildTopicPolicies(*config);
  EXPECT_EQ(policies.Resolve("news.archive").kind, broker::TopicKind::kDurable);
  EXPECT_EQ(policies.Resolve("news.archive").max_len, 7u);
  EXPECT_EQ(policies.Resolve("news.archived").overflow, broker::OverflowPolicy::kDisconnect);
  EXPECT_EQ(policies.Resolve("news.eu.fr").overflow, broker::OverflowPolicy::kDropNewest);
}

TEST(BuildTopicPoliciesTest, SchemaDefaultsMatchTheBrokerDefaults) {
  absl::StatusOr<Config> config =
      ParseConfig("topics: [{name: d}, {name: e, kind: ephemeral}]", FakeEnv());
  ASSERT_THAT(config, IsOk());
  const broker::TopicPolicies policies = BuildTopicPolicies(*config);
  const broker::TopicPolicy defaults;
  const broker::TopicPolicy& durable = policies.Resolve("d");
  EXPECT_EQ(durable.kind, broker::TopicKind::kDurable);
  EXPECT_EQ(durable.max_len, defaults.max_len);
  EXPECT_EQ(durable.ack_deadline, defaults.ack_deadline);
  EXPECT_EQ(durable.max_delivery_attempts, defaults.max_delivery_attempts);
  EXPECT_EQ(durable.dead_letter_suffix, defaults.dead_letter_suffix);
  EXPECT_EQ(durable.exclusive, defaults.exclusive);
  EXPECT_FALSE(durable.retry_backoff.has_value());
  const broker::TopicPolicy& ephemeral = policies.Resolve("e");
  EXPECT_EQ(ephemeral.kind, broker::TopicKind::kEphemeral);
  EXPECT_EQ(ephemeral.subscriber_buffer, defaults.subscriber_buffer);
  EXPECT_EQ(ephemeral.overflow, defaults.overflow);
}

TEST(BuildTopicPoliciesTest, RetryBackoffBecomesTheNackDelayByAttempt) {
  absl::StatusOr<Config> config = ParseConfig(
      "topics: [{name: jobs, retry_backoff: {min_ms: 500, max_ms: 3000}}, {name: other}]",
      FakeEnv());
  ASSERT_THAT(config, IsOk());
  const broker::TopicPolicies policies = BuildTopicPolicies(*config);
  const broker::TopicPolicy& jobs = policies.Resolve("jobs");
  ASSERT_TRUE(jobs.retry_backoff.has_value());
  EXPECT_EQ(broker::NackDelay(jobs, 1), absl::Milliseconds(500));
  EXPECT_EQ(broker::NackDelay(jobs, 2), absl::Seconds(1));
  EXPECT_EQ(broker::NackDelay(jobs, 3), absl::Seconds(2));
  EXPECT_EQ(broker::NackDelay(jobs, 4), absl::Seconds(3));
  EXPECT_EQ(broker::NackDelay(jobs, 40), absl::Seconds(3));
  EXPECT_EQ(broker::NackDelay(policies.Resolve("other"), 3), absl::ZeroDuration());
}

TEST(BuildTopicPoliciesTest, MaxBytesBecomesAMaxLenByTheAverageEntrySize) {
  absl::StatusOr<Config> config = ParseConfig(
      "topics: [{name: jobs, max_len: 1000, max_bytes: 100000, ordering_partitions: 16}, "
      "{name: other, max_len: 1000}]",
      FakeEnv());
  ASSERT_THAT(config, IsOk());
  const broker::TopicPolicies policies = BuildTopicPolicies(*config);
  const broker::TopicPolicy& jobs = policies.Resolve("jobs");
  EXPECT_EQ(jobs.max_bytes, 100000u);
  EXPECT_EQ(jobs.ordering_partitions, 16u);
  EXPECT_EQ(broker::MaxLenWithinBytes(jobs, 1000), 100u);
  EXPECT_EQ(broker::MaxLenWithinBytes(jobs, 10), 1000u);  // max_len still bounds it.
  EXPECT_EQ(broker::MaxLenWithinBytes(jobs, 1e9), 1u);    // At least one entry.
  EXPECT_EQ(broker::MaxLenWithinBytes(jobs, 0), 1000u);   // No average yet.
  EXPECT_EQ(broker::MaxLenWithinBytes(policies.Resolve("other"), 1000), 1000u);
  EXPECT_THAT(ParseConfig("topics: [{name: e, kind: ephemeral, max_bytes: 5}]", FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("topics[0].max_bytes")));
}

TEST(BuildTopicPoliciesTest, NoTopicsMeansEverythingIsDurable) {
  const broker::TopicPolicies policies = BuildTopicPolicies(DefaultConfig());
  EXPECT_TRUE(policies.declarations().empty());
  EXPECT_EQ(policies.Resolve("anything").kind, broker::TopicKind::kDurable);
}

}  // namespace
}  // namespace switchboard::config
