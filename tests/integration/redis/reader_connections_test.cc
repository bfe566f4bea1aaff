// The Redis backend's reader connections (DESIGN.md §3): one per active
// consumer group up to max_reader_connections, shared beyond, and kept open
// for a linger after their group leaves, so consumers that come and go do
// not reconnect each time.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/redis/redis_broker_fixture.h"

namespace switchboard::broker {
namespace {

using redis_fixture::Durable;
using redis_fixture::RedisBrokerTest;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::kWaitTimeout;
using ::switchboard::testing::RecordingConsumerSink;
using ::testing::SizeIs;

// The CLIENT LIST ids of the connections named switchboard:reader.
std::vector<std::string> ReaderIds(const testing::RedisServer& redis) {
  std::vector<std::string> ids;
  absl::StatusOr<std::string> list = redis.Command({"CLIENT", "LIST"});
  EXPECT_THAT(list, IsOk());
  for (absl::string_view line : absl::StrSplit(list.value_or(""), '\n', absl::SkipEmpty())) {
    if (!absl::StrContains(line, " name=switchboard:reader ")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
      if (absl::ConsumePrefix(&field, "id=")) ids.emplace_back(field);
    }
  }
  return ids;
}

// Beyond max_reader_connections, groups share a reader and take turns
// blocking on it.
TEST_F(RedisBrokerTest, GroupsBeyondTheReaderCapShareOneReader) {
  StartServer();
  RedisBroker& broker = AddBroker(
      {Durable("jobs", absl::Seconds(60)), Durable("events", absl::Seconds(60))}, nullptr, 1);
  struct Consumer {
    const char* topic;
    const char* group;
    RecordingConsumerSink sink;
    std::unique_ptr<ConsumerSession> session;
  };
  Consumer consumers[] = {
      {"jobs", "a", {}, nullptr}, {"events", "b", {}, nullptr}, {"jobs", "c", {}, nullptr}};
  for (Consumer& consumer : consumers) {
    absl::StatusOr<std::unique_ptr<ConsumerSession>> session =
        broker.Consume({consumer.topic, consumer.group, 10, absl::ZeroDuration()}, consumer.sink);
    ASSERT_THAT(session, IsOk());
    consumer.session = *std::move(session);
  }
  Sync(broker);  // Every group found its topic empty and waits for entries.
  ASSERT_THAT(Publish(broker, "jobs", {"j0", "j1", "j2"}), IsOk());
  ASSERT_THAT(Publish(broker, "events", {"e0", "e1", "e2"}), IsOk());
  for (Consumer& consumer : consumers) ASSERT_TRUE(consumer.sink.WaitForCount(3));
  Sync(broker);
  for (Consumer& consumer : consumers) EXPECT_EQ(consumer.sink.count(), 3u) << consumer.group;

  absl::StatusOr<std::vector<std::string>> names = redis_->ClientNames();
  ASSERT_THAT(names, IsOk());
  EXPECT_EQ(std::count(names->begin(), names->end(), "switchboard:reader"), 1);
}

// A group whose only consumer leaves and comes back within the linger reads
// on the same reader connection; once no group has used it for the linger,
// the reader closes.
TEST_F(RedisBrokerTest, AReleasedReaderLingersForItsGroupAndClosesAfterTheLinger) {
  StartServer();
  reader_linger_ = absl::Seconds(2);
  RedisBroker& broker = AddBroker({Durable("jobs", absl::Seconds(60))});
  const auto consume = [&](RecordingConsumerSink& sink) {
    absl::StatusOr<std::unique_ptr<ConsumerSession>> session =
        broker.Consume({"jobs", "workers", 10, absl::ZeroDuration()}, sink);
    EXPECT_THAT(session, IsOk());
    return session.ok() ? *std::move(session) : nullptr;
  };

  RecordingConsumerSink first_sink;
  std::unique_ptr<ConsumerSession> first = consume(first_sink);
  Sync(broker);  // The group found its topic empty and blocks on its reader.
  ASSERT_THAT(Publish(broker, "jobs", {"j0"}), IsOk());
  ASSERT_TRUE(first_sink.WaitForCount(1));
  Sync(broker);
  const std::vector<std::string> reader = ReaderIds(*redis_);
  ASSERT_THAT(reader, SizeIs(1));
  first.reset();  // The group has no session: its reader is released.
  Sync(broker);

  RecordingConsumerSink second_sink;
  std::unique_ptr<ConsumerSession> second = consume(second_sink);
  ASSERT_THAT(Publish(broker, "jobs", {"j1"}), IsOk());
  ASSERT_TRUE(second_sink.WaitForCount(1));
  EXPECT_EQ(second_sink.deliveries().back().message.payload, "j1");
  EXPECT_EQ(ReaderIds(*redis_), reader) << "the lingering reader was reused";

  const absl::Time released = absl::Now();  // No later than the release.
  second.reset();
  while (!ReaderIds(*redis_).empty() && absl::Now() < released + kWaitTimeout) {
    absl::SleepFor(absl::Milliseconds(20));  // Polling Redis' own view, not synchronising.
  }
  EXPECT_THAT(ReaderIds(*redis_), SizeIs(0));
  EXPECT_GE(absl::Now() - released, reader_linger_);
}

}  // namespace
}  // namespace switchboard::broker
