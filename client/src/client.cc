#include "switchboard/client/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "status_conversion.h"

namespace switchboard::client {
namespace {

// How soon the channel retries after losing its server: fast, so a restarted
// server is picked up by the next stream attempt. (GRPC_ARG_MIN_RECONNECT_
// BACKOFF_MS stays at its default: gRPC uses it as the connect timeout, and a
// short one fails handshakes on a busy machine.)
constexpr int kInitialReconnectBackoffMs = 100;

std::shared_ptr<grpc::Channel> CreateChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  // A consume response may carry up to max_in_flight messages of 1 MiB each:
  // the server's limits bound the size, not the client.
  args.SetMaxReceiveMessageSize(-1);
  return grpc::CreateCustomChannel(options.target, grpc::InsecureChannelCredentials(), args);
}

}  // namespace

Client::Client(ClientOptions options)
    : options_(std::move(options)),
      channel_(CreateChannel(options_)),
      broker_(v1::Broker::NewStub(channel_)),
      rpc_(v1::Rpc::NewStub(channel_)),
      health_(grpc::health::v1::Health::NewStub(channel_)) {}

void Client::PrepareContext(grpc::ClientContext& context) const {
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization", "Bearer " + options_.bearer_token);
  }
}

void Client::PrepareUnaryContext(grpc::ClientContext& context) const {
  PrepareContext(context);
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
}

absl::StatusOr<std::vector<std::string>> Client::Publish(
    const std::string& topic, std::vector<v1::OutgoingMessage> messages) const {
  v1::PublishRequest request;
  request.set_topic(topic);
  for (v1::OutgoingMessage& message : messages) {
    *request.add_messages() = std::move(message);
  }
  grpc::ClientContext context;
  PrepareUnaryContext(context);
  v1::PublishResponse response;
  grpc::Status status = broker_->Publish(&context, request, &response);
  if (!status.ok()) return internal::FromGrpcStatus(status);
  return std::vector<std::string>(response.message_ids().begin(), response.message_ids().end());
}

absl::StatusOr<v1::CallResponse> Client::Call(const v1::CallRequest& request,
                                              absl::Duration* retry_after) const {
  grpc::ClientContext context;
  PrepareUnaryContext(context);
  v1::CallResponse response;
  grpc::Status status = rpc_->Call(&context, request, &response);
  if (status.ok()) return response;
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find("retry-after-ms");
  int64_t milliseconds = 0;
  if (retry_after != nullptr && it != trailers.end() &&
      absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &milliseconds)) {
    *retry_after = absl::Milliseconds(milliseconds);
  }
  return internal::FromGrpcStatus(status);
}

absl::StatusOr<v1::DescribeLimitResponse> Client::DescribeLimit(const std::string& upstream) const {
  v1::DescribeLimitRequest request;
  request.set_upstream(upstream);
  grpc::ClientContext context;
  PrepareUnaryContext(context);
  v1::DescribeLimitResponse response;
  grpc::Status status = rpc_->DescribeLimit(&context, request, &response);
  if (!status.ok()) return internal::FromGrpcStatus(status);
  return response;
}

absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> Client::CheckHealth(
    const std::string& service) const {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::ClientContext context;
  PrepareUnaryContext(context);
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status status = health_->Check(&context, request, &response);
  if (!status.ok()) return internal::FromGrpcStatus(status);
  return response.status();
}

}  // namespace switchboard::client
