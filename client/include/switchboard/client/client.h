// The entry point of the Switchboard client library: one `Client` per worker
// process, holding the ONE gRPC channel that every Publisher, Subscriber and
// Consumer of that process shares (the worker-side half of seed 000's
// connection sharing). The library is in the style of google-cloud-cpp's
// Pub/Sub client:
//
//   switchboard::client::ClientOptions options;
//   options.target = "127.0.0.1:7070";
//   switchboard::client::Client client(options);
//   switchboard::client::Publisher publisher(client, "orders");
//   auto id = publisher.Publish(message).get();   // absl::StatusOr<std::string>
//
// Layers, low to high: `PublishStream` and `ConsumeStream` wrap one streaming
// RPC each; `Publisher` (batching), `Subscriber` and `Consumer` (handler pool,
// acks, reconnects) are built on them. Every error is an absl::Status whose
// code is the gRPC status code the server sent.
//
// Ownership: the Client must outlive every object made from it. A Client is
// thread-safe and holds no threads of its own; gRPC's callback threads run
// the library's stream callbacks.
#pragma once

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "switchboard/v1/rpc.grpc.pb.h"

namespace switchboard::client {

// TLS to a server with `server.tls`. PEM text; LoadTlsFiles reads it from
// files.
struct TlsOptions {
  // The CAs that sign the server's certificate. Empty: the system's roots.
  std::string root_certificates;
  // The worker's certificate chain and its private key, for mutual TLS:
  // both or neither.
  std::string certificate_chain;
  std::string private_key;
  // The name the server's certificate must carry when it is not the
  // target's host (e.g. a certificate for `switchboard.prod.svc` reached as
  // 127.0.0.1). Empty: the target's host.
  std::string server_name;
};

// Reads the PEM files of a TlsOptions; an empty path reads nothing.
// INVALID_ARGUMENT naming the file (`tls_ca`, `tls_cert`, `tls_key`, as the
// flags of sbctl and the example workers) when one cannot be read, holds no
// PEM block, or a certificate comes without its key.
absl::StatusOr<TlsOptions> LoadTlsFiles(const std::string& ca_file, const std::string& cert_file,
                                        const std::string& key_file);

struct ClientOptions {
  // The server address, in gRPC target syntax.
  std::string target = "127.0.0.1:7070";

  // Sent as `authorization: Bearer <token>` on every call. Empty: no
  // authorization metadata (the server's anonymous mode, or a client known
  // by its TLS certificate).
  std::string bearer_token;

  // Set: the channel speaks TLS. Absent: plaintext.
  std::optional<TlsOptions> tls;

  // Deadline of each unary call (Publish, CheckHealth) and of a stream's
  // graceful close.
  absl::Duration rpc_timeout = absl::Seconds(30);

  // The longest pause between the channel's attempts to reconnect to a server
  // that went away. gRPC's own default (120 s) would leave a restarted server
  // unused for minutes.
  absl::Duration max_reconnect_backoff = absl::Seconds(5);
};

class Client {
 public:
  // Creates the channel. It connects lazily, on the first call.
  explicit Client(ClientOptions options = {});

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }

  // The shared channel, e.g. to wait for it to connect.
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

  // The Broker and Rpc stubs on the shared channel. Thread-safe.
  v1::Broker::StubInterface& broker() const { return *broker_; }
  v1::Rpc::StubInterface& rpc() const { return *rpc_; }

  // Adds the authorization metadata to a call's context. Every call this
  // library makes goes through here.
  void PrepareContext(grpc::ClientContext& context) const;

  // PrepareContext, plus the unary-call deadline (ClientOptions::rpc_timeout
  // from now), for a unary call made on a stub directly.
  void PrepareUnaryContext(grpc::ClientContext& context) const;

  // Publishes one batch with the unary Publish RPC and blocks until the server
  // answers: the message ids in request order, or the server's error.
  absl::StatusOr<std::vector<std::string>> Publish(const std::string& topic,
                                                   std::vector<v1::OutgoingMessage> messages) const;

  // Makes one JSON-RPC call through the Rpc service and blocks until it is
  // answered: the provider's result or error object, or the call's status.
  // A RESOURCE_EXHAUSTED carries the server's `retry-after-ms` trailer in
  // `retry_after` when given.
  absl::StatusOr<v1::CallResponse> Call(const v1::CallRequest& request,
                                        absl::Duration* retry_after = nullptr) const;

  // Describes upstream `upstream`'s rate limit (Rpc.DescribeLimit): as the
  // answering replica sees it, and for a global limit as the fleet shares it.
  // Blocks.
  absl::StatusOr<v1::DescribeLimitResponse> DescribeLimit(const std::string& upstream) const;

  // Asks the standard gRPC health service about `service` ("" is the whole
  // server, "switchboard.v1.Broker" the broker). Blocks.
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
      const std::string& service) const;

 private:
  const ClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<v1::Broker::StubInterface> broker_;
  const std::unique_ptr<v1::Rpc::StubInterface> rpc_;
  const std::unique_ptr<grpc::health::v1::Health::StubInterface> health_;
};

}  // namespace switchboard::client
