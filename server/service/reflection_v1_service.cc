#include "server/service/reflection_v1_service.h"

#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/impl/server_initializer.h>

#include <memory>
#include <unordered_set>
#include <utility>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"

namespace switchboard::service {
namespace {

using ::google::protobuf::DescriptorPool;
using ::google::protobuf::FileDescriptor;
using ::grpc::reflection::v1::ExtensionNumberResponse;
using ::grpc::reflection::v1::FileDescriptorResponse;
using ::grpc::reflection::v1::ListServiceResponse;
using ::grpc::reflection::v1::ServerReflectionRequest;
using ::grpc::reflection::v1::ServerReflectionResponse;

// Adds `file`, then the files it depends on, depth first, each once.
void AddFile(const FileDescriptor& file, FileDescriptorResponse& response,
             std::unordered_set<std::string>& sent) {
  if (!sent.insert(file.name()).second) return;
  google::protobuf::FileDescriptorProto proto;
  file.CopyTo(&proto);
  proto.SerializeToString(response.add_file_descriptor_proto());
  for (int i = 0; i < file.dependency_count(); ++i) AddFile(*file.dependency(i), response, sent);
}

grpc::Status AnswerFile(const FileDescriptor* file, ServerReflectionResponse& response) {
  std::unordered_set<std::string> sent;
  AddFile(*file, *response.mutable_file_descriptor_response(), sent);
  return grpc::Status::OK;
}

// The error statuses and messages are v1alpha's, so a client sees the same
// answers from both versions.
grpc::Status FillAnswer(const ServerReflectionRequest& request,
                        const std::vector<std::string>* services,
                        ServerReflectionResponse& response) {
  const DescriptorPool& pool = *DescriptorPool::generated_pool();
  switch (request.message_request_case()) {
    case ServerReflectionRequest::kFileByFilename: {
      const FileDescriptor* file = pool.FindFileByName(request.file_by_filename());
      if (file == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "File not found.");
      return AnswerFile(file, response);
    }
    case ServerReflectionRequest::kFileContainingSymbol: {
      const FileDescriptor* file = pool.FindFileContainingSymbol(request.file_containing_symbol());
      if (file == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Symbol not found.");
      return AnswerFile(file, response);
    }
    case ServerReflectionRequest::kFileContainingExtension: {
      const auto* type =
          pool.FindMessageTypeByName(request.file_containing_extension().containing_type());
      if (type == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Type not found.");
      const auto* extension =
          pool.FindExtensionByNumber(type, request.file_containing_extension().extension_number());
      if (extension == nullptr) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "Extension not found.");
      }
      return AnswerFile(extension->file(), response);
    }
    case ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const std::string& name = request.all_extension_numbers_of_type();
      const auto* type = pool.FindMessageTypeByName(name);
      if (type == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "Type not found.");
      std::vector<const google::protobuf::FieldDescriptor*> extensions;
      pool.FindAllExtensions(type, &extensions);
      ExtensionNumberResponse& numbers = *response.mutable_all_extension_numbers_response();
      for (const auto* extension : extensions) numbers.add_extension_number(extension->number());
      numbers.set_base_type_name(name);
      return grpc::Status::OK;
    }
    case ServerReflectionRequest::kListServices: {
      if (services == nullptr) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "Services not found.");
      }
      ListServiceResponse& list = *response.mutable_list_services_response();
      for (const std::string& name : *services) list.add_service()->set_name(name);
      return grpc::Status::OK;
    }
    case ServerReflectionRequest::MESSAGE_REQUEST_NOT_SET:
      break;
  }
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
}

// One ServerReflectionInfo stream: read a request, write its answer, read
// the next. One operation is in flight at a time, so every path that ends
// the stream calls Finish exactly once.
class ReflectionReactor final
    : public grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse> {
 public:
  explicit ReflectionReactor(const ReflectionV1Service& service) : service_(service) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // Half-closed or cancelled: done.
      Finish(grpc::Status::OK);
      return;
    }
    response_ = service_.Answer(request_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  const ReflectionV1Service& service_;
  ServerReflectionRequest request_;
  ServerReflectionResponse response_;
};

// Registers the service on the server being built, and hands it the
// server's service list once every service is registered.
class ReflectionV1Plugin final : public grpc::ServerBuilderPlugin {
 public:
  std::string name() override { return "switchboard_reflection_v1"; }
  void InitServer(grpc::ServerInitializer* initializer) override {
    initializer->RegisterService(service_);
  }
  void Finish(grpc::ServerInitializer* initializer) override {
    service_->SetServiceList(initializer->GetServiceList());
  }
  void ChangeArguments(const std::string& name, void* value) override {}

 private:
  // Shared with the server, which keeps it for its lifetime.
  const std::shared_ptr<ReflectionV1Service> service_ = std::make_shared<ReflectionV1Service>();
};

class ReflectionV1Option final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments* args) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->push_back(std::make_unique<ReflectionV1Plugin>());
  }
};

}  // namespace

grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse>*
ReflectionV1Service::ServerReflectionInfo(grpc::CallbackServerContext* context) {
  return new ReflectionReactor(*this);
}

ServerReflectionResponse ReflectionV1Service::Answer(const ServerReflectionRequest& request) const {
  ServerReflectionResponse response;
  const grpc::Status status = FillAnswer(request, services_.load(), response);
  if (!status.ok()) {
    response.mutable_error_response()->set_error_code(status.error_code());
    response.mutable_error_response()->set_error_message(status.error_message());
  }
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  return response;
}

void AddReflectionV1(grpc::ServerBuilder& builder) {
  builder.SetOption(std::make_unique<ReflectionV1Option>());
}

}  // namespace switchboard::service
