// The gRPC server interceptor that reports every call to
// GrpcRequestMetrics: when the call arrives it resolves the method's series
// and reads the clock; when the server sends the status it counts the call
// by status code and, for a unary call, observes its duration.
//
// The count happens before the status goes out (PRE_SEND_STATUS), so a
// client that has received its status can read the call in the metrics.
// Calls refused by authentication or validation are counted like any
// other: the interceptor sees every status the server sends, whoever sends
// it (the services, gRPC's health and reflection services, gRPC itself for
// an unknown method).
//
// Used by the wiring (server/app/server.cc), which passes the factory to
// grpc::ServerBuilder. gRPC creates one interceptor per call and runs it on
// its own threads; `metrics` and `clock` must outlive the server.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "server/app/grpc_request_metrics.h"
#include "server/common/clock.h"

namespace switchboard::app {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeGrpcRequestInterceptorFactory(GrpcRequestMetrics& metrics, const common::Clock& clock);

}  // namespace switchboard::app
