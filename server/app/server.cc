#include "server/app/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpc/reflection/v1/reflection.pb.h"
#include "server/app/grpc_request_interceptor.h"
#include "server/app/grpc_request_metrics.h"
#include "server/app/metrics_endpoint.h"
#include "server/app/server_tls.h"
#include "server/auth/client_registry.h"
#include "server/broker/amqp/amqp_broker.h"
#include "server/broker/amqp/amqp_metrics.h"
#include "server/broker/broker_metrics.h"
#include "server/broker/memory/memory_broker.h"
#include "server/broker/redis/redis_broker.h"
#include "server/broker/redis/redis_metrics.h"
#include "server/common/clock.h"
#include "server/common/log.h"
#include "server/common/status_macros.h"
#include "server/common/usable_cores.h"
#include "server/config/broker_url.h"
#include "server/config/listen_address.h"
#include "server/event/dispatcher_impl.h"
#include "server/fleet/fleet_metrics.h"
#include "server/fleet/redis_lease_service.h"
#include "server/http/http_pool_impl.h"
#include "server/http/http_server.h"
#include "server/http/http_server_metrics.h"
#include "server/http/sharded_http_pool.h"
#include "server/metrics/metrics.h"
#include "server/metrics/process_metrics.h"
#include "server/ratelimit/client_quotas.h"
#include "server/ratelimit/global_limit_metrics.h"
#include "server/ratelimit/global_limiter.h"
#include "server/service/broker_service.h"
#include "server/service/json_rpc_http_service.h"
#include "server/service/reflection_v1_service.h"
#include "server/service/rpc_service.h"
#include "server/subscriptions/subscription_metrics.h"
#include "server/subscriptions/subscriptions.h"
#include "server/subscriptions/upstream_subscribe_admission.h"
#include "server/upstream/upstream_metrics.h"
#include "server/upstream/upstreams.h"
#include "switchboard/v1/broker.pb.h"
#include "switchboard/v1/rpc.pb.h"

