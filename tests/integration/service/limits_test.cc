// Issue 15's bounded memory, against a real Switchboard process on the
// memory broker: the retained-bytes limit, the topic limit and the stream
// limits hit with exact statuses, each naming its limit, and the process'
// resident memory stays within the retained-bytes bound.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMaxMemoryBytes = 64 << 20;
constexpr size_t kPayloadBytes = 1000000;

// The resident set of process `pid`, in bytes (VmRSS of /proc/<pid>/status).
uint64_t ResidentBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, " kB");
    uint64_t kib = 0;
    if (absl::SimpleAtoi(rest, &kib)) return kib * 1024;
  }
  ADD_FAILURE() << "no VmRSS for process " << pid;
  return 0;
}

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    process_ =
        std::make_unique<SwitchboardProcess>(SWITCHBOARD_BINARY, absl::StrCat(R"(
limits:
  max_memory_bytes: )",
                                                                              kMaxMemoryBytes,
                                                                              R"(
  max_topics: 3
  max_streams: 3
  max_streams_per_client: 2
clients:
  - {id: a, token: token-a}
  - {id: b, token: token-b}
)"));
    ASSERT_THAT(process_->Start(), IsOk());
    channel_ = grpc::CreateChannel(process_->target(), grpc::InsecureChannelCredentials());
    stub_ = v1::Broker::NewStub(channel_);
  }

  grpc::Status PublishOne(const std::string& topic, size_t bytes) {
    v1::PublishResponse response;
    return Publish(*stub_, topic, {std::string(bytes, 'x')}, &response, "token-a");
  }

  // Opens a Consume stream on "t1" as the client of `token`.
  struct Stream {
    std::unique_ptr<grpc::ClientContext> context = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<ConsumeStream> stream;
  };
  Stream Open(const std::string& token) {
    Stream opened;
    opened.context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    opened.stream = OpenConsume(*stub_, *opened.context, "t1", "g", 1, 0);
    return opened;
  }

  // Opens a stream as Open() does and waits for its first delivery, which
  // shows the server registered it: streams opened one after another would
  // otherwise reach the server in any order.
  Stream OpenAndReceive(const std::string& token) {
    Stream opened = Open(token);
    EXPECT_EQ(ReadDeliveries(*opened.stream, 1).size(), 1u) << "no delivery for " << token;
    return opened;
  }

  // The status a stream ended with, once it ended.
  static grpc::Status Ended(Stream& opened) {
    v1::ConsumeResponse response;
    while (opened.stream->Read(&response)) {
    }
    return opened.stream->Finish();
  }

  std::unique_ptr<SwitchboardProcess> process_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Broker::Stub> stub_;
};

TEST_F(LimitsTest, PublishesBeyondMaxMemoryBytesAreRefusedAndMemoryStaysBounded) {
  ASSERT_TRUE(PublishOne("warmup", 10).ok());
  const uint64_t resident_before = ResidentBytes(process_->pid());
  // Each message counts its payload, id (about 15 bytes) and 160 bytes of
  // overhead: 67 fit in 64 MiB, the 68th does not.
  int stored = 0;
  grpc::Status refused;
  for (int i = 0; i < 200; ++i) {
    grpc::Status status = PublishOne("big", kPayloadBytes);
    if (!status.ok()) {
      refused = status;
      break;
    }
    ++stored;
  }
  EXPECT_EQ(stored, 67);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("limits.max_memory_bytes"));
  // The refusal is the broker's, not a transport error: more tries, same answer.
  for (const std::string topic : {"big", "other"}) {
    EXPECT_EQ(PublishOne(topic, kPayloadBytes).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  // Small messages still fit in what is left.
  EXPECT_TRUE(PublishOne("big", 100).ok());
  const uint64_t grown = ResidentBytes(process_->pid()) - resident_before;
  RecordProperty("resident_growth_bytes", static_cast<int64_t>(grown));
  // What is retained, plus room for the allocator and gRPC's buffers.
  // AddressSanitizer keeps freed memory in quarantine: no bound there.
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(grown, kMaxMemoryBytes + (32 << 20));
#endif
}

TEST_F(LimitsTest, TopicsAndStreamsBeyondTheirLimitsAreRefusedNamingTheLimit) {
  for (const std::string topic : {"t1", "t2", "t3"}) ASSERT_TRUE(PublishOne(topic, 10).ok());
  const grpc::Status fourth_topic = PublishOne("t4", 10);
  EXPECT_EQ(fourth_topic.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(fourth_topic.error_message(), HasSubstr("limits.max_topics"));
  // One message on "t1" for each stream that is let in (max_in_flight 1).
  EXPECT_TRUE(PublishOne("t1", 10).ok());
  EXPECT_TRUE(PublishOne("t1", 10).ok());

  // Client a: two streams, the third refused by the per-client limit.
  std::vector<Stream> open;
  open.push_back(OpenAndReceive("token-a"));
  open.push_back(OpenAndReceive("token-a"));
  Stream third = Open("token-a");
  const grpc::Status per_client = Ended(third);
  EXPECT_EQ(per_client.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(per_client.error_message(), HasSubstr("limits.max_streams_per_client"));
  // Client b: one stream makes three in the process, the next is refused by
  // the process' limit.
  open.push_back(OpenAndReceive("token-b"));
  Stream fourth = Open("token-b");
  const grpc::Status process_wide = Ended(fourth);
  EXPECT_EQ(process_wide.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(process_wide.error_message(), HasSubstr("limits.max_streams:"));
  for (Stream& stream : open) stream.context->TryCancel();
  for (Stream& stream : open) stream.stream->Finish();
}

}  // namespace
}  // namespace switchboard::testing
