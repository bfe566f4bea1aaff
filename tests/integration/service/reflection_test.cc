// Server reflection over real gRPC against an in-process Switchboard: the
// grpc.reflection.v1 service that Switchboard adds (server/service/
// reflection_v1_service.h) beside gRPC's own v1alpha. Its messages mirror
// v1alpha's field for field (checked against the v1alpha descriptors in
// Debian's libgrpc++_reflection, which this binary links through the
// server), its answers are v1alpha's byte for byte, and they describe the
// API completely enough for a client to call it.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::grpc::reflection::v1::ServerReflection;
using ::grpc::reflection::v1::ServerReflectionRequest;
using ::grpc::reflection::v1::ServerReflectionResponse;
using ::switchboard::testing::Deadline;
using ::switchboard::testing::IsOk;
using ::testing::IsSupersetOf;

constexpr char kV1Method[] = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
constexpr char kV1AlphaMethod[] = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";

// Sends `request` alone on a new ServerReflectionInfo stream of `method` and
// returns the serialized answer. Generic (bytes), since no v1alpha stub is
// installed; the two versions' messages are the same on the wire.
absl::StatusOr<std::string> AskOnce(const std::shared_ptr<grpc::Channel>& channel,
                                    const std::string& method,
                                    const ServerReflectionRequest& request) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  grpc::CompletionQueue queue;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&context, method, &queue);
  // Each step waits for its own completion before the next starts.
  const auto step = [&queue](auto start) {
    void* tag = nullptr;
    bool ok = false;
    start(reinterpret_cast<void*>(1));
    return queue.Next(&tag, &ok) && ok;
  };
  const std::string request_bytes = request.SerializeAsString();
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer outgoing(&slice, 1);
  grpc::ByteBuffer incoming;
  grpc::Status status;
  const bool started = step([&](void* tag) { call->StartCall(tag); });
  const bool written = started && step([&](void* tag) { call->Write(outgoing, tag); });
  const bool closed = written && step([&](void* tag) { call->WritesDone(tag); });
  const bool read = closed && step([&](void* tag) { call->Read(&incoming, tag); });
  step([&](void* tag) { call->Finish(&status, tag); });
  queue.Shutdown();
  void* ignored_tag;
  bool ignored_ok;
  while (queue.Next(&ignored_tag, &ignored_ok)) {
  }
  if (!status.ok()) return absl::UnknownError(absl::StrCat(method, ": ", status.error_message()));
  if (!read) return absl::UnknownError(absl::StrCat(method, ": no answer"));
  std::vector<grpc::Slice> slices;
  if (!incoming.Dump(&slices).ok()) return absl::UnknownError("unreadable answer");
  std::string answer;
  for (const grpc::Slice& part : slices) {
    answer.append(reinterpret_cast<const char*>(part.begin()), part.size());
  }
  return answer;
}

ServerReflectionRequest ListServices() {
  ServerReflectionRequest request;
  request.set_list_services("*");
  return request;
}

ServerReflectionRequest FileContainingSymbol(const std::string& symbol) {
  ServerReflectionRequest request;
  request.set_file_containing_symbol(symbol);
  return request;
}

class ReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<testing::InProcessServer> server = testing::StartInProcessServer("");
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_.target, grpc::InsecureChannelCredentials());
  }

  // The v1 answer to `request`, parsed.
  ServerReflectionResponse AskV1(const ServerReflectionRequest& request) {
    absl::StatusOr<std::string> answer = AskOnce(channel_, kV1Method, request);
    EXPECT_THAT(answer, IsOk());
    ServerReflectionResponse response;
    EXPECT_TRUE(answer.ok() && response.ParseFromString(*answer));
    return response;
  }

  testing::InProcessServer server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// The wire compatibility that the rest relies on: every v1alpha message has a