namespace switchboard::app {
namespace {

constexpr char kBrokerServiceName[] = "switchboard.v1.Broker";
constexpr char kRpcServiceName[] = "switchboard.v1.Rpc";
constexpr size_t kMinReceiveMessageBytes = 16 << 20;
// The request metadata (headers) a call may carry. gRPC's default, 8 KiB,
// is below some identity providers' bearer tokens, and a call past the limit
// ends the whole HTTP/2 connection, failing the worker's other calls.
constexpr int kMaxRequestMetadataBytes = 64 << 10;
// Concurrent streams on one HTTP/2 connection to a provider that a call may
// count on (servers allow at least 100 by default; nginx 128).
constexpr uint32_t kHttp2StreamsPerConnection = 100;
// Of the drain budget, what the steps after the gRPC server's shutdown keep:
// the broker's flush of pending publishes, the upstreams' and the
// dispatchers' stops. At most half the budget.
constexpr absl::Duration kAfterGrpcReserve = absl::Milliseconds(2500);
// How long the start waits for the broker's first health report.
constexpr absl::Duration kFirstHealthReportWait = absl::Seconds(2);
// The ceiling of the fleet coordination's reconnect backoff.
constexpr absl::Duration kFleetReconnectMax = absl::Seconds(1);
// Upstream I/O threads when server.upstream_threads is 0: the cores the
// process may use (its CPU quota in a container), at most this many (past
// it, libcurl's work per call is no longer what limits).
constexpr uint32_t kMaxDefaultUpstreamThreads = 8;

// Every method the server serves, by full name: those of the services these
// files declare (Broker, Rpc, Health, reflection v1), and that of gRPC's own
// reflection v1alpha, whose descriptors this build does not include.
std::vector<GrpcRequestMetrics::Method> ServedMethods() {
  std::vector<GrpcRequestMetrics::Method> methods = {
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", /*unary=*/false}};
  for (const google::protobuf::FileDescriptor* file :
       {v1::PublishRequest::descriptor()->file(), v1::CallRequest::descriptor()->file(),
        grpc::health::v1::HealthCheckRequest::descriptor()->file(),
        grpc::reflection::v1::ServerReflectionRequest::descriptor()->file()}) {
    for (int i = 0; i < file->service_count(); ++i) {
      const google::protobuf::ServiceDescriptor& service = *file->service(i);
      for (int j = 0; j < service.method_count(); ++j) {
        const google::protobuf::MethodDescriptor& method = *service.method(j);
        methods.push_back({absl::StrCat("/", service.full_name(), "/", method.name()),
                           !method.client_streaming() && !method.server_streaming()});
      }
    }
  }
  return methods;
}

// How the gRPC port is secured, for the startup line.
std::string TransportSecurity(const config::v1::Server& server) {
  if (!server.has_tls()) return "plaintext";
  if (server.tls().client_ca_file().empty()) return "TLS";
  return server.tls().require_client_cert() ? "TLS, client certificate required"
                                            : "TLS, client certificate optional";
}

uint32_t UpstreamThreads(const config::v1::Server& server) {
  if (server.upstream_threads() > 0) return server.upstream_threads();
  return std::clamp<uint32_t>(common::UsableCores(), 1, kMaxDefaultUpstreamThreads);
}

class ServerImpl final : public Server {
 public:
  explicit ServerImpl(const config::Config& config)
      : config_(config),
        broker_dispatcher_("sb-broker", common::RealClock::Get()),
        upstream_dispatcher_("sb-upstream", common::RealClock::Get()),
        metrics_dispatcher_("sb-metrics", common::RealClock::Get()),
        json_rpc_dispatcher_("sb-json-rpc", common::RealClock::Get()),
        clients_(config::ClientCredentials(config)),
        streams_(config.limits().max_streams_per_client() == 0
                     ? std::numeric_limits<uint32_t>::max()
                     : config.limits().max_streams_per_client(),
                 config.limits().max_streams()),
        drain_timeout_(absl::Milliseconds(config.server().drain_timeout_ms())) {
    metrics::ExportBuildInfo(*metrics_.registry(), SWITCHBOARD_VERSION);
  }

  ~ServerImpl() override { Shutdown(); }

  absl::Status Init() {
    broker_dispatcher_.Start();
    upstream_dispatcher_.Start();
    metrics_dispatcher_.Start();
    // The upstream dispatcher is the first I/O thread; the others do I/O only.
    upstream_io_.push_back(&upstream_dispatcher_);
    for (uint32_t i = 1; i < UpstreamThreads(config_.server()); ++i) {
      upstream_io_dispatchers_.push_back(std::make_unique<event::DispatcherImpl>(
          absl::StrCat("sb-upstream-", i), common::RealClock::Get()));
      upstream_io_dispatchers_.back()->Start();
      upstream_io_.push_back(upstream_io_dispatchers_.back().get());
    }
    SB_ASSIGN_OR_RETURN(config::BrokerUrl url, config::ParseBrokerUrl(config_.broker().url()));
    broker_ = MakeBroker(url);
    if (config::HasGlobalLimits(config_)) {
      // Validation refuses it already: the fleet's leases live in Redis.
      if (url.scheme != config::BrokerUrl::Scheme::kRedis) {
        return absl::FailedPreconditionError(
            absl::StrCat("global limits need a redis:// broker that the replicas share, and "
                         "broker.url is ",
                         url.Redacted()));
      }
      StartFleet(url);
    }
    upstreams_ = std::make_unique<upstream::Upstreams>(upstream_dispatcher_, UpstreamDefinitions(),
                                                       ClientQuotaDefinitions(), upstream_metrics_,
                                                       lease_service_.get());
    subscribe_admission_ = std::make_unique<subscriptions::UpstreamSubscribeAdmission>(*upstreams_);
    subscriptions_ = std::make_unique<subscriptions::Subscriptions>(
        upstream_dispatcher_, SubscriptionDefinitions(), subscription_metrics_,
        subscribe_admission_.get());
    MetricsEndpoint::Options metrics_options;
    metrics_options.listen = config_.server().metrics_listen();
    metrics_options.collectables.push_back(std::make_shared<metrics::ProcessCollector>());
    if (amqp_broker_ != nullptr) {
      // amqp_broker_ outlives the endpoint, and its counter is safe to read
      // from the endpoint's thread (0 once the broker is shut down).
      metrics_options.collectables.push_back(broker::amqp::AmqpMetrics::UnconfirmedPublishes(
          [broker = amqp_broker_] { return broker->unconfirmed_publishes(); }));
    }
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
        MetricsEndpoint::Start(metrics_dispatcher_, metrics_options, metrics_.registry());
    if (!endpoint.ok()) {
      return absl::UnavailableError(absl::StrCat("server.metrics_listen: cannot listen on ",
                                                 config_.server().metrics_listen(), ": ",
                                                 endpoint.status().message()));
    }
    metrics_endpoint_ = *std::move(endpoint);

    service::RequestLimits limits;
    limits.max_message_bytes = config_.limits().max_message_bytes();
    limits.max_batch_messages = config_.limits().max_batch_messages();
    context_ = std::make_unique<service::ServiceContext>(service::ServiceContext{
        *broker_, *upstreams_, *subscriptions_, clients_, metrics_, streams_, request_metrics_,
        limits, lease_service_ != nullptr ? lease_service_->replica_id() : std::string()});
    broker_service_ = std::make_unique<service::BrokerService>(*context_);
    rpc_service_ = std::make_unique<service::RpcService>(*context_);
    SB_RETURN_IF_ERROR(StartJsonRpcHttp());

    SB_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                        MakeServerCredentials(config_.server()));
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config_.server().listen(), credentials, &grpc_port_);
    builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, kMaxRequestMetadataBytes);
    builder.SetMaxReceiveMessageSize(static_cast<int>(
        std::max<uint64_t>(kMinReceiveMessageBytes, limits.max_message_bytes + (64 << 10))));
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(
        MakeGrpcRequestInterceptorFactory(request_metrics_, metrics_, common::RealClock::Get()));
    builder.experimental().SetInterceptorCreators(std::move(interceptors));
    builder.RegisterService(broker_service_.get());
    builder.RegisterService(rpc_service_.get());
    service::AddReflectionV1(builder);  // Beside gRPC's v1alpha.
    grpc_server_ = builder.BuildAndStart();
    if (grpc_server_ == nullptr || grpc_port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("server.listen: cannot listen on ", config_.server().listen()));
    }
    grpc::HealthCheckServiceInterface* health = grpc_server_->GetHealthCheckService();
    // The proxy needs no broker: it serves as long as the process does.
    health->SetServingStatus(kRpcServiceName, true);
    // Known, and not serving until the broker's first report.
    health->SetServingStatus(kBrokerServiceName, false);
    broker_->WatchHealth([this, health](bool serving) {
      absl::MutexLock lock(&shutdown_mu_);
      if (shut_down_) return;
      health->SetServingStatus(kBrokerServiceName, serving);
      SB_LOG(kInfo, "broker is ", serving ? "serving" : "NOT serving");
      broker_reported_ = true;
    });
    // Ready when the broker's health is known (the memory broker's at once,
    // a Redis broker's once it connected or failed to), or after
    // kFirstHealthReportWait: a health check right after the start sees
    // the broker's state.
    {
      absl::MutexLock lock(&shutdown_mu_);
      shutdown_mu_.AwaitWithTimeout(absl::Condition(&broker_reported_), kFirstHealthReportWait);
    }
    SB_LOG(kInfo, "switchboard listening on ", config_.server().listen(), " (port ", grpc_port_,
           "), metrics on ", config_.server().metrics_listen(), " (port ", metrics_port(),
           "), broker ", url.Redacted(), ", gRPC ", TransportSecurity(config_.server()),
           json_rpc_server_ == nullptr
               ? ""
               : absl::StrCat(", JSON-RPC over HTTP on ", config_.server().json_rpc_listen(),
                              " (port ", json_rpc_port(), ")"));
    return absl::OkStatus();
  }

  int grpc_port() const override { return grpc_port_; }

  int metrics_port() const override {
    return metrics_endpoint_ == nullptr ? 0 : metrics_endpoint_->port();
  }

  int json_rpc_port() const override {
    return json_rpc_server_ == nullptr ? 0 : json_rpc_server_->port();
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&shutdown_mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    // The gRPC part of the drain ends early enough to leave the steps after
    // it (flushing the broker, stopping the metrics endpoint) their share of
    // the budget: the process exits within drain_timeout.
    const absl::Time grpc_deadline =
        absl::Now() + drain_timeout_ - std::min(kAfterGrpcReserve, drain_timeout_ / 2);
    // The front door takes no new connections; its calls in flight end with
    // the gRPC ones (answered by the cut-off at the latest).
    if (json_rpc_server_ != nullptr) json_rpc_server_->StopAccepting();
    if (json_rpc_websockets_ != nullptr) {
      json_rpc_dispatcher_.Post([websockets = json_rpc_websockets_.get()] {
        websockets->CloseAll();  // 1001: the clients reconnect elsewhere.
      });
    }
    if (grpc_server_ != nullptr) {
      SB_LOG(kInfo, "draining: ending open streams");
      grpc_server_->GetHealthCheckService()->Shutdown();
      streams_.DrainAll();
      if (!streams_.WaitUntilEmpty(grpc_deadline)) {
        SB_LOG(kWarning, "drain budget spent with streams still open; cancelling them");
      }
      // Stops accepting, lets unary calls finish, then cancels what is left
      // (Health.Watch calls, which only end here, among them). A cancelled
      // call still waits for its answer, so at the cut-off the upstreams
      // answer every call still open (UNAVAILABLE) and cancel their
      // requests: a provider that answers late never holds the drain up.
      absl::Notification grpc_stopped;
      std::thread cut_off([this, &grpc_stopped, grpc_deadline] {
        if (!grpc_stopped.WaitForNotificationWithDeadline(grpc_deadline) && upstreams_ != nullptr) {
          upstreams_->Shutdown();
        }
      });
      grpc_server_->Shutdown(absl::ToChronoTime(grpc_deadline));
      grpc_stopped.Notify();
      cut_off.join();
    }
    // Its calls were answered by the cut-off at the latest.
    json_rpc_server_.reset();
    if (json_rpc_websockets_ != nullptr) {
      absl::Notification freed;  // Its sessions leave their subscriptions.
      json_rpc_dispatcher_.Post([this, &freed] {
        json_rpc_websockets_.reset();
        freed.Notify();
      });
      freed.WaitForNotification();
    }
    json_rpc_dispatcher_.Shutdown();
    if (broker_ != nullptr) broker_->Shutdown();  // Completes pending publishes.
    broker_dispatcher_.Shutdown();
    // The hubs first: their subscribes may wait in the upstreams' admission.
    if (subscriptions_ != nullptr) subscriptions_->Shutdown();  // Closes the WebSockets.
    if (upstreams_ != nullptr) upstreams_->Shutdown();          // Answers calls still open.
    StopFleet();
    // After the pools that had shards on them, before the upstream
    // dispatcher that their results go back to.
    for (auto& io : upstream_io_dispatchers_) io->Shutdown();
    upstream_dispatcher_.Shutdown();
    metrics_endpoint_.reset();
    metrics_dispatcher_.Shutdown();
    SB_LOG(kInfo, "shutdown complete");
  }

 private:
  // The JSON-RPC front door, when server.json_rpc_listen is set.
  absl::Status StartJsonRpcHttp() {
    const config::v1::Server& server = config_.server();
    if (server.json_rpc_listen().empty()) return absl::OkStatus();
    SB_ASSIGN_OR_RETURN(config::HostPort address, config::ParseHostPort(server.json_rpc_listen()));
    json_rpc_dispatcher_.Start();
    service::JsonRpcWebSockets::Options websockets;
    websockets.max_websockets = server.json_rpc_http().max_websockets();
    websockets.max_subscriptions_per_websocket =
        server.json_rpc_http().max_subscriptions_per_websocket();
    websockets.connection.max_message_bytes = config_.limits().max_message_bytes();
    json_rpc_websockets_ = std::make_unique<service::JsonRpcWebSockets>(
        json_rpc_dispatcher_, *context_, websockets, *json_rpc_websocket_gauges_);
    json_rpc_service_ = std::make_unique<service::JsonRpcHttpService>(
        *context_, server.json_rpc_http().max_batch_calls(), json_rpc_websockets_.get());
    http::HttpServer::Options options;
    options.host = address.host;
    options.port = address.port;
    options.max_connections = server.json_rpc_http().max_connections();
    options.request_timeout = absl::Milliseconds(server.json_rpc_http().idle_timeout_ms());
    options.max_body_bytes = config_.limits().max_message_bytes();
    options.max_head_bytes = kMaxRequestMetadataBytes;
    options.keep_alive = true;
    absl::StatusOr<std::unique_ptr<http::HttpServer>> started = http::HttpServer::Start(
        json_rpc_dispatcher_, options,
        [service = json_rpc_service_.get()](http::HttpRequest request, http::Responder responder) {
          service->Handle(std::move(request), std::move(responder));
        },
        *json_rpc_connections_);
    if (!started.ok()) {
      return absl::UnavailableError(absl::StrCat("server.json_rpc_listen: cannot listen on ",
                                                 server.json_rpc_listen(), ": ",
                                                 started.status().message()));
    }
    json_rpc_server_ = *std::move(started);
    return absl::OkStatus();
  }

  std::unique_ptr<broker::Broker> MakeBroker(const config::BrokerUrl& url) {
    switch (url.scheme) {
      case config::BrokerUrl::Scheme::kMemory:
        return std::make_unique<broker::MemoryBroker>(
            broker_dispatcher_, config::BuildTopicPolicies(config_), broker_metrics_,
            broker::MemoryLimits{config_.limits().max_memory_bytes(),
                                 config_.limits().max_topics()});
      case config::BrokerUrl::Scheme::kRedis:
        // One real-clock dispatcher runs both the broker and its
        // connections, so no work hops between threads.
        return std::make_unique<broker::RedisBroker>(
            broker_dispatcher_, broker_dispatcher_, RedisOptions(url, config_.broker().redis()),
            config::BuildTopicPolicies(config_), broker_metrics_, redis_metrics_);
      case config::BrokerUrl::Scheme::kAmqp: {
        // Its connections do their I/O on threads of their own and report
        // to the broker's dispatcher.
        amqp_metrics_ = std::make_unique<broker::amqp::AmqpMetrics>(metrics_);
        auto broker = std::make_unique<broker::AmqpBroker>(
            broker_dispatcher_, AmqpOptions(url, config_.broker().amqp()),
            config::BuildTopicPolicies(config_), broker_metrics_, amqp_metrics_->publish(),
            amqp_metrics_->consume());
        amqp_broker_ = broker.get();
        return broker;
      }
    }
    return nullptr;
  }

  // The fleet coordination of the global limits: its connections live on
  // the upstream dispatcher, beside the limiters that lease through it.
  void StartFleet(const config::BrokerUrl& url) {
    const config::v1::Fleet& fleet = config_.fleet();
    fleet::FleetOptions options;
    options.connection = RedisOptions(url, config_.broker().redis()).connection;
    options.connection.command_timeout = absl::Milliseconds(fleet.redis_timeout_ms());
    // Back to global coordination soon after Redis is: the limits run on
    // their fallback share meanwhile.
    options.connection.reconnect_max =
        std::min(options.connection.reconnect_max, kFleetReconnectMax);
    options.replica_id = fleet.replica_id().empty() ? DefaultReplicaId() : fleet.replica_id();
    options.heartbeat_interval = absl::Milliseconds(fleet.heartbeat_ms());
    options.replica_ttl = absl::Milliseconds(fleet.replica_ttl_ms());
    options.horizon = absl::Milliseconds(fleet.lease_ms());
    options.timeout = absl::Milliseconds(fleet.redis_timeout_ms());
    fleet_metrics_ = std::make_unique<fleet::FleetMetrics>(metrics_);
    absl::Notification started;
    upstream_dispatcher_.Post([this, &options, &started] {
      lease_service_ = std::make_unique<fleet::RedisLeaseService>(
          upstream_dispatcher_, std::move(options), redis_metrics_, *fleet_metrics_);
      lease_service_->Start();
      started.Notify();
    });
    started.WaitForNotification();
    SB_LOG(kInfo, "global limits: replica ", lease_service_->replica_id(),
           " coordinates with the fleet through ", url.Redacted());
  }

  // Leaves the fleet and closes its connections, on their dispatcher.
  void StopFleet() {
    if (lease_service_ == nullptr) return;
    absl::Notification stopped;
    upstream_dispatcher_.Post([this, &stopped] {
      lease_service_.reset();
      stopped.Notify();
    });
    stopped.WaitForNotification();
  }

  static std::string DefaultReplicaId() {
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
      std::snprintf(host, sizeof(host), "switchboard");
    }
    return absl::StrCat(host, "-", getpid());
  }

  // The limit a `global` upstream or client quota shares with the fleet.
  std::unique_ptr<ratelimit::Limiter> MakeGlobalLimiter(ratelimit::SharedLimit limit) {
    return std::make_unique<ratelimit::GlobalLimiter>(upstream_dispatcher_, *lease_service_,
                                                      std::move(limit), global_limit_metrics_);
  }

  upstream::Upstreams::Quotas ClientQuotaDefinitions() {
    upstream::Upstreams::Quotas quotas;
    absl::flat_hash_set<std::string> global;
    for (const config::v1::Client& client : config_.clients()) {
      quotas.requests_per_second[client.id()] = client.requests_per_second();
      if (client.quota_scope() == config::v1::LIMIT_SCOPE_GLOBAL) global.insert(client.id());
    }
    if (global.empty()) return quotas;
    quotas.make_limiter = [this, global](absl::string_view client_id, double rate,
                                         double burst) -> std::unique_ptr<ratelimit::Limiter> {
      if (!global.contains(client_id)) return nullptr;  // ClientQuotas' own LocalLimiter.
      ratelimit::SharedLimit limit;
      limit.kind = "client";
      limit.name = std::string(client_id);
      limit.rate = rate;
      limit.burst = burst;
      return MakeGlobalLimiter(std::move(limit));
    };
    return quotas;
  }

  std::vector<upstream::Upstreams::Definition> UpstreamDefinitions() {
    std::vector<upstream::Upstreams::Definition> definitions;
    for (const config::v1::Upstream& upstream : config_.upstreams()) {
      http::HttpPoolOptions pool;
      pool.max_connections_per_host = static_cast<int>(upstream.max_connections());
      pool.http2 = upstream.http2();
      pool.verify_tls = upstream.tls_verify();
      pool.max_response_bytes = upstream.max_response_bytes();
      const bool cleartext = std::any_of(
          upstream.urls().begin(), upstream.urls().end(),
          [](const std::string& url) { return absl::StartsWithIgnoreCase(url, "http://"); });
      if (upstream.has_http2() && upstream.http2() && cleartext &&
          !http::CleartextHttp2Supported()) {
        SB_LOG(kWarning, "upstream ", upstream.name(),
               ": this libcurl cannot reuse cleartext HTTP/2 connections (fixed in 8.0.0), so "
               "its http:// URLs use HTTP/1.1; https:// ones still negotiate HTTP/2");
      }
      upstream::Upstreams::Definition definition{UpstreamOptionsOf(upstream), MakePool(pool),
                                                 /*make_limiter=*/nullptr};
      if (upstream.rate_limit().scope() == config::v1::LIMIT_SCOPE_GLOBAL) {
        ratelimit::SharedLimit limit;
        limit.kind = "upstream";
        limit.name = definition.options.name;
        limit.rate = definition.options.admission.rate;
        limit.burst = definition.options.admission.burst;
        limit.aimd = definition.options.admission.aimd;
        definition.make_limiter = [this, limit] { return MakeGlobalLimiter(limit); };
      }
      definitions.push_back(std::move(definition));
    }
    return definitions;
  }

  // An upstream's pool: on the upstream dispatcher alone, or sharded over
  // the upstream I/O threads, each with a share of its connections.
  upstream::UpstreamClient::PoolFactory MakePool(const http::HttpPoolOptions& pool) {
    if (upstream_io_.size() == 1) {
      return [this, pool](http::HttpPoolObserver& observer) {
        return std::make_unique<http::HttpPoolImpl>(upstream_dispatcher_, pool, observer);
      };
    }
    return [this, pool](http::HttpPoolObserver& observer) -> std::unique_ptr<http::HttpPool> {
      http::ShardedHttpPoolOptions sharding;
      sharding.max_connections_per_host = pool.max_connections_per_host;
      return std::make_unique<http::ShardedHttpPool>(
          upstream_dispatcher_,
          std::vector<event::Dispatcher*>(upstream_io_.begin(), upstream_io_.end()), sharding,
          [io = upstream_io_, pool](size_t index, int connections_per_host,
                                    http::HttpPoolObserver& shard_observer) {
            http::HttpPoolOptions shard = pool;
            shard.max_connections_per_host = connections_per_host;
            return std::make_unique<http::HttpPoolImpl>(*io[index], shard, shard_observer);
          },
          observer);
    };
  }

  // One subscription hub per upstream with ws_urls.
  std::vector<subscriptions::HubOptions> SubscriptionDefinitions() const {
    std::vector<subscriptions::HubOptions> hubs;
    for (const config::v1::Upstream& upstream : config_.upstreams()) {
      if (upstream.ws_urls_size() == 0) continue;
      const config::v1::Subscriptions& config = upstream.subscriptions();
      subscriptions::HubOptions& hub = hubs.emplace_back();
      hub.upstream = upstream.name();
      hub.ws_urls.assign(upstream.ws_urls().begin(), upstream.ws_urls().end());
      hub.max_connections = config.max_connections();
      hub.max_subscriptions_per_connection = config.max_subscriptions_per_connection();
      hub.linger = absl::Milliseconds(config.linger_ms());
      hub.subscriber_buffer = config.buffer();
      hub.overflow = config::ToOverflowPolicy(config.overflow());
      hub.subscribe_timeout = absl::Milliseconds(config.subscribe_timeout_ms());
      // Subscribes count against the upstream's rate limit, as calls do.
      hub.paced = upstream.rate_limit().requests_per_second() > 0;
      hub.reconnect.initial = absl::Milliseconds(config.reconnect_initial_ms());
      hub.reconnect.max = absl::Milliseconds(config.reconnect_max_ms());
      hub.client.ping_interval = absl::Milliseconds(config.ping_interval_ms());
      hub.client.pong_timeout = absl::Milliseconds(config.pong_timeout_ms());
      hub.client.tls_verify = upstream.tls_verify();
      hub.client.max_message_bytes = upstream.max_response_bytes();
    }
    return hubs;
  }

  static upstream::UpstreamOptions UpstreamOptionsOf(const config::v1::Upstream& upstream) {
    upstream::UpstreamOptions options;
    options.name = upstream.name();
    options.urls.assign(upstream.urls().begin(), upstream.urls().end());
    options.request_timeout = absl::Milliseconds(upstream.timeout_ms());
    options.method_cost.insert(upstream.method_cost().begin(), upstream.method_cost().end());
    options.max_attempts = upstream.retry().max_attempts();
    options.retry_methods.insert(upstream.retry().methods().begin(),
                                 upstream.retry().methods().end());
    options.retry_backoff = absl::Milliseconds(upstream.retry().backoff_ms());
    for (const auto& [method, ttl_ms] : upstream.cache_ttl_ms()) {
      options.cache_ttl[method] = absl::Milliseconds(ttl_ms);
    }
    options.coalescing = upstream.coalescing().enabled();
    options.never_coalesce.insert(upstream.coalescing().never().begin(),
                                  upstream.coalescing().never().end());
    options.breaker_failure_threshold = upstream.circuit_breaker().failure_threshold();
    options.breaker_open_time = absl::Milliseconds(upstream.circuit_breaker().open_ms());
    options.rate_limited = upstream.rate_limit().requests_per_second() > 0;
    options.admission.rate = upstream.rate_limit().requests_per_second();
    options.admission.burst = upstream.rate_limit().burst();
    options.admission.max_queue_depth = upstream.max_queue_depth();
    // What the connections carry at once: one request each over HTTP/1.1,
    // kHttp2StreamsPerConnection over HTTP/2 once a URL answers over it;
    // with batching, a batch each.
    options.max_connections = upstream.max_connections();
    options.http2_streams_per_connection = upstream.http2() ? kHttp2StreamsPerConnection : 0;
    options.admission.max_in_flight = options.max_connections;
    if (upstream.has_batch()) {
      upstream::BatchOptions& batch = options.batch.emplace();
      batch.max_calls = upstream.batch().max_calls();
      batch.max_bytes = upstream.batch().max_bytes();
      batch.methods.insert(upstream.batch().methods().begin(), upstream.batch().methods().end());
      batch.except.insert(upstream.batch().except().begin(), upstream.batch().except().end());
      options.admission.max_in_flight *= batch.max_calls;
    }
    return options;
  }

  static broker::RedisBrokerOptions RedisOptions(const config::BrokerUrl& url,
                                                 const config::v1::Redis& redis) {
    broker::RedisBrokerOptions options;
    options.connection.host = url.host;
    options.connection.port = url.port;
    options.connection.user = url.user;
    options.connection.password = url.password;
    options.connection.db = url.db;
    options.connection.command_timeout = absl::Milliseconds(redis.command_timeout_ms());
    options.connection.connect_timeout = absl::Milliseconds(redis.connect_timeout_ms());
    options.connection.reconnect_initial = absl::Milliseconds(redis.reconnect_initial_ms());
    options.connection.reconnect_max = absl::Milliseconds(redis.reconnect_max_ms());
    options.max_reader_connections = redis.max_reader_connections();
    options.block_time = absl::Milliseconds(redis.block_ms());
    options.reader_linger = absl::Milliseconds(redis.reader_linger_ms());
    options.maintenance_interval = absl::Milliseconds(redis.maintenance_interval_ms());
    options.consumer_name = redis.consumer_name();
    return options;
  }

  static broker::AmqpBrokerOptions AmqpOptions(const config::BrokerUrl& url,
                                               const config::v1::Amqp& amqp) {
    broker::AmqpBrokerOptions options;
    options.connection.host = url.host;
    options.connection.port = url.port;
    options.connection.vhost = url.vhost;
    options.connection.user = url.user;
    options.connection.password = url.password;
    options.connection.tls = url.tls;
    options.connection.ca_file = amqp.ca_file();
    options.connection.operation_timeout = absl::Milliseconds(amqp.operation_timeout_ms());
    options.connection.connect_timeout = absl::Milliseconds(amqp.connect_timeout_ms());
    options.connection.heartbeat = absl::Seconds(amqp.heartbeat_s());
    options.connection.reconnect_initial = absl::Milliseconds(amqp.reconnect_initial_ms());
    options.connection.reconnect_max = absl::Milliseconds(amqp.reconnect_max_ms());
    options.name_prefix = amqp.name_prefix();
    return options;
  }

  const config::Config config_;
  metrics::Metrics metrics_;
  GrpcRequestMetrics request_metrics_{metrics_, ServedMethods()};
  // The observers of each component, reporting to metrics_.
  broker::BrokerMetrics broker_metrics_{metrics_};
  broker::redis::RedisMetrics redis_metrics_{metrics_};
  upstream::UpstreamMetrics upstream_metrics_{metrics_};
  subscriptions::SubscriptionMetrics subscription_metrics_{metrics_};
  ratelimit::GlobalLimitMetrics global_limit_metrics_{metrics_};
  std::unique_ptr<fleet::FleetMetrics> fleet_metrics_;  // With the fleet.
  // With an amqp:// broker; outlives it.
  std::unique_ptr<broker::amqp::AmqpMetrics> amqp_metrics_;
  event::DispatcherImpl broker_dispatcher_;
  event::DispatcherImpl upstream_dispatcher_;
  event::DispatcherImpl metrics_dispatcher_;   // Serves /metrics.
  event::DispatcherImpl json_rpc_dispatcher_;  // Serves the JSON-RPC front door, if on.
  // The upstream I/O threads besides upstream_dispatcher_, and all of them
  // (upstream_dispatcher_ first). Shut down before upstream_dispatcher_.
  std::vector<std::unique_ptr<event::DispatcherImpl>> upstream_io_dispatchers_;
  std::vector<event::DispatcherImpl*> upstream_io_;
  std::unique_ptr<broker::Broker> broker_;
  broker::AmqpBroker* amqp_broker_ = nullptr;  // broker_, when it is RabbitMQ.
  auth::ClientRegistry clients_;
  // Used and freed on upstream_dispatcher_, after upstreams_.
  std::unique_ptr<fleet::RedisLeaseService> lease_service_;
  std::unique_ptr<upstream::Upstreams> upstreams_;
  std::unique_ptr<subscriptions::UpstreamSubscribeAdmission> subscribe_admission_;
  std::unique_ptr<subscriptions::Subscriptions> subscriptions_;
  service::StreamTracker streams_;
  std::unique_ptr<MetricsEndpoint> metrics_endpoint_;
  std::unique_ptr<http::HttpServerGauges> json_rpc_connections_ =
      http::HttpServerGauges::ForJsonRpcFrontDoor(*metrics_.registry());
  std::unique_ptr<http::HttpServerGauges> json_rpc_websocket_gauges_ =
      http::HttpServerGauges::ForJsonRpcWebSockets(*metrics_.registry());
  // Used and freed on json_rpc_dispatcher_.
  std::unique_ptr<service::JsonRpcWebSockets> json_rpc_websockets_;
  std::unique_ptr<service::JsonRpcHttpService> json_rpc_service_;
  std::unique_ptr<http::HttpServer> json_rpc_server_;  // Before the service, which it calls.
  std::unique_ptr<service::ServiceContext> context_;
  std::unique_ptr<service::BrokerService> broker_service_;
  std::unique_ptr<service::RpcService> rpc_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  int grpc_port_ = 0;
  const absl::Duration drain_timeout_;

  absl::Mutex shutdown_mu_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mu_) = false;
  bool broker_reported_ ABSL_GUARDED_BY(shutdown_mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const config::Config& config) {
  auto server = std::make_unique<ServerImpl>(config);
  if (absl::Status status = server->Init(); !status.ok()) return status;
  return server;
}

}  // namespace switchboard::app
