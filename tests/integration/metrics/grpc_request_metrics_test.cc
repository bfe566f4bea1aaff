// The gRPC server's RED metrics and the process metrics, as a scrape of a
// real in-process server shows them: every call the server finishes is
// counted once by method and status code (refused ones, streams and
// unknown methods included), unary calls are timed, and the process
// families and build info are on the page.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "switchboard/v1/rpc.grpc.pb.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard {
namespace {

using ::switchboard::testing::Deadline;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::ScrapeMetric;
using ::testing::Ge;
using ::testing::Gt;

constexpr char kToken[] = "s3cret-billing";
constexpr char kPublish[] = "/switchboard.v1.Broker/Publish";
constexpr char kPublishStream[] = "/switchboard.v1.Broker/PublishStream";
constexpr char kSubscribe[] = "/switchboard.v1.Broker/Subscribe";
constexpr char kConsume[] = "/switchboard.v1.Broker/Consume";
constexpr char kCallStream[] = "/switchboard.v1.Rpc/CallStream";
constexpr char kHealthCheck[] = "/grpc.health.v1.Health/Check";

class GrpcRequestMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer(R"(
clients:
  - {id: billing, token: "s3cret-billing"}
)");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_.target, grpc::InsecureChannelCredentials());
    stub_ = v1::Broker::NewStub(channel_);
  }

  // Every series of `family` on the metrics page whose value is not 0, by
  // its labels as the page writes them (`code="OK",method="..."`).
  std::map<std::string, double> NonZero(absl::string_view family) {
    absl::StatusOr<std::string> page = testing::HttpGet(server_.metrics_port, "/metrics");
    EXPECT_TRUE(page.ok()) << page.status();
    std::map<std::string, double> series;
    for (absl::string_view line : absl::StrSplit(page.value_or(""), '\n')) {
      if (!absl::ConsumePrefix(&line, family) || !absl::ConsumePrefix(&line, "{")) continue;
      const size_t end = line.rfind("} ");
      double value = 0;
      EXPECT_TRUE(end != absl::string_view::npos && absl::SimpleAtod(line.substr(end + 2), &value))
          << line;
      if (value != 0) series[std::string(line.substr(0, end))] = value;
    }
    return series;
  }

  // A unary call to `method` whose request is `bytes` as they are, with the
  // bearer `token` unless empty.
  grpc::Status RawUnaryCall(const std::string& method, const std::string& bytes,
                            const std::string& token = "") {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    if (!token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                      [&](grpc::Status result) {
                        status = std::move(result);
                        done.Notify();
                      });
    done.WaitForNotification();
    return status;
  }

  testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
};

// `code="<code>",method="<method>"`, as the page writes the labels.
std::string Labels(absl::string_view code, absl::string_view method) {
  return absl::StrCat("code=\"", code, "\",method=\"", method, "\"");
}

std::string Method(absl::string_view method) { return absl::StrCat("method=\"", method, "\""); }