// v1 twin with the same fields (names, numbers, types, oneofs), and the
// services the same method.
TEST(ReflectionV1ProtoTest, MirrorsV1AlphaFieldForField) {
  const DescriptorPool& pool = *DescriptorPool::generated_pool();
  const FileDescriptor* alpha =
      pool.FindFileContainingSymbol("grpc.reflection.v1alpha.ServerReflection");
  ASSERT_NE(alpha, nullptr) << "libgrpc++_reflection's v1alpha descriptors are not linked";
  const FileDescriptor* v1 = ServerReflectionRequest::descriptor()->file();
  ASSERT_EQ(alpha->message_type_count(), v1->message_type_count());
  for (int m = 0; m < alpha->message_type_count(); ++m) {
    const Descriptor& alpha_message = *alpha->message_type(m);
    SCOPED_TRACE(alpha_message.name());
    const Descriptor* v1_message =
        pool.FindMessageTypeByName(absl::StrCat("grpc.reflection.v1.", alpha_message.name()));
    ASSERT_NE(v1_message, nullptr);
    ASSERT_EQ(v1_message->field_count(), alpha_message.field_count());
    for (int f = 0; f < alpha_message.field_count(); ++f) {
      const FieldDescriptor& alpha_field = *alpha_message.field(f);
      SCOPED_TRACE(alpha_field.name());
      const FieldDescriptor* v1_field = v1_message->FindFieldByNumber(alpha_field.number());
      ASSERT_NE(v1_field, nullptr);
      EXPECT_EQ(v1_field->name(), alpha_field.name());
      EXPECT_EQ(v1_field->type(), alpha_field.type());
      EXPECT_EQ(v1_field->label(), alpha_field.label());
      const auto oneof_name = [](const FieldDescriptor& field) {
        return field.real_containing_oneof() == nullptr ? ""
                                                        : field.real_containing_oneof()->name();
      };
      EXPECT_EQ(oneof_name(*v1_field), oneof_name(alpha_field));
      if (alpha_field.message_type() != nullptr) {
        EXPECT_EQ(v1_field->message_type()->name(), alpha_field.message_type()->name());
      }
    }
  }
  ASSERT_EQ(alpha->service_count(), 1);
  const auto& alpha_method = *alpha->service(0)->method(0);
  const auto& v1_method = *v1->service(0)->method(0);
  EXPECT_EQ(v1->service(0)->name(), alpha->service(0)->name());
  EXPECT_EQ(v1->service(0)->method_count(), alpha->service(0)->method_count());
  EXPECT_EQ(v1_method.name(), alpha_method.name());
  EXPECT_TRUE(v1_method.client_streaming() && v1_method.server_streaming());
  EXPECT_EQ(v1_method.input_type()->name(), alpha_method.input_type()->name());
  EXPECT_EQ(v1_method.output_type()->name(), alpha_method.output_type()->name());
}

TEST_F(ReflectionTest, V1ListsEveryServiceTheServerServes) {
  const ServerReflectionResponse response = AskV1(ListServices());
  ASSERT_TRUE(response.has_list_services_response()) << response.DebugString();
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  EXPECT_THAT(names, IsSupersetOf({"switchboard.v1.Broker", "switchboard.v1.Rpc",
                                   "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
                                   "grpc.reflection.v1alpha.ServerReflection"}));
}

