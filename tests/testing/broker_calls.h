// Blocking helpers around the generated Broker and Health stubs, for
// integration tests that speak gRPC to a real Switchboard server (in-process
// or a child process).
//
// Every call carries a deadline, so a server that never answers fails the
// test instead of hanging it. Streams are owned by the caller, and their
// ClientContext must outlive them. Thread-safe as the stubs are: one stream
// is used by one thread at a time.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "switchboard/v1/broker.grpc.pb.h"

namespace switchboard::testing {

using ConsumeStream = grpc::ClientReaderWriter<v1::ConsumeRequest, v1::ConsumeResponse>;
using SubscribeStream = grpc::ClientReader<v1::SubscribeResponse>;

// How long a test's gRPC call or stream may last.
inline constexpr absl::Duration kCallTimeout = absl::Seconds(30);

// A ClientContext deadline `timeout` from now.
std::chrono::system_clock::time_point Deadline(absl::Duration timeout = kCallTimeout);

// "<prefix>0", "<prefix>1", ... "<prefix><count - 1>".
std::vector<std::string> Numbered(absl::string_view prefix, int count);

// Publishes `payloads` to `topic` with one unary call, as the client with
// bearer `token` (none when empty).
grpc::Status Publish(v1::Broker::Stub& stub, const std::string& topic,
                     const std::vector<std::string>& payloads, v1::PublishResponse* response,
                     const std::string& token = "");

// Opens a Consume stream and sends its subscription. Its leases last
// `ack_deadline_ms`, or the topic's default when 0.
std::unique_ptr<ConsumeStream> OpenConsume(v1::Broker::Stub& stub, grpc::ClientContext& context,
                                           const std::string& topic, const std::string& group,
                                           uint32_t max_in_flight, uint32_t ack_deadline_ms = 0);

// Reads responses until at least `count` deliveries arrived, or the stream
// ended (then fewer are returned).
std::vector<v1::Delivery> ReadDeliveries(ConsumeStream& stream, size_t count);

// Acks every delivery of `deliveries` in one request; false when the stream
// is closed.
bool Ack(ConsumeStream& stream, const std::vector<v1::Delivery>& deliveries);

// Opens a Subscribe stream on `topic` (or prefix) and waits until the
// server has made the subscription live (its initial metadata).
std::unique_ptr<SubscribeStream> OpenSubscribe(v1::Broker::Stub& stub, grpc::ClientContext& context,
                                               const std::string& topic);

// Follows the serving status of one service with the streaming Health.Watch
// call, so a test waits for a status change without polling.
class HealthWatch {
 public:
  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  HealthWatch(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
              absl::Duration timeout = kCallTimeout);
  ~HealthWatch();

  // Reads status changes until `status` is the current one. False when the
  // watch ended first (its deadline passed or the server went away).
  bool WaitFor(ServingStatus status);

 private:
  std::unique_ptr<grpc::health::v1::Health::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<grpc::health::v1::HealthCheckResponse>> reader_;
  ServingStatus current_ = grpc::health::v1::HealthCheckResponse::UNKNOWN;
};

}  // namespace switchboard::testing