TEST_F(GrpcRequestMetricsTest, CountsEveryFinishedCallByMethodAndCode) {
  v1::PublishResponse published;
  ASSERT_EQ(testing::Publish(*stub_, "jobs", {"a"}, &published, kToken).error_code(),
            grpc::StatusCode::OK);
  ASSERT_EQ(testing::Publish(*stub_, "", {"a"}, &published, kToken).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_EQ(testing::Publish(*stub_, "jobs", {"a"}, &published).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);

  {  // A stream that publishes twice and ends when the client is done.
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
    auto stream = stub_->PublishStream(&context);
    for (uint64_t id : {1, 2}) {
      v1::PublishStreamRequest request;
      request.set_request_id(id);
      request.set_topic("jobs");
      request.add_messages()->set_payload("b");
      ASSERT_TRUE(stream->Write(request));
      v1::PublishStreamResponse response;
      ASSERT_TRUE(stream->Read(&response));
      EXPECT_EQ(response.message_ids_size(), 1);
    }
    ASSERT_TRUE(stream->WritesDone());
    ASSERT_EQ(stream->Finish().error_code(), grpc::StatusCode::OK);
  }
  {  // A stream refused for want of a token.
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::SubscribeRequest request;
    request.set_topic("news");
    auto stream = stub_->Subscribe(&context, request);
    v1::SubscribeResponse ignored;
    EXPECT_FALSE(stream->Read(&ignored));
    ASSERT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  // The bidirectional streams report their status themselves, without the
  // interceptor: a refusal is counted as from any other call.
  {  // A Consume stream refused for want of a token.
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    auto stream = stub_->Consume(&context);
    v1::ConsumeResponse ignored;
    EXPECT_FALSE(stream->Read(&ignored));
    ASSERT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {  // A CallStream refused for want of a token.
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    auto stream = v1::Rpc::NewStub(channel_)->CallStream(&context);
    v1::CallResponse ignored;
    EXPECT_FALSE(stream->Read(&ignored));
    ASSERT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {  // gRPC's own health service.
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(
        grpc::health::v1::Health::NewStub(channel_)->Check(&context, request, &response).ok());
  }
  for (const char* unknown : {"/no.such.Service/Method", "/switchboard.v1.Broker/Nothing"}) {
    ASSERT_EQ(RawUnaryCall(unknown, "").error_code(), grpc::StatusCode::UNIMPLEMENTED) << unknown;
  }

  EXPECT_EQ(NonZero("switchboard_grpc_requests_total"),
            (std::map<std::string, double>{{Labels("OK", kPublish), 1},
                                           {Labels("INVALID_ARGUMENT", kPublish), 1},
                                           {Labels("UNAUTHENTICATED", kPublish), 1},
                                           {Labels("OK", kPublishStream), 1},
                                           {Labels("UNAUTHENTICATED", kSubscribe), 1},
                                           {Labels("UNAUTHENTICATED", kConsume), 1},
                                           {Labels("UNAUTHENTICATED", kCallStream), 1},
                                           {Labels("OK", kHealthCheck), 1},
                                           {Labels("UNIMPLEMENTED", "__unknown__"), 2}}));
  // Unary calls only, each timed once whatever its code.
  EXPECT_EQ(NonZero("switchboard_grpc_request_duration_seconds_count"),
            (std::map<std::string, double>{{Method(kPublish), 3}, {Method(kHealthCheck), 1}}));
  // The refusals before the broker are still counted on their own.
  EXPECT_EQ(NonZero("switchboard_requests_rejected_total"),
            (std::map<std::string, double>{{Labels("INVALID_ARGUMENT", "Publish"), 1},
                                           {Labels("UNAUTHENTICATED", "Publish"), 1},
                                           {Labels("UNAUTHENTICATED", "Subscribe"), 1},
                                           {Labels("UNAUTHENTICATED", "Consume"), 1},
                                           {Labels("UNAUTHENTICATED", "CallStream"), 1}}));
}

// A request whose bytes are not its protobuf type: invalid UTF-8 in the
// topic (a string field), and a field longer than the request.
TEST_F(GrpcRequestMetricsTest, AnUnparseableRequestIsInvalidArgumentAndCounted) {
  for (const std::string& bytes :
       {std::string("\x0a\x03\xff\xfe\xfd", 5), std::string("\x0a\x7f\x41", 3)}) {
    const grpc::Status status = RawUnaryCall(kPublish, bytes, kToken);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(status.error_message(),
              "request: not a valid protobuf request of /switchboard.v1.Broker/Publish (check the "
              "client's generated code matches the server's proto/switchboard/v1)");
  }
  EXPECT_EQ(NonZero("switchboard_grpc_requests_total"),
            (std::map<std::string, double>{{Labels("INVALID_ARGUMENT", kPublish), 2}}));
  EXPECT_EQ(NonZero("switchboard_requests_rejected_total"),
            (std::map<std::string, double>{{Labels("INVALID_ARGUMENT", "Publish"), 2}}));
}

TEST_F(GrpcRequestMetricsTest, KnownMethodsStartAtZeroAndStreamsHaveNoDuration) {
  const int port = server_.metrics_port;
  EXPECT_THAT(ScrapeMetric(port, absl::StrCat("switchboard_grpc_requests_total{",
                                              Labels("OK", "/switchboard.v1.Broker/Consume"), "}")),
              IsOkAndHolds(0));
  EXPECT_THAT(ScrapeMetric(port, absl::StrCat("switchboard_grpc_requests_total{",
                                              Labels("OK", "/switchboard.v1.Rpc/Call"), "}")),
              IsOkAndHolds(0));
  EXPECT_THAT(ScrapeMetric(port, absl::StrCat("switchboard_grpc_request_duration_seconds_count{",
                                              Method(kPublish), "}")),
              IsOkAndHolds(0));
  EXPECT_FALSE(ScrapeMetric(port, absl::StrCat("switchboard_grpc_request_duration_seconds_count{",
                                               Method(kSubscribe), "}"))
                   .ok());
  EXPECT_FALSE(ScrapeMetric(port, absl::StrCat("switchboard_grpc_requests_total{",
                                               Labels("OK", "__unknown__"), "}"))
                   .ok());
}

TEST_F(GrpcRequestMetricsTest, ExportsProcessMetricsAndBuildInfo) {
  const int port = server_.metrics_port;
  EXPECT_THAT(ScrapeMetric(port, "process_resident_memory_bytes"), IsOkAndHolds(Gt(0)));
  EXPECT_THAT(ScrapeMetric(port, "process_open_fds"), IsOkAndHolds(Ge(3)));
  EXPECT_THAT(ScrapeMetric(port, "process_max_fds"), IsOkAndHolds(Gt(0)));
  EXPECT_THAT(ScrapeMetric(port, "process_start_time_seconds"), IsOkAndHolds(Gt(0)));
  EXPECT_THAT(ScrapeMetric(port, "process_cpu_seconds_total"), IsOkAndHolds(Ge(0)));
  EXPECT_THAT(ScrapeMetric(port, absl::StrCat("switchboard_build_info{version=\"",
                                              SWITCHBOARD_VERSION, "\"}")),
              IsOkAndHolds(1));
}

}  // namespace
}  // namespace switchboard
