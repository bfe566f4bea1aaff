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
// A unary or server-streaming call whose request does not parse as its
// protobuf type (gRPC would answer UNIMPLEMENTED with no message) finishes
// INVALID_ARGUMENT with a message that says so, and is counted in
// `switchboard_requests_rejected_total`. (A client stream's unparseable
// message looks to the server like the end of the stream: gRPC does not tell
// the two apart.)
//
// It is attached to every call but the Broker and Rpc services'
// bidirectional streams (service::kStreamsReportingTheirStatus): an
// interceptor runs on every message of its call (5 µs of CPU per message
// on Consume), so those streams report their status to
// GrpcRequestMetrics themselves.
//
// Used by the wiring (server/app/server.cc), which passes the factory to
// grpc::ServerBuilder. gRPC creates one interceptor per call and runs it on
// its own threads; `metrics` and `clock` must outlive the server.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>

#include "server/app/grpc_request_metrics.h"
#include "server/common/clock.h"
#include "server/metrics/metrics.h"

namespace switchboard::app {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeGrpcRequestInterceptorFactory(GrpcRequestMetrics& request_metrics, metrics::Metrics& metrics,
                                  const common::Clock& clock);

}  // namespace switchboard::app
