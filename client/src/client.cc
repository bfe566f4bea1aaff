#include "switchboard/client/client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "status_conversion.h"

namespace switchboard::client {
namespace {

// How soon the channel retries after losing its server: fast, so a restarted
// server is picked up by the next stream attempt. (GRPC_ARG_MIN_RECONNECT_
// BACKOFF_MS stays at its default: gRPC uses it as the connect timeout, and a
// short one fails handshakes on a busy machine.)
constexpr int kInitialReconnectBackoffMs = 100;
// The largest PEM file LoadTlsFiles reads.
constexpr std::streamsize kMaxPemFileBytes = 1 << 20;

// The PEM text of `path`, read for `flag`.
absl::StatusOr<std::string> ReadPemFile(absl::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read ", path));
  std::string text(kMaxPemFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > static_cast<size_t>(kMaxPemFileBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " is larger than ", kMaxPemFileBytes, " bytes"));
  }
  if (!absl::StrContains(text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", path, " holds no PEM block"));
  }
  return text;
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const ClientOptions& options) {
  if (!options.tls.has_value()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.tls->root_certificates;
  ssl.pem_cert_chain = options.tls->certificate_chain;
  ssl.pem_private_key = options.tls->private_key;
  return grpc::SslCredentials(ssl);
}

std::shared_ptr<grpc::Channel> CreateChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  // A consume response may carry up to max_in_flight messages of 1 MiB each:
  // the server's limits bound the size, not the client.
  args.SetMaxReceiveMessageSize(-1);
  if (options.tls.has_value() && !options.tls->server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls->server_name);
  }
  return grpc::CreateCustomChannel(options.target, ChannelCredentials(options), args);
}

}  // namespace

absl::StatusOr<TlsOptions> LoadTlsFiles(const std::string& ca_file, const std::string& cert_file,
                                        const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("tls_cert and tls_key: give both (mutual TLS) or neither");
  }
  TlsOptions tls;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile("tls_ca", ca_file);
    if (!ca.ok()) return ca.status();
    tls.root_certificates = *std::move(ca);
  }
  if (!cert_file.empty()) {
    absl::StatusOr<std::string> chain = ReadPemFile("tls_cert", cert_file);
    if (!chain.ok()) return chain.status();
    absl::StatusOr<std::string> key = ReadPemFile("tls_key", key_file);
    if (!key.ok()) return key.status();
    tls.certificate_chain = *std::move(chain);
    tls.private_key = *std::move(key);
  }
  return tls;
}

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
