// RAII membership of a streaming reactor in the StreamTracker and the
// open-streams gauge. Opened once the caller is authenticated; closed when
// the reactor is destroyed (in OnDone).
#pragma once

#include <string>

#include "server/metrics/metrics.h"
#include "server/service/service_context.h"

namespace switchboard::service {

class StreamRegistration {
 public:
  StreamRegistration(ServiceContext& context, metrics::StreamMethod method, DrainableStream& stream)
      : context_(context), method_(method), stream_(stream) {}

  ~StreamRegistration() {
    if (gauge_ == nullptr) return;
    gauge_->Decrement();
    context_.streams.Unregister(&stream_, client_id_);
  }

  StreamRegistration(const StreamRegistration&) = delete;
  StreamRegistration& operator=(const StreamRegistration&) = delete;

  // Authenticates the call and registers the stream. On error the stream
  // must finish with the returned status.
  absl::StatusOr<auth::ClientIdentity> Open(const grpc::CallbackServerContext& call) {
    absl::StatusOr<auth::ClientIdentity> client = AuthenticateCall(context_, call);
    if (!client.ok()) return client.status();
    if (absl::Status status = context_.streams.Register(&stream_, client->id); !status.ok()) {
      return status;
    }
    client_id_ = client->id;
    gauge_ = &context_.metrics.OpenStreams(method_, client_id_);
    gauge_->Increment();
    return client;
  }

  // Reports the status the stream finishes with (for the streams of
  // kStreamsReportingTheirStatus only: the others are counted by gRPC's
  // interceptor).
  void Finished(grpc::StatusCode code) { context_.stream_status.OnStreamFinished(method_, code); }

 private:
  ServiceContext& context_;
  const metrics::StreamMethod method_;
  DrainableStream& stream_;
  std::string client_id_;
  prometheus::Gauge* gauge_ = nullptr;
};

}  // namespace switchboard::service
