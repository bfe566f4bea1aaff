// The SwitchboardProcess harness itself: a first start listens on port 0 and
// serves gRPC and metrics on the ports the server reported, so no other
// process can take them first; a restart serves gRPC on the same port again,
// waiting while another process holds it, and fails with the server's log
// when the port stays taken.
#include "tests/testing/switchboard_process.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr absl::Duration kTimeout = absl::Seconds(10);

int GrpcPort(const SwitchboardProcess& server) {
  const std::string target = server.target();
  absl::string_view rest = target;
  int port = 0;
  if (!absl::ConsumePrefix(&rest, "127.0.0.1:") || !absl::SimpleAtoi(rest, &port)) return 0;
  return port;
}

bool Connects(const std::string& target) {
  return grpc::CreateChannel(target, grpc::InsecureChannelCredentials())
      ->WaitForConnected(absl::ToChronoTime(absl::Now() + kTimeout));
}

TEST(SwitchboardProcessTest, ServesOnThePortsTheServerReported) {
  SwitchboardProcess server(SWITCHBOARD_BINARY);
  ASSERT_THAT(server.Start(kTimeout), IsOk());

  const int port = GrpcPort(server);
  ASSERT_NE(port, 0) << server.target();
  EXPECT_THAT(server.stderr_text(), HasSubstr(absl::StrCat("listening on 127.0.0.1:0 (port ", port,
                                                           "), metrics on 127.0.0.1:0 (port ",
                                                           server.metrics_port(), ")")));
  EXPECT_TRUE(Connects(server.target()));
  EXPECT_THAT(HttpGet(server.metrics_port(), "/metrics"), IsOkAndHolds(HasSubstr("switchboard_")));
}

// Another process takes the port while the server is down (a server of a
// test running in parallel, say) and lets it go 1 s later: the first start
// fails to bind, and Start() starts it again.
TEST(SwitchboardProcessTest, RestartsOnTheSameGrpcPortOnceAnotherProcessLetsItGo) {
  SwitchboardProcess server(SWITCHBOARD_BINARY);
  ASSERT_THAT(server.Start(kTimeout), IsOk());
  const std::string target = server.target();
  ASSERT_THAT(server.Kill(kTimeout), IsOk());
  absl::StatusOr<LoopbackSocket> taker = TakeLoopbackPort(GrpcPort(server));
  ASSERT_THAT(taker, IsOk());
  std::thread releaser([fd = taker->fd] {
    absl::SleepFor(absl::Seconds(1));
    close(fd);
  });

  const absl::Status restarted = server.Start(kTimeout);
  releaser.join();

  ASSERT_THAT(restarted, IsOk());
  EXPECT_EQ(server.target(), target);
  EXPECT_TRUE(Connects(server.target()));
  EXPECT_THAT(HttpGet(server.metrics_port(), "/metrics"), IsOkAndHolds(HasSubstr("switchboard_")));
}

TEST(SwitchboardProcessTest, RestartFailsWithTheServersLogWhenItsPortStaysTaken) {
  SwitchboardProcess server(SWITCHBOARD_BINARY);
  ASSERT_THAT(server.Start(kTimeout), IsOk());
  ASSERT_THAT(server.Kill(kTimeout), IsOk());
  absl::StatusOr<LoopbackSocket> taker = TakeLoopbackPort(GrpcPort(server));
  ASSERT_THAT(taker, IsOk());

  EXPECT_THAT(server.Start(kTimeout),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("switchboard could not bind its ports again within"),
                             HasSubstr("Address already in use"))));
  close(taker->fd);
  // Free again: the next start gets it.
  EXPECT_THAT(server.Start(kTimeout), IsOk());
}

}  // namespace
}  // namespace switchboard::testing