TEST_F(ReflectionTest, V1AnswersAsV1AlphaDoesByteForByte) {
  std::vector<ServerReflectionRequest> requests = {
      ListServices(),
      FileContainingSymbol("switchboard.v1.Broker"),
      FileContainingSymbol("switchboard.v1.Rpc.CallStream"),
      FileContainingSymbol("switchboard.v1.Delivery"),
      FileContainingSymbol("no.such.Symbol"),
  };
  ServerReflectionRequest by_name;
  by_name.set_file_by_filename("switchboard/v1/broker.proto");
  by_name.set_host("localhost");
  requests.push_back(by_name);
  ServerReflectionRequest no_file;
  no_file.set_file_by_filename("no/such.proto");
  requests.push_back(no_file);
  ServerReflectionRequest extension;
  extension.mutable_file_containing_extension()->set_containing_type(
      "google.protobuf.FieldOptions");
  extension.mutable_file_containing_extension()->set_extension_number(50000);
  requests.push_back(extension);
  ServerReflectionRequest numbers;
  numbers.set_all_extension_numbers_of_type("google.protobuf.FileOptions");
  requests.push_back(numbers);
  ServerReflectionRequest unknown_type;
  unknown_type.set_all_extension_numbers_of_type("no.such.Type");
  requests.push_back(unknown_type);
  requests.push_back(ServerReflectionRequest());  // Asks for nothing: UNIMPLEMENTED.

  for (const ServerReflectionRequest& request : requests) {
    SCOPED_TRACE(request.ShortDebugString());
    const absl::StatusOr<std::string> alpha = AskOnce(channel_, kV1AlphaMethod, request);
    const absl::StatusOr<std::string> v1 = AskOnce(channel_, kV1Method, request);
    ASSERT_THAT(alpha, IsOk());
    ASSERT_THAT(v1, IsOk());
    EXPECT_EQ(*v1, *alpha);
    ServerReflectionResponse response;
    ASSERT_TRUE(response.ParseFromString(*v1));
    EXPECT_EQ(response.original_request().SerializeAsString(), request.SerializeAsString());
    EXPECT_EQ(response.valid_host(), request.host());
  }
}

TEST_F(ReflectionTest, V1FilesDescribeTheApiWithItsDependencies) {
  const ServerReflectionResponse response = AskV1(FileContainingSymbol("switchboard.v1.Broker"));
  ASSERT_TRUE(response.has_file_descriptor_response()) << response.DebugString();
  // What a client does with the answer: build a pool of its own from it.
  google::protobuf::SimpleDescriptorDatabase database;
  std::vector<std::string> files;
  for (const std::string& bytes : response.file_descriptor_response().file_descriptor_proto()) {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(file.ParseFromString(bytes));
    files.push_back(file.name());
    ASSERT_TRUE(database.Add(file)) << file.name();
  }
  ASSERT_FALSE(files.empty());
  EXPECT_EQ(files.front(), "switchboard/v1/broker.proto");
  DescriptorPool client_pool(&database);
  const google::protobuf::ServiceDescriptor* broker =
      client_pool.FindServiceByName("switchboard.v1.Broker");
  ASSERT_NE(broker, nullptr) << "files sent: " << ::testing::PrintToString(files);
  const google::protobuf::MethodDescriptor* consume = broker->FindMethodByName("Consume");
  ASSERT_NE(consume, nullptr);
  EXPECT_TRUE(consume->client_streaming() && consume->server_streaming());
  EXPECT_NE(consume->output_type()->FindFieldByName("deliveries"), nullptr);
}

// Several requests on one stream, through the generated stub: each answer is
// the one its request gets alone on a stream of its own. (gRPC 1.51's
// v1alpha reuses one response message per stream, so there the second
// list_services answer lists every service twice.)
TEST_F(ReflectionTest, V1StreamAnswersEachRequestInTurnAsIfAlone) {
  std::vector<ServerReflectionRequest> requests = {
      FileContainingSymbol("switchboard.v1.Rpc"), FileContainingSymbol("no.such.Symbol"),
      FileContainingSymbol("switchboard.v1.Broker"), ListServices(), ListServices()};
  for (ServerReflectionRequest& request : requests) request.set_host("switchboard");
  std::unique_ptr<ServerReflection::Stub> stub = ServerReflection::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  auto stream = stub->ServerReflectionInfo(&context);
  for (const ServerReflectionRequest& request : requests) ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  std::vector<ServerReflectionResponse> answers;
  ServerReflectionResponse response;
  while (stream->Read(&response)) answers.push_back(response);
  EXPECT_TRUE(stream->Finish().ok());

  ASSERT_EQ(answers.size(), requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(requests[i].ShortDebugString());
    EXPECT_EQ(answers[i].valid_host(), "switchboard");
    EXPECT_EQ(answers[i].SerializeAsString(), AskV1(requests[i]).SerializeAsString());
  }
  EXPECT_EQ(answers[1].error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(answers[4].list_services_response().service_size(),
            answers[3].list_services_response().service_size());
}

}  // namespace
}  // namespace switchboard
