#include "server/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/names.h"
#include "server/common/status_macros.h"
#include "server/config/broker_url.h"
#include "server/config/listen_address.h"
#include "server/config/yaml_proto.h"
#include "server/ws/websocket_handshake.h"

namespace switchboard::config {
namespace {

// The longest clients[].cert_subject or cert_san.
constexpr size_t kMaxCertIdentityBytes = 1024;

// The most topics[].groups of one topic: each is a queue RabbitMQ keeps.
constexpr int kMaxGroupsPerTopic = 64;

// The longest broker.amqp.name_prefix.
constexpr size_t kMaxAmqpNamePrefixLength = 64;

absl::Status FieldError(absl::string_view path, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", message));
}

// Prefixes a path-less error from a parser with the field's path.
absl::Status WithPath(absl::string_view path, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
}

absl::Status ValidateServer(const v1::Server& server) {
  SB_RETURN_IF_ERROR(WithPath("server.listen", ParseHostPort(server.listen()).status()));
  SB_RETURN_IF_ERROR(
      WithPath("server.metrics_listen", ParseHostPort(server.metrics_listen()).status()));
  if (server.listen() == server.metrics_listen() && !absl::EndsWith(server.listen(), ":0")) {
    return FieldError("server.metrics_listen", "must differ from server.listen");
  }
  if (!server.json_rpc_listen().empty()) {
    SB_RETURN_IF_ERROR(
        WithPath("server.json_rpc_listen", ParseHostPort(server.json_rpc_listen()).status()));
    if ((server.json_rpc_listen() == server.listen() ||
         server.json_rpc_listen() == server.metrics_listen()) &&
        !absl::EndsWith(server.json_rpc_listen(), ":0")) {
      return FieldError("server.json_rpc_listen",
                        "must differ from server.listen and server.metrics_listen");
    }
  }
  if (!server.has_tls()) return absl::OkStatus();
  const v1::Tls& tls = server.tls();
  if (tls.cert_file().empty()) return FieldError("server.tls.cert_file", "is required");
  if (tls.key_file().empty()) return FieldError("server.tls.key_file", "is required");
  if (tls.require_client_cert() && tls.client_ca_file().empty()) {
    return FieldError("server.tls.require_client_cert",
                      "needs server.tls.client_ca_file, the CAs that sign client certificates");
  }
  return absl::OkStatus();
}

// gRPC metadata values are printable ASCII, and Bearer tokens have no spaces:
// a token with anything else (often a trailing newline from a Secret file)
// could never match.
bool IsValidToken(absl::string_view token) {
  for (char c : token) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

// A client's bearer token: non-empty, sendable as a header, unique.
absl::Status ValidateToken(const std::string& token, const std::string& path,
                           std::map<std::string, int>& index, int client) {
  if (token.empty()) return FieldError(path, "must not be empty");
  if (!IsValidToken(token)) {
    return FieldError(path,
                      "must be printable ASCII without spaces (check for a trailing newline)");
  }
  const auto [existing, inserted] = index.emplace(token, client);
  if (!inserted) {
    return FieldError(path, absl::StrCat("same token as clients[", existing->second, "]"));
  }
  return absl::OkStatus();
}

// A client's certificate identity (cert_subject or cert_san): non-empty,
// bounded, unique among the clients, and only with client certificates on.
absl::Status ValidateCertIdentity(const Config& config, const std::string& value,
                                  const std::string& path, std::map<std::string, int>& index,
                                  int client) {
  if (value.empty()) return FieldError(path, "must not be empty");
  if (value.size() > kMaxCertIdentityBytes) {
    return FieldError(path, absl::StrCat("is longer than ", kMaxCertIdentityBytes, " bytes"));
  }
  if (config.server().tls().client_ca_file().empty()) {
    return FieldError(path,
                      "needs server.tls.client_ca_file: without it no client presents a "
                      "certificate");
  }
  const auto [existing, inserted] = index.emplace(value, client);
  if (!inserted) {
    return FieldError(path, absl::StrCat("same value as clients[", existing->second, "]"));
  }
  return absl::OkStatus();
}

// A knob of one topic kind set on a topic of the other kind.
struct KindSpecificField {
  bool set;
  absl::string_view name;
};

absl::Status ValidateKindSpecificFields(const v1::Topic& topic, const std::string& path) {
  const bool ephemeral = topic.kind() == v1::Topic::KIND_EPHEMERAL;
  const std::vector<KindSpecificField> other_kind_fields =
      ephemeral
          ? std::vector<KindSpecificField>{{topic.has_max_len(), "max_len"},
                                           {topic.has_ack_deadline_ms(), "ack_deadline_ms"},
                                           {topic.has_max_delivery_attempts(),
                                            "max_delivery_attempts"},
                                           {topic.has_dead_letter_suffix(), "dead_letter_suffix"},
                                           {topic.has_exclusive(), "exclusive"},
                                           {topic.has_retry_backoff(), "retry_backoff"},
                                           {topic.has_ordering_partitions(), "ordering_partitions"},
                                           {topic.has_max_bytes(), "max_bytes"},
                                           {topic.has_dedup_window_ms(), "dedup_window_ms"},
                                           {topic.groups_size() > 0, "groups"}}
          : std::vector<KindSpecificField>{{topic.has_buffer(), "buffer"},
                                           {topic.has_overflow(), "overflow"}};
  for (const KindSpecificField& field : other_kind_fields) {
    if (!field.set) continue;
    return FieldError(
        absl::StrCat(path, ".", field.name),
        absl::StrCat("applies only to ", ephemeral ? "durable" : "ephemeral",
                     " topics, and this topic is ", ephemeral ? "ephemeral" : "durable"));
  }
  return absl::OkStatus();
}

absl::Status ValidateDeadLetterSuffix(const v1::Topic& topic, const std::string& path) {
  const std::string suffix_path = absl::StrCat(path, ".dead_letter_suffix");
  if (topic.dead_letter_suffix().empty()) return FieldError(suffix_path, "must not be empty");
  // The dead-letter topic of the longest name this declaration covers.
  absl::string_view name = topic.name();
  if (common::IsTopicPrefixPattern(name)) name.remove_suffix(1);
  const std::string dead_letter_topic = absl::StrCat(name, topic.dead_letter_suffix());
  return common::ValidateTopicName(
      dead_letter_topic,
      absl::StrCat(suffix_path, ": dead-letter topic \"", dead_letter_topic, "\""));
}

// The consumer groups declared at startup on a durable topic (the kind is
// checked by ValidateKindSpecificFields).
absl::Status ValidateTopicGroups(const v1::Topic& topic, const std::string& path) {
  if (topic.groups_size() == 0) return absl::OkStatus();
  const std::string groups_path = absl::StrCat(path, ".groups");
  if (common::IsTopicPrefixPattern(topic.name())) {
    return FieldError(groups_path, absl::StrCat("needs a topic declared by its exact name, and \"",
                                                topic.name(), "\" is a prefix pattern"));
  }
  if (topic.groups_size() > kMaxGroupsPerTopic) {
    return FieldError(groups_path, absl::StrCat("has ", topic.groups_size(), " groups; at most ",
                                                kMaxGroupsPerTopic));
  }
  std::map<std::string, int> index_of_group;
  for (int j = 0; j < topic.groups_size(); ++j) {
    const std::string group_path = absl::StrCat(groups_path, "[", j, "]");
    SB_RETURN_IF_ERROR(common::ValidateGroupName(topic.groups(j), group_path));
    const auto [existing, inserted] = index_of_group.emplace(topic.groups(j), j);
    if (!inserted) {
      return FieldError(group_path, absl::StrCat("\"", topic.groups(j), "\" is already listed at ",
                                                 groups_path, "[", existing->second, "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTopics(const Config& config) {
  std::map<std::string, int> index_of_pattern;
  for (int i = 0; i < config.topics_size(); ++i) {
    const v1::Topic& topic = config.topics(i);
    const std::string path = absl::StrCat("topics[", i, "]");
    const std::string name_path = absl::StrCat(path, ".name");
    if (!topic.has_name()) return FieldError(name_path, "is required");
    SB_RETURN_IF_ERROR(common::ValidateTopicPattern(topic.name(), name_path));
    const auto [existing, inserted] = index_of_pattern.emplace(topic.name(), i);
    if (!inserted) {
      return FieldError(name_path,
                        absl::StrCat("\"", topic.name(), "\" is already declared by topics[",
                                     existing->second, "]"));
    }
    SB_RETURN_IF_ERROR(ValidateKindSpecificFields(topic, path));
    if (topic.kind() == v1::Topic::KIND_DURABLE) {
      SB_RETURN_IF_ERROR(ValidateDeadLetterSuffix(topic, path));
      SB_RETURN_IF_ERROR(ValidateTopicGroups(topic, path));
    }
    if (topic.retry_backoff().max_ms() < topic.retry_backoff().min_ms()) {
      return FieldError(absl::StrCat(path, ".retry_backoff.max_ms"),
                        absl::StrCat("must be at least min_ms (", topic.retry_backoff().min_ms(),
                                     "), got ", topic.retry_backoff().max_ms()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRedis(const v1::Redis& redis) {
  if (redis.reconnect_initial_ms() > redis.reconnect_max_ms()) {
    return absl::InvalidArgumentError(
        absl::StrCat("broker.redis.reconnect_initial_ms: must not exceed reconnect_max_ms (",
                     redis.reconnect_max_ms(), "), got ", redis.reconnect_initial_ms()));
  }
  return absl::OkStatus();
}

bool IsAmqpNamePrefixChar(char c) {
  return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
}

// broker.amqp; its ca_file only with (and always with) an amqps:// URL.
absl::Status ValidateAmqp(const v1::Broker& broker) {
  const v1::Amqp& amqp = broker.amqp();
  if (amqp.reconnect_initial_ms() > amqp.reconnect_max_ms()) {
    return FieldError("broker.amqp.reconnect_initial_ms",
                      absl::StrCat("must not exceed reconnect_max_ms (", amqp.reconnect_max_ms(),
                                   "), got ", amqp.reconnect_initial_ms()));
  }
  const std::string& prefix = amqp.name_prefix();
  if (prefix.empty() || prefix.size() > kMaxAmqpNamePrefixLength ||
      !std::all_of(prefix.begin(), prefix.end(), IsAmqpNamePrefixChar)) {
    return FieldError(
        "broker.amqp.name_prefix",
        absl::StrCat("must be 1 to ", kMaxAmqpNamePrefixLength,
                     " characters from [A-Za-z0-9._-], got \"", absl::CHexEscape(prefix), "\""));
  }
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl(broker.url());
  if (!url.ok() || url->scheme != BrokerUrl::Scheme::kAmqp) return absl::OkStatus();
  if (url->tls && amqp.ca_file().empty()) {
    return FieldError("broker.amqp.ca_file",
                      "is required with an amqps:// broker.url: a PEM file of the CAs that sign "
                      "RabbitMQ's certificate");
  }
  if (!url->tls && !amqp.ca_file().empty()) {
    return FieldError("broker.amqp.ca_file",
                      "applies only to amqps:// URLs, and broker.url is amqp:// (no TLS)");
  }
  return absl::OkStatus();
}

// A URL of an upstream: http:// or https:// and a host. The message never
// repeats the URL, which may carry an API key.
absl::Status ValidateUpstreamUrl(absl::string_view url, const std::string& path) {
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://") && !absl::ConsumePrefix(&rest, "https://")) {
    return FieldError(path, "must start with http:// or https://");
  }
  if (rest.empty() || rest[0] == '/' || rest[0] == ':') return FieldError(path, "has no host");
  for (char c : url) {
    if (c <= ' ' || c > '~') return FieldError(path, "must be printable ASCII without spaces");
  }
  return absl::OkStatus();
}

// A WebSocket URL of an upstream (ws:// or wss://), checked as the client
// parses it. The message never repeats the URL.
absl::Status ValidateWebSocketUrl(absl::string_view url, const std::string& path) {
  for (char c : url) {
    if (c <= ' ' || c > '~') return FieldError(path, "must be printable ASCII without spaces");
  }
  absl::StatusOr<ws::WebSocketUrl> parsed = ws::ParseWebSocketUrl(url);
  if (!parsed.ok()) return FieldError(path, parsed.status().message());
  return absl::OkStatus();
}

absl::Status ValidateMethodList(const google::protobuf::RepeatedPtrField<std::string>& methods,
                                const std::string& path) {
  for (int i = 0; i < methods.size(); ++i) {
    SB_RETURN_IF_ERROR(common::ValidateMethodName(methods[i], absl::StrCat(path, "[", i, "]")));
  }
  return absl::OkStatus();
}

absl::Status ValidateUpstream(const v1::Upstream& upstream, const std::string& path) {
  if (!upstream.has_name()) return FieldError(absl::StrCat(path, ".name"), "is required");
  SB_RETURN_IF_ERROR(common::ValidateUpstreamName(upstream.name(), absl::StrCat(path, ".name")));
  if (upstream.urls_size() == 0) return FieldError(absl::StrCat(path, ".urls"), "is required");
  for (int i = 0; i < upstream.urls_size(); ++i) {
    SB_RETURN_IF_ERROR(ValidateUpstreamUrl(upstream.urls(i), absl::StrCat(path, ".urls[", i, "]")));
  }
  const double burst = upstream.rate_limit().burst();
  for (const auto& [method, cost] : upstream.method_cost()) {
    const std::string cost_path = absl::StrCat(path, ".method_cost.", method);
    SB_RETURN_IF_ERROR(common::ValidateMethodName(method, cost_path));
    if (cost == 0) return FieldError(cost_path, "must be at least 1");
    if (upstream.rate_limit().requests_per_second() > 0 && cost > burst) {
      return FieldError(cost_path, absl::StrCat(cost, " exceeds rate_limit.burst (", burst,
                                                "), so such a call could never be admitted"));
    }
  }
  for (const auto& [method, ttl_ms] : upstream.cache_ttl_ms()) {
    const std::string ttl_path = absl::StrCat(path, ".cache_ttl_ms.", method);
    SB_RETURN_IF_ERROR(common::ValidateMethodName(method, ttl_path));
    if (ttl_ms == 0) return FieldError(ttl_path, "must be at least 1");
  }
  SB_RETURN_IF_ERROR(ValidateMethodList(upstream.retry().methods(), path + ".retry.methods"));
  SB_RETURN_IF_ERROR(ValidateMethodList(upstream.coalescing().never(), path + ".coalescing.never"));
  SB_RETURN_IF_ERROR(ValidateMethodList(upstream.batch().methods(), path + ".batch.methods"));
  SB_RETURN_IF_ERROR(ValidateMethodList(upstream.batch().except(), path + ".batch.except"));
  if (upstream.batch().methods_size() > 0 && upstream.batch().except_size() > 0) {
    return FieldError(path + ".batch.except", "cannot be set together with batch.methods");
  }
  for (int i = 0; i < upstream.ws_urls_size(); ++i) {
    SB_RETURN_IF_ERROR(
        ValidateWebSocketUrl(upstream.ws_urls(i), absl::StrCat(path, ".ws_urls[", i, "]")));
  }
  const v1::Subscriptions& subscriptions = upstream.subscriptions();
  if (subscriptions.reconnect_initial_ms() > subscriptions.reconnect_max_ms()) {
    return FieldError(
        path + ".subscriptions.reconnect_initial_ms",
        absl::StrCat("must be at most reconnect_max_ms (", subscriptions.reconnect_max_ms(),
                     "), got ", subscriptions.reconnect_initial_ms()));
  }
  return absl::OkStatus();
}

absl::Status ValidateUpstreams(const Config& config) {
  std::map<std::string, int> index_of_name;
  for (int i = 0; i < config.upstreams_size(); ++i) {
    const std::string path = absl::StrCat("upstreams[", i, "]");
    SB_RETURN_IF_ERROR(ValidateUpstream(config.upstreams(i), path));
    const auto [existing, added] = index_of_name.emplace(config.upstreams(i).name(), i);
    if (!added) {
      return FieldError(absl::StrCat(path, ".name"),
                        absl::StrCat("\"", existing->first, "\" is already used by upstreams[",
                                     existing->second, "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateClients(const Config& config) {
  std::map<std::string, int> index_of_id;
  std::map<std::string, int> index_of_token;
  std::map<std::string, int> index_of_subject;
  std::map<std::string, int> index_of_san;
  for (int i = 0; i < config.clients_size(); ++i) {
    const v1::Client& client = config.clients(i);
    const std::string path = absl::StrCat("clients[", i, "]");
    const std::string id_path = absl::StrCat(path, ".id");
    const std::string token_path = absl::StrCat(path, ".token");
    if (!client.has_id()) return FieldError(id_path, "is required");
    // Client ids follow the rules of consumer group names.
    SB_RETURN_IF_ERROR(common::ValidateGroupName(client.id(), id_path));
    const auto [existing_id, new_id] = index_of_id.emplace(client.id(), i);
    if (!new_id) {
      return FieldError(id_path, absl::StrCat("\"", client.id(), "\" is already used by clients[",
                                              existing_id->second, "]"));
    }
    if (client.has_cert_subject()) {
      SB_RETURN_IF_ERROR(ValidateCertIdentity(
          config, client.cert_subject(), absl::StrCat(path, ".cert_subject"), index_of_subject, i));
    }
    if (client.has_cert_san()) {
      SB_RETURN_IF_ERROR(ValidateCertIdentity(config, client.cert_san(),
                                              absl::StrCat(path, ".cert_san"), index_of_san, i));
    }
    if (client.has_token()) {
      SB_RETURN_IF_ERROR(ValidateToken(client.token(), token_path, index_of_token, i));
    } else if (!client.has_cert_subject() && !client.has_cert_san()) {
      return FieldError(token_path, "is required (or cert_subject / cert_san)");
    }
    for (int j = 0; j < client.allowed_topics_size(); ++j) {
      SB_RETURN_IF_ERROR(common::ValidateTopicPattern(
          client.allowed_topics(j), absl::StrCat(path, ".allowed_topics[", j, "]")));
    }
  }
  return absl::OkStatus();
}

broker::TopicPolicy ToTopicPolicy(const v1::Topic& topic) {
  broker::TopicPolicy policy;
  if (topic.kind() == v1::Topic::KIND_EPHEMERAL) {
    policy.kind = broker::TopicKind::kEphemeral;
    policy.subscriber_buffer = topic.buffer();
    policy.overflow = ToOverflowPolicy(topic.overflow());
    return policy;
  }
  policy.kind = broker::TopicKind::kDurable;
  policy.max_len = topic.max_len();
  policy.ack_deadline = absl::Milliseconds(topic.ack_deadline_ms());
  policy.max_delivery_attempts = topic.max_delivery_attempts();
  policy.dead_letter_suffix = topic.dead_letter_suffix();
  policy.exclusive = topic.exclusive();
  policy.ordering_partitions = topic.ordering_partitions();
  policy.max_bytes = topic.max_bytes();
  policy.dedup_window = absl::Milliseconds(topic.dedup_window_ms());
  if (topic.has_retry_backoff()) {
    policy.retry_backoff = broker::RetryBackoff{absl::Milliseconds(topic.retry_backoff().min_ms()),
                                                absl::Milliseconds(topic.retry_backoff().max_ms())};
  }
  policy.groups.assign(topic.groups().begin(), topic.groups().end());
  return policy;
}

}  // namespace

Config DefaultConfig() { return Config(); }

absl::StatusOr<Config> ParseConfig(absl::string_view yaml, const EnvLookup& env) {
  ExpansionRedactor redactor(env);
  Config config;
  absl::Status status = ReadYamlIntoMessage(yaml, redactor.Lookup(), &config);
  if (status.ok()) status = ValidateConfig(config);
  if (!status.ok()) return redactor.Redact(status);
  return config;
}

namespace {

// The contents of the file at `path`.
// A config file is a few kilobytes; this bound keeps a wrong path (a log, a
// device such as /dev/zero) from exhausting memory.
constexpr size_t kMaxConfigBytes = 1 << 20;

absl::StatusOr<std::string> ReadConfigText(const std::string& path) {
  auto read_error = [&path](int error) {
    return absl::Status(absl::ErrnoToStatusCode(error),
                        absl::StrCat("cannot read config file ", path, ": ", std::strerror(error)));
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (file == nullptr) return read_error(errno);
  std::string contents;
  char buffer[8192];
  size_t read = 0;
  while ((read = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) {
    contents.append(buffer, read);
    if (contents.size() > kMaxConfigBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, " is larger than ", kMaxConfigBytes, " bytes"));
    }
  }
  if (std::ferror(file.get())) return read_error(errno);
  return contents;
}

}  // namespace

absl::StatusOr<Config> LoadConfigFile(const std::string& path, const EnvLookup& env) {
  SB_ASSIGN_OR_RETURN(std::string contents, ReadConfigText(path));
  return ParseConfig(contents, env);
}

absl::StatusOr<Config> LoadConfig(const std::string& path, const FlagOverrides& overrides,
                                  const EnvLookup& env) {
  ExpansionRedactor redactor(env);
  Config config;
  if (!path.empty()) {
    // Validated once the flags are in: a flag may make the file valid
    // (--broker=redis://... for a `scope: global` limit).
    SB_ASSIGN_OR_RETURN(std::string contents, ReadConfigText(path));
    SB_RETURN_IF_ERROR(redactor.Redact(ReadYamlIntoMessage(contents, redactor.Lookup(), &config)));
  }
  if (overrides.listen.has_value()) config.mutable_server()->set_listen(*overrides.listen);
  if (overrides.metrics_listen.has_value()) {
    config.mutable_server()->set_metrics_listen(*overrides.metrics_listen);
  }
  if (overrides.broker_url.has_value()) config.mutable_broker()->set_url(*overrides.broker_url);
  SB_RETURN_IF_ERROR(redactor.Redact(ValidateConfig(config)));
  return config;
}

common::LogLevel ConfiguredLogLevel(const Config& config) {
  switch (config.logging().level()) {
    case v1::Logging::LEVEL_DEBUG:
      return common::LogLevel::kDebug;
    case v1::Logging::LEVEL_INFO:
      return common::LogLevel::kInfo;
    case v1::Logging::LEVEL_WARNING:
      return common::LogLevel::kWarning;
    case v1::Logging::LEVEL_ERROR:
      return common::LogLevel::kError;
  }
  return common::LogLevel::kInfo;
}

std::optional<std::string> ExposureWarning(const Config& config) {
  if (config.clients_size() > 0 || IsLoopbackAddress(config.server().listen())) {
    return std::nullopt;
  }
  return absl::StrCat("ANONYMOUS ACCESS: no clients are configured, so every caller is accepted ",
                      "as 'anonymous', and server.listen ", config.server().listen(),
                      " is reachable from other machines. Configure `clients:` with bearer ",
                      "tokens, or listen on 127.0.0.1.");
}

void WarnAboutExposure(const Config& config) {
  std::optional<std::string> warning = ExposureWarning(config);
  if (warning.has_value()) SB_LOG(kWarning, *warning);
}

namespace {

// A `global` limit needs the Redis broker the replicas share.
absl::Status ValidateScopes(const Config& config) {
  absl::StatusOr<BrokerUrl> url = ParseBrokerUrl(config.broker().url());
  const bool redis = url.ok() && url->scheme == BrokerUrl::Scheme::kRedis;
  const auto needs_redis = [&](const std::string& path) {
    return FieldError(path, absl::StrCat("global needs a redis:// broker that the replicas share, "
                                         "and broker.url is ",
                                         url.ok() ? url->Redacted() : config.broker().url()));
  };
  for (int i = 0; i < config.upstreams_size(); ++i) {
    const v1::RateLimit& limit = config.upstreams(i).rate_limit();
    if (limit.scope() == v1::LIMIT_SCOPE_GLOBAL && limit.requests_per_second() > 0 && !redis) {
      return needs_redis(absl::StrCat("upstreams[", i, "].rate_limit.scope"));
    }
  }
  for (int i = 0; i < config.clients_size(); ++i) {
    const v1::Client& client = config.clients(i);
    if (client.quota_scope() == v1::LIMIT_SCOPE_GLOBAL && client.requests_per_second() > 0 &&
        !redis) {
      return needs_redis(absl::StrCat("clients[", i, "].quota_scope"));
    }
  }
  const v1::Fleet& fleet = config.fleet();
  if (fleet.replica_ttl_ms() <= 2 * fleet.heartbeat_ms()) {
    return FieldError(
        "fleet.replica_ttl_ms",
        absl::StrCat(fleet.replica_ttl_ms(), " must exceed twice fleet.heartbeat_ms (",
                     fleet.heartbeat_ms(), "), or live replicas would expire"));
  }
  if (fleet.has_replica_id() && !fleet.replica_id().empty()) {
    SB_RETURN_IF_ERROR(common::ValidateGroupName(fleet.replica_id(), "fleet.replica_id"));
  }
  return absl::OkStatus();
}

}  // namespace

std::vector<auth::ClientCredential> ClientCredentials(const Config& config) {
  std::vector<auth::ClientCredential> clients;
  clients.reserve(config.clients_size());
  for (const v1::Client& client : config.clients()) {
    auth::ClientCredential& credential = clients.emplace_back();
    credential.token = client.token();
    credential.cert_subject = client.cert_subject();
    credential.cert_san = client.cert_san();
    credential.identity.id = client.id();
    credential.identity.weight = client.weight();
    credential.identity.requests_per_second = client.requests_per_second();
    credential.identity.allowed_topics.assign(client.allowed_topics().begin(),
                                              client.allowed_topics().end());
  }
  return clients;
}

bool HasGlobalLimits(const Config& config) {
  for (const v1::Upstream& upstream : config.upstreams()) {
    if (upstream.rate_limit().scope() == v1::LIMIT_SCOPE_GLOBAL &&
        upstream.rate_limit().requests_per_second() > 0) {
      return true;
    }
  }
  for (const v1::Client& client : config.clients()) {
    if (client.quota_scope() == v1::LIMIT_SCOPE_GLOBAL && client.requests_per_second() > 0) {
      return true;
    }
  }
  return false;
}

absl::Status ValidateConfig(const Config& config) {
  SB_RETURN_IF_ERROR(CheckFieldBounds(config));
  SB_RETURN_IF_ERROR(ValidateServer(config.server()));
  SB_RETURN_IF_ERROR(WithPath("broker.url", ParseBrokerUrl(config.broker().url()).status()));
  SB_RETURN_IF_ERROR(ValidateRedis(config.broker().redis()));
  SB_RETURN_IF_ERROR(ValidateAmqp(config.broker()));
  SB_RETURN_IF_ERROR(ValidateTopics(config));
  SB_RETURN_IF_ERROR(ValidateUpstreams(config));
  SB_RETURN_IF_ERROR(ValidateClients(config));
  return ValidateScopes(config);
}

flow::OverflowPolicy ToOverflowPolicy(v1::Topic::Overflow overflow) {
  switch (overflow) {
    case v1::Topic::OVERFLOW_DROP_NEWEST:
      return flow::OverflowPolicy::kDropNewest;
    case v1::Topic::OVERFLOW_DISCONNECT:
      return flow::OverflowPolicy::kDisconnect;
    default:
      return flow::OverflowPolicy::kDropOldest;
  }
}

broker::TopicPolicies BuildTopicPolicies(const Config& config) {
  std::vector<broker::TopicDeclaration> declarations;
  declarations.reserve(config.topics_size());
  for (const v1::Topic& topic : config.topics()) {
    declarations.push_back({topic.name(), ToTopicPolicy(topic)});
  }
  return broker::TopicPolicies(std::move(declarations));
}

}  // namespace switchboard::config
