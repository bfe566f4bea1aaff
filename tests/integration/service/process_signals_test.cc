// The switchboard process and the signals a server meets: SIGPIPE (a write
// to a connection the peer closed, e.g. hiredis writing to a Redis that shut
// down) must neither kill nor stop it.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {
namespace {

bool Serving(const std::string& target) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, request, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

TEST(ProcessSignalsTest, ASigpipeNeitherKillsNorStopsTheServer) {
  SwitchboardProcess server(SWITCHBOARD_BINARY);
  ASSERT_THAT(server.Start(), IsOk());
  ASSERT_TRUE(Serving(server.target()));
  ASSERT_EQ(kill(server.pid(), SIGPIPE), 0);
  EXPECT_TRUE(Serving(server.target())) << server.stderr_text();
  // Still the same process, which drains and exits 0 as usual.
  EXPECT_THAT(server.SignalAndWait(SIGTERM, absl::Seconds(20)), IsOkAndHolds(0))
      << server.stderr_text();
}

}  // namespace
}  // namespace switchboard::testing
