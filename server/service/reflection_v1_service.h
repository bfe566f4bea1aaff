// Server reflection, version v1 (grpc.reflection.v1.ServerReflection), beside
// the v1alpha service that gRPC's reflection plugin serves.
//
// Debian's gRPC (1.51) offers v1alpha only: libgrpc++_reflection holds no v1
// service, and no reflection .proto is installed. Clients such as grpcurl ask
// v1 first, so Switchboard serves it here, from the same source gRPC's
// v1alpha service uses: the process' generated descriptor pool and the
// server's own list of services. The answers are those of v1alpha, byte for
// byte (tests/integration/service/reflection_test.cc compares them), but for
// one thing: each response carries only its own request's answer (gRPC
// 1.51's v1alpha reuses one response per stream, so its later answers on a
// stream repeat the services and files of the earlier ones).
//
// Used by the wiring (server/app): AddReflectionV1() before BuildAndStart().
// The service is a callback service; its reactions never block.
#pragma once

#include <grpcpp/server_builder.h>

#include <atomic>
#include <string>
#include <vector>

#include "grpc/reflection/v1/reflection.grpc.pb.h"

namespace switchboard::service {

// Answers grpc.reflection.v1 requests. Thread-safe.
class ReflectionV1Service final : public grpc::reflection::v1::ServerReflection::CallbackService {
 public:
  grpc::ServerBidiReactor<grpc::reflection::v1::ServerReflectionRequest,
                          grpc::reflection::v1::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

  // The names of the services the server serves, owned by the server, which
  // outlives this service. Until set, list_services is NOT_FOUND.
  void SetServiceList(const std::vector<std::string>* services) { services_.store(services); }

  // The response to one request.
  grpc::reflection::v1::ServerReflectionResponse Answer(
      const grpc::reflection::v1::ServerReflectionRequest& request) const;

 private:
  std::atomic<const std::vector<std::string>*> services_{nullptr};
};

// Makes the server that `builder` builds serve grpc.reflection.v1, listing
// that server's services. The server owns the service.
void AddReflectionV1(grpc::ServerBuilder& builder);

}  // namespace switchboard::service
