// The harness' port retries: which exits count as a taken port, how often a
// start on picked ports is tried, how long a restart on the same ports waits,
// and what their errors say.
#include "tests/testing/subprocess.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(LogTailTest, KeepsTheLastLines) {
  EXPECT_EQ(LogTail("a\nb\nc\n", 2), "b\nc\n");
  EXPECT_EQ(LogTail("a\nb\nc", 2), "b\nc");
  EXPECT_EQ(LogTail("a\nb\n", 5), "a\nb\n");
  EXPECT_EQ(LogTail("", 5), "");
}

TEST(ExitedAtStartErrorTest, AnAddressInUseIsAbortedWhateverTheServer) {
  // As nginx, redis-server, Prometheus and gRPC (switchboard) log it.
  for (const char* log :
       {"[emerg] bind() to 127.0.0.1:4242 failed (98: Address already in use)\n",
        "# Warning: Could not create server TCP listening socket 127.0.0.1:4242: bind: "
        "Address already in use\n",
        "level=error msg=\"Unable to start web listener\" err=\"listen tcp 127.0.0.1:4242: "
        "bind: address already in use\"\n",
        "UNKNOWN:Address already in use {syscall:\"bind\", errno:98}\n"}) {
    EXPECT_THAT(ExitedAtStartError("server", log),
                StatusIs(absl::StatusCode::kAborted, HasSubstr("server exited at start:\n")))
        << log;
  }
}

TEST(ExitedAtStartErrorTest, AnyOtherExitIsInternalWithTheLogsTail) {
  std::string log;
  for (int i = 0; i < 30; ++i) absl::StrAppend(&log, "line ", i, "\n");
  absl::StrAppend(&log, "[emerg] unknown directive \"listn\"\n");
  EXPECT_THAT(ExitedAtStartError("nginx", log),
              StatusIs(absl::StatusCode::kInternal,
                       AllOf(HasSubstr("nginx exited at start:\n"), HasSubstr("unknown directive"),
                             HasSubstr("line 29\n"), Not(HasSubstr("line 10\n")))));
}

TEST(StartOnPickedPortsTest, StartsAgainWhileAPortWasTaken) {
  int attempts = 0;
  EXPECT_THAT(
      StartOnPickedPorts(
          "redis-server",
          [&attempts] { return ++attempts < 3 ? absl::AbortedError("taken") : absl::OkStatus(); }),
      IsOk());
  EXPECT_EQ(attempts, 3);
}

TEST(StartOnPickedPortsTest, GivesUpAfterItsAttemptsSayingWhy) {
  int attempts = 0;
  EXPECT_THAT(StartOnPickedPorts("redis-server",
                                 [&attempts] {
                                   ++attempts;
                                   return absl::AbortedError("Address already in use");
                                 }),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr(absl::StrCat("redis-server found a port taken in each of ",
                                                    kPickedPortAttempts, " attempts")),
                             HasSubstr("Address already in use"))));
  EXPECT_EQ(attempts, kPickedPortAttempts);
}

TEST(StartOnPickedPortsTest, AnyOtherErrorEndsItAtOnce) {
  int attempts = 0;
  EXPECT_THAT(StartOnPickedPorts("nginx",
                                 [&attempts] {
                                   ++attempts;
                                   return absl::InternalError("unknown directive");
                                 }),
              StatusIs(absl::StatusCode::kInternal, "unknown directive"));
  EXPECT_EQ(attempts, 1);
}

TEST(RestartOnSamePortsTest, StartsAgainUntilItsPatienceHasPassed) {
  constexpr absl::Duration kPatience = absl::Milliseconds(300);
  int attempts = 0;
  const absl::Time start = absl::Now();
  EXPECT_THAT(RestartOnSamePorts(
                  "nginx",
                  [&attempts] {
                    ++attempts;
                    return absl::AbortedError("Address already in use");
                  },
                  kPatience),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("nginx could not bind its ports again within 300ms"),
                             HasSubstr("Address already in use"))));
  EXPECT_GE(absl::Now() - start, kPatience);
  EXPECT_GT(attempts, 1);
}

TEST(RestartOnSamePortsTest, SucceedsOnceThePortIsFree) {
  int attempts = 0;
  EXPECT_THAT(
      RestartOnSamePorts(
          "nginx",
          [&attempts] { return ++attempts < 2 ? absl::AbortedError("taken") : absl::OkStatus(); }),
      IsOk());
  EXPECT_EQ(attempts, 2);
}

}  // namespace
}  // namespace switchboard::testing
