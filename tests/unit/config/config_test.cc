#include "server/config/config.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/config/config_examples.h"

namespace switchboard::config {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using testing_examples::ExampleEnv;
using testing_examples::FakeEnv;
using testing_examples::kExample;

TEST(ConfigTest, DefaultConfigRunsOnLoopbackWithTheMemoryBroker) {
  const Config config = DefaultConfig();
  EXPECT_THAT(ValidateConfig(config), IsOk());
  EXPECT_EQ(config.server().listen(), "127.0.0.1:7070");
  EXPECT_EQ(config.server().metrics_listen(), "127.0.0.1:9464");
  EXPECT_EQ(config.server().drain_timeout_ms(), 10000u);
  EXPECT_EQ(config.broker().url(), "memory://");
  EXPECT_EQ(config.limits().max_message_bytes(), 1048576u);
  EXPECT_EQ(config.limits().max_batch_messages(), 1000u);
  EXPECT_EQ(config.limits().max_streams_per_client(), 1000u);
  EXPECT_EQ(config.limits().max_streams(), 10000u);
  EXPECT_EQ(config.limits().max_memory_bytes(), uint64_t{1} << 30);
  EXPECT_EQ(config.limits().max_topics(), 10000u);
  EXPECT_EQ(config.topics_size(), 0);
  EXPECT_EQ(config.clients_size(), 0);
  EXPECT_EQ(config.logging().level(), v1::Logging::LEVEL_INFO);
  EXPECT_EQ(ConfiguredLogLevel(config), common::LogLevel::kInfo);
}

TEST(ConfigTest, AnEmptyFileIsTheDefaultConfig) {
  for (const char* yaml : {"", "# nothing configured\n"}) {
    absl::StatusOr<Config> config = ParseConfig(yaml, FakeEnv());
    ASSERT_THAT(config, IsOk());
    EXPECT_EQ(config->SerializeAsString(), DefaultConfig().SerializeAsString());
  }
}

TEST(ConfigTest, ParsesTheExample) {
  absl::StatusOr<Config> config = ParseConfig(kExample, ExampleEnv());
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->server().listen(), "0.0.0.0:7070");
  EXPECT_EQ(config->server().metrics_listen(), "0.0.0.0:9464");
  EXPECT_EQ(config->server().drain_timeout_ms(), 5000u);
  EXPECT_EQ(config->broker().url(), "redis://:hunter2@redis:6379/0");
  EXPECT_EQ(config->limits().max_message_bytes(), 2097152u);
  EXPECT_EQ(config->limits().max_batch_messages(), 500u);
  EXPECT_EQ(config->limits().max_streams_per_client(), 100u);

  ASSERT_EQ(config->topics_size(), 2);
  const v1::Topic& news = config->topics(0);
  EXPECT_EQ(news.name(), "news.*");
  EXPECT_EQ(news.kind(), v1::Topic::KIND_EPHEMERAL);
  EXPECT_EQ(news.buffer(), 200u);
  EXPECT_EQ(news.overflow(), v1::Topic::OVERFLOW_DROP_NEWEST);
  const v1::Topic& jobs = config->topics(1);
  EXPECT_EQ(jobs.name(), "jobs");
  EXPECT_EQ(jobs.kind(), v1::Topic::KIND_DURABLE);
  EXPECT_EQ(jobs.max_len(), 5000u);
  EXPECT_EQ(jobs.ack_deadline_ms(), 15000u);
  EXPECT_EQ(jobs.max_delivery_attempts(), 3u);
  EXPECT_EQ(jobs.dead_letter_suffix(), ".dead");
  EXPECT_TRUE(jobs.exclusive());

  ASSERT_EQ(config->upstreams_size(), 1);
  const v1::Upstream& solana = config->upstreams(0);
  EXPECT_EQ(solana.name(), "solana");
  EXPECT_THAT(solana.urls(),
              ::testing::ElementsAre("http://127.0.0.1:8899", "https://rpc.example.com/k3y"));
  EXPECT_EQ(solana.max_connections(), 2u);
  EXPECT_FALSE(solana.http2());
  EXPECT_EQ(solana.timeout_ms(), 10000u);
  EXPECT_DOUBLE_EQ(solana.rate_limit().requests_per_second(), 100);
  EXPECT_DOUBLE_EQ(solana.rate_limit().burst(), 10);
  EXPECT_EQ(solana.method_cost().at("getProgramAccounts"), 10u);
  EXPECT_EQ(solana.retry().max_attempts(), 3u);
  EXPECT_THAT(solana.retry().methods(), ::testing::ElementsAre("getSlot", "getBalance"));
  EXPECT_EQ(solana.cache_ttl_ms().at("getGenesisHash"), 3600000u);
  EXPECT_EQ(solana.cache_ttl_ms().at("getSlot"), 400u);
  EXPECT_TRUE(solana.coalescing().enabled());
  EXPECT_TRUE(solana.tls_verify());

  ASSERT_EQ(config->clients_size(), 2);
  const v1::Client& burn = config->clients(0);
  EXPECT_EQ(burn.id(), "burn-detector");
  EXPECT_EQ(burn.token(), "burn-secret");
  EXPECT_EQ(burn.weight(), 2u);
  EXPECT_DOUBLE_EQ(burn.requests_per_second(), 50);
  EXPECT_THAT(burn.allowed_topics(), ::testing::ElementsAre("jobs", "news.*"));
  const v1::Client& indexer = config->clients(1);
  EXPECT_EQ(indexer.token(), "static-token");
  EXPECT_EQ(indexer.weight(), 1u);
  EXPECT_DOUBLE_EQ(indexer.requests_per_second(), 0);
  EXPECT_EQ(indexer.allowed_topics_size(), 0);

  EXPECT_EQ(ConfiguredLogLevel(*config), common::LogLevel::kDebug);
}

TEST(ConfigTest, EveryLogLevelMaps) {
  const std::map<std::string, common::LogLevel> levels = {{"debug", common::LogLevel::kDebug},
                                                          {"info", common::LogLevel::kInfo},
                                                          {"warning", common::LogLevel::kWarning},
                                                          {"error", common::LogLevel::kError}};
  for (const auto& [name, level] : levels) {
    absl::StatusOr<Config> config = ParseConfig("logging: {level: " + name + "}", FakeEnv());
    ASSERT_THAT(config, IsOk());
    EXPECT_EQ(ConfiguredLogLevel(*config), level) << name;
  }
}

TEST(ConfigTest, UnsetVariableNamesTheFieldAndTheVariable) {
  EXPECT_THAT(ParseConfig(kExample, FakeEnv({{"REDIS_PASSWORD", "x"}, {"RPC_KEY", "k"}})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("clients[0].token: environment variable BURN_TOKEN is not set")));
}

struct ValidationCase {
  const char* name;
  const char* yaml;
  const char* message;
};

class ConfigValidationTest : public ::testing::TestWithParam<ValidationCase> {};

TEST_P(ConfigValidationTest, NamesTheFieldPath) {
  EXPECT_THAT(ParseConfig(GetParam().yaml, FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq(GetParam().message)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ConfigValidationTest,
    ::testing::Values(
        // Bounds from the schema.
        ValidationCase{"MessageBytesZero", "limits: {max_message_bytes: 0}",
                       "limits.max_message_bytes: must be between 1 and 67108864, got 0"},
        ValidationCase{"MessageBytesTooLarge", "limits: {max_message_bytes: 67108865}",
                       "limits.max_message_bytes: must be between 1 and 67108864, got 67108865"},
        ValidationCase{"BatchZero", "limits: {max_batch_messages: 0}",
                       "limits.max_batch_messages: must be between 1 and 100000, got 0"},
        ValidationCase{"DrainTooLong", "server: {drain_timeout_ms: 600001}",
                       "server.drain_timeout_ms: must be between 0 and 600000, got 600001"},
        ValidationCase{"AckDeadlineTooShort", "topics: [{name: jobs, ack_deadline_ms: 10}]",
                       "topics[0].ack_deadline_ms: must be between 1000 and 600000, got 10"},
        ValidationCase{"BufferZero", "topics: [{name: n, kind: ephemeral, buffer: 0}]",
                       "topics[0].buffer: must be between 1 and 1000000, got 0"},
        ValidationCase{"DeliveryAttemptsZero",
                       "topics: [{name: a}, {name: jobs, max_delivery_attempts: 0}]",
                       "topics[1].max_delivery_attempts: must be between 1 and 1000, got 0"},
        ValidationCase{"RetryBackoffMaxBelowMin",
                       "topics: [{name: jobs, retry_backoff: {min_ms: 5000, max_ms: 1000}}]",
                       "topics[0].retry_backoff.max_ms: must be at least min_ms (5000), got 1000"},
        ValidationCase{
            "RetryBackoffOverAnHour", "topics: [{name: jobs, retry_backoff: {max_ms: 3600001}}]",
            "topics[0].retry_backoff.max_ms: must be between 1 and 3600000, got 3600001"},
        ValidationCase{"RetryBackoffOnAnEphemeralTopic",
                       "topics: [{name: n, kind: ephemeral, retry_backoff: {min_ms: 10}}]",
                       "topics[0].retry_backoff: applies only to durable topics, and this topic "
                       "is ephemeral"},
        ValidationCase{"WeightZero", "clients: [{id: a, token: t, weight: 0}]",
                       "clients[0].weight: must be between 1 and 1000, got 0"},
        ValidationCase{"NegativeRate", "clients: [{id: a, token: t, requests_per_second: -1}]",
                       "clients[0].requests_per_second: must be between 0 and 1000000, got -1"},
        // Listen addresses.
        ValidationCase{"ListenWithoutPort", "server: {listen: localhost}",
                       "server.listen: \"localhost\": expected host:port or [ipv6]:port"},
        ValidationCase{"ListenPortTooLarge", "server: {listen: \"127.0.0.1:70000\"}",
                       "server.listen: \"127.0.0.1:70000\": the port must be a number from 0 to "
                       "65535"},
        ValidationCase{"MetricsListenEmpty", "server: {metrics_listen: \"\"}",
                       "server.metrics_listen: \"\": expected host:port or [ipv6]:port"},
        ValidationCase{"SameListenAddresses",
                       "server: {listen: \"127.0.0.1:8000\", metrics_listen: \"127.0.0.1:8000\"}",
                       "server.metrics_listen: must differ from server.listen"},
        ValidationCase{"JsonRpcListenNotAnAddress", "server: {json_rpc_listen: \"nowhere\"}",
                       "server.json_rpc_listen: \"nowhere\": expected host:port or [ipv6]:port"},
        ValidationCase{"JsonRpcListenOnTheGrpcPort",
                       "server: {listen: \"127.0.0.1:8000\", json_rpc_listen: \"127.0.0.1:8000\"}",
                       "server.json_rpc_listen: must differ from server.listen and "
                       "server.metrics_listen"},
        ValidationCase{"JsonRpcBatchOfNone", "server: {json_rpc_http: {max_batch_calls: 0}}",
                       "server.json_rpc_http.max_batch_calls: must be between 1 and 10000, got 0"},
        // Upstreams.
        ValidationCase{"UpstreamWithoutName", "upstreams: [{urls: [\"http://a:1\"]}]",
                       "upstreams[0].name: is required"},
        ValidationCase{"UpstreamWithoutUrls", "upstreams: [{name: sol}]",
                       "upstreams[0].urls: is required"},
        ValidationCase{"UpstreamUrlScheme",
                       "upstreams: [{name: sol, urls: [\"http://a:1\", \"ftp://secret@b\"]}]",
                       "upstreams[0].urls[1]: must start with http:// or https://"},
        ValidationCase{"UpstreamUrlWithoutHost", "upstreams: [{name: sol, urls: [\"http:///x\"]}]",
                       "upstreams[0].urls[0]: has no host"},
        ValidationCase{"DuplicateUpstream",
                       "upstreams: [{name: sol, urls: [\"http://a\"]}, {name: sol, urls: "
                       "[\"http://b\"]}]",
                       "upstreams[1].name: \"sol\" is already used by upstreams[0]"},
        ValidationCase{
            "MethodCostOverBurst",
            "upstreams: [{name: sol, urls: [\"http://a\"], rate_limit: "
            "{requests_per_second: 100, burst: 5}, method_cost: {getProgramAccounts: 10}}]",
            "upstreams[0].method_cost.getProgramAccounts: 10 exceeds rate_limit.burst "
            "(5), so such a call could never be admitted"},
        ValidationCase{"MethodCostZero",
                       "upstreams: [{name: sol, urls: [\"http://a\"], method_cost: {getSlot: 0}}]",
                       "upstreams[0].method_cost.getSlot: must be at least 1"},
        ValidationCase{
            "MethodCostNotANumber",
            "upstreams: [{name: sol, urls: [\"http://a\"], method_cost: {getSlot: x}}]",
            "upstreams[0].method_cost.getSlot: must be a non-negative integer, got \"x\""},
        ValidationCase{"MethodCostList",
                       "upstreams: [{name: sol, urls: [\"http://a\"], method_cost: [getSlot]}]",
                       "upstreams[0].method_cost: must be a mapping, got a list"},
        ValidationCase{"BadRetryMethod",
                       "upstreams: [{name: sol, urls: [\"http://a\"], retry: {methods: [\"get "
                       "Slot\"]}}]",
                       "upstreams[0].retry.methods[0]: character 3 is not allowed; use "
                       "[A-Za-z0-9._:-]"},
        ValidationCase{"BatchMethodsAndExcept",
                       "upstreams: [{name: sol, urls: [\"http://a\"], batch: {methods: [getSlot], "
                       "except: [getBlock]}}]",
                       "upstreams[0].batch.except: cannot be set together with batch.methods"},
        ValidationCase{"BatchOfOne",
                       "upstreams: [{name: sol, urls: [\"http://a\"], batch: {max_calls: 1}}]",
                       "upstreams[0].batch.max_calls: must be between 2 and 1000, got 1"},
        ValidationCase{"BadBatchMethod",
                       "upstreams: [{name: sol, urls: [\"http://a\"], batch: {except: [\"a b\"]}}]",
                       "upstreams[0].batch.except[0]: character 1 is not allowed; use "
                       "[A-Za-z0-9._:-]"},
        ValidationCase{"UpstreamConnectionsZero",
                       "upstreams: [{name: sol, urls: [\"http://a\"], max_connections: 0}]",
                       "upstreams[0].max_connections: must be between 1 and 1000, got 0"},
        // Redis tuning.
        ValidationCase{"RedisReconnectInverted",
                       "broker: {redis: {reconnect_initial_ms: 5000, reconnect_max_ms: 100}}",
                       "broker.redis.reconnect_initial_ms: must not exceed reconnect_max_ms "
                       "(100), got 5000"},
        ValidationCase{"RedisNoReaders", "broker: {redis: {max_reader_connections: 0}}",
                       "broker.redis.max_reader_connections: must be between 1 and 256, got 0"},
        // Broker URL.
        ValidationCase{"BrokerScheme", "broker: {url: \"kafka://kafka:9092\"}",
                       "broker.url: unsupported scheme \"kafka://\"; expected memory://, "
                       "redis://[user:password@]host:port[/db] or "
                       "amqp[s]://[user:password@]host[:port][/vhost]"},
        ValidationCase{"AmqpQuery", "broker: {url: \"amqp://u:hunter2@rabbit/?heartbeat=5\"}",
                       "broker.url: amqp URL query parameters are not supported; set broker.amqp "
                       "instead"},
        // RabbitMQ tuning.
        ValidationCase{"AmqpsWithoutCaFile", "broker: {url: \"amqps://rabbit\"}",
                       "broker.amqp.ca_file: is required with an amqps:// broker.url: a PEM file "
                       "of the CAs that sign RabbitMQ's certificate"},
        ValidationCase{"AmqpCaFileWithoutTls",
                       "broker: {url: \"amqp://rabbit\", amqp: {ca_file: /etc/rabbit-ca.pem}}",
                       "broker.amqp.ca_file: applies only to amqps:// URLs, and broker.url is "
                       "amqp:// (no TLS)"},
        ValidationCase{"AmqpReconnectInverted",
                       "broker: {amqp: {reconnect_initial_ms: 5000, reconnect_max_ms: 100}}",
                       "broker.amqp.reconnect_initial_ms: must not exceed reconnect_max_ms "
                       "(100), got 5000"},
        ValidationCase{"AmqpHeartbeatTooLong", "broker: {amqp: {heartbeat_s: 3601}}",
                       "broker.amqp.heartbeat_s: must be between 0 and 3600, got 3601"},
        ValidationCase{"AmqpOperationTimeoutZero", "broker: {amqp: {operation_timeout_ms: 0}}",
                       "broker.amqp.operation_timeout_ms: must be between 10 and 600000, got 0"},
        ValidationCase{"AmqpConnectTimeoutZero", "broker: {amqp: {connect_timeout_ms: 0}}",
                       "broker.amqp.connect_timeout_ms: must be between 10 and 600000, got 0"},
        ValidationCase{"AmqpEmptyNamePrefix", "broker: {amqp: {name_prefix: \"\"}}",
                       "broker.amqp.name_prefix: must be 1 to 64 characters from "
                       "[A-Za-z0-9._-], got \"\""},
        ValidationCase{"AmqpNamePrefixWithSlash", "broker: {amqp: {name_prefix: \"a/b\"}}",
                       "broker.amqp.name_prefix: must be 1 to 64 characters from "
                       "[A-Za-z0-9._-], got \"a/b\""},
        ValidationCase{"AmqpNamePrefixTooLong",
                       "broker: {amqp: {name_prefix: "
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}}",
                       "broker.amqp.name_prefix: must be 1 to 64 characters from "
                       "[A-Za-z0-9._-], got "
                       "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""},
        ValidationCase{"RedisWithoutPort", "broker: {url: \"redis://u:hunter2@redis\"}",
                       "broker.url: redis address \"redis\": expected host:port or "
                       "[ipv6]:port"},
        // Topics.
        ValidationCase{"TopicWithoutName", "topics: [{kind: durable}]",
                       "topics[0].name: is required"},
        ValidationCase{"TopicEmptyName", "topics: [{name: \"\"}]",
                       "topics[0].name: must not be empty"},
        ValidationCase{"TopicNameWithSpace", "topics: [{name: jobs}, {name: \"bad name\"}]",
                       "topics[1].name: character 3 is not allowed; use [A-Za-z0-9._:-]"},
        ValidationCase{"StarInsideTopicName", "topics: [{name: \"a*b\"}]",
                       "topics[0].name: character 1 is not allowed; use [A-Za-z0-9._:-]"},
        ValidationCase{"StarAlone", "topics: [{name: \"*\"}]",
                       "topics[0].name: a '*' pattern needs a prefix"},
        ValidationCase{"DuplicateTopic",
                       "topics: [{name: jobs}, {name: news.*, kind: ephemeral}, {name: jobs}]",
                       "topics[2].name: \"jobs\" is already declared by topics[0]"},
        ValidationCase{"DuplicatePrefix",
                       "topics: [{name: news.*, kind: ephemeral}, {name: news.*}]",
                       "topics[1].name: \"news.*\" is already declared by topics[0]"},
        ValidationCase{"BufferOnDurable", "topics: [{name: jobs, buffer: 10}]",
                       "topics[0].buffer: applies only to ephemeral topics, and this topic is "
                       "durable"},
        ValidationCase{"OverflowOnDurable",
                       "topics: [{name: jobs, kind: durable, overflow: disconnect}]",
                       "topics[0].overflow: applies only to ephemeral topics, and this topic is "
                       "durable"},
        ValidationCase{"MaxLenOnEphemeral", "topics: [{name: n, kind: ephemeral, max_len: 5}]",
                       "topics[0].max_len: applies only to durable topics, and this topic is "
                       "ephemeral"},
        ValidationCase{"AckDeadlineOnEphemeral",
                       "topics: [{name: n, kind: ephemeral, ack_deadline_ms: 5000}]",
                       "topics[0].ack_deadline_ms: applies only to durable topics, and this "
                       "topic is ephemeral"},
        ValidationCase{"AttemptsOnEphemeral",
                       "topics: [{name: n, kind: ephemeral, max_delivery_attempts: 5}]",
                       "topics[0].max_delivery_attempts: applies only to durable topics, and "
                       "this topic is ephemeral"},
        ValidationCase{"SuffixOnEphemeral",
                       "topics: [{name: n, kind: ephemeral, dead_letter_suffix: x}]",
                       "topics[0].dead_letter_suffix: applies only to durable topics, and this "
                       "topic is ephemeral"},
        ValidationCase{"ExclusiveOnEphemeral",
                       "topics: [{name: n, kind: ephemeral, exclusive: false}]",
                       "topics[0].exclusive: applies only to durable topics, and this topic is "
                       "ephemeral"},
        ValidationCase{"EmptyDeadLetterSuffix", "topics: [{name: jobs, dead_letter_suffix: \"\"}]",
                       "topics[0].dead_letter_suffix: must not be empty"},
        ValidationCase{"BadDeadLetterSuffix", "topics: [{name: jobs, dead_letter_suffix: /dlq}]",
                       "topics[0].dead_letter_suffix: dead-letter topic \"jobs/dlq\": character "
                       "4 is not allowed; use [A-Za-z0-9._:-]"},
        // Clients.
        ValidationCase{"ClientWithoutId", "clients: [{token: t}]", "clients[0].id: is required"},
        ValidationCase{"ClientBadId", "clients: [{id: \"a b\", token: t}]",
                       "clients[0].id: character 1 is not allowed; use [A-Za-z0-9._:-]"},
        ValidationCase{"DuplicateClientId",
                       "clients: [{id: a, token: t1}, {id: b, token: t2}, {id: a, token: t3}]",
                       "clients[2].id: \"a\" is already used by clients[0]"},
        ValidationCase{"ClientWithoutToken", "clients: [{id: a}]",
                       "clients[0].token: is required (or cert_subject / cert_san)"},
        ValidationCase{"CertSubjectWithoutClientCa",
                       "server: {tls: {cert_file: c, key_file: k}}\n"
                       "clients: [{id: a, cert_subject: \"CN=a\"}]",
                       "clients[0].cert_subject: needs server.tls.client_ca_file: without it no "
                       "client presents a certificate"},
        ValidationCase{"CertSanWithoutTls", "clients: [{id: a, cert_san: \"spiffe://x/a\"}]",
                       "clients[0].cert_san: needs server.tls.client_ca_file: without it no "
                       "client presents a certificate"},
        ValidationCase{"EmptyCertSubject",
                       "server: {tls: {cert_file: c, key_file: k, client_ca_file: ca}}\n"
                       "clients: [{id: a, cert_subject: \"\"}]",
                       "clients[0].cert_subject: must not be empty"},
        ValidationCase{"DuplicateCertSan",
                       "server: {tls: {cert_file: c, key_file: k, client_ca_file: ca}}\n"
                       "clients: [{id: a, cert_san: s}, {id: b, token: t}, {id: c, cert_san: s}]",
                       "clients[2].cert_san: same value as clients[0]"},
        ValidationCase{"TlsWithoutCert", "server: {tls: {key_file: k}}",
                       "server.tls.cert_file: is required"},
        ValidationCase{"TlsWithoutKey", "server: {tls: {cert_file: c}}",
                       "server.tls.key_file: is required"},
        ValidationCase{"RequireClientCertWithoutCa",
                       "server: {tls: {cert_file: c, key_file: k, require_client_cert: true}}",
                       "server.tls.require_client_cert: needs server.tls.client_ca_file, the CAs "
                       "that sign client certificates"},
        ValidationCase{"TlsRefreshTooShort",
                       "server: {tls: {cert_file: c, key_file: k, refresh_interval_ms: 10}}",
                       "server.tls.refresh_interval_ms: must be between 1000 and 86400000, got 10"},
        ValidationCase{"EmptyToken", "clients: [{id: a, token: \"\"}]",
                       "clients[0].token: must not be empty"},
        ValidationCase{"TokenWithNewline", "clients: [{id: a, token: \"abc\\n\"}]",
                       "clients[0].token: must be printable ASCII without spaces (check for a "
                       "trailing newline)"},
        ValidationCase{"DuplicateToken",
                       "clients: [{id: a, token: same-secret}, {id: b, token: same-secret}]",
                       "clients[1].token: same token as clients[0]"},
        ValidationCase{"BadAllowedTopic",
                       "clients: [{id: a, token: t, allowed_topics: [jobs, \"*\"]}]",
                       "clients[0].allowed_topics[1]: a '*' pattern needs a prefix"},
        ValidationCase{"EmptyAllowedTopics", "clients: [{id: a, token: t, allowed_topics: []}]",
                       "clients[0].allowed_topics: must not be empty; omit the key instead"},
        // Consumer groups declared at startup.
        ValidationCase{"GroupsOnEphemeralTopic",
                       "topics: [{name: feed, kind: ephemeral, groups: [indexer]}]",
                       "topics[0].groups: applies only to durable topics, and this topic is "
                       "ephemeral"},
        ValidationCase{"GroupsOnPrefixPattern", "topics: [{name: \"jobs.*\", groups: [workers]}]",
                       "topics[0].groups: needs a topic declared by its exact name, and "
                       "\"jobs.*\" is a prefix pattern"},
        ValidationCase{"BadGroupName",
                       "topics: [{name: a}, {name: b}, {name: jobs, groups: [\"a b\"]}]",
                       "topics[2].groups[0]: character 1 is not allowed; use [A-Za-z0-9._:-]"},
        ValidationCase{"DuplicateGroup",
                       "topics: [{name: jobs, groups: [workers, audit, workers]}]",
                       "topics[0].groups[2]: \"workers\" is already listed at "
                       "topics[0].groups[0]"},
        // Global limits need the Redis the replicas share.
        ValidationCase{"GlobalUpstreamLimitOnMemory",
                       "upstreams: [{name: p, urls: [\"http://h/\"], rate_limit: "
                       "{requests_per_second: 10, scope: global}}]",
                       "upstreams[0].rate_limit.scope: global needs a redis:// broker that the "
                       "replicas share, and broker.url is memory://"},
        ValidationCase{"GlobalQuotaOnMemory",
                       "clients: [{id: a, token: t, requests_per_second: 5, quota_scope: global}]",
                       "clients[0].quota_scope: global needs a redis:// broker that the replicas "
                       "share, and broker.url is memory://"},
        ValidationCase{"GlobalQuotaOnAmqp",
                       "broker: {url: \"amqp://u:hunter2@rabbit/\"}\n"
                       "clients: [{id: a, token: t, requests_per_second: 5, quota_scope: global}]",
                       "clients[0].quota_scope: global needs a redis:// broker that the replicas "
                       "share, and broker.url is amqp://u:***@rabbit:5672/"},
        ValidationCase{"UnknownScope",
                       "upstreams: [{name: p, urls: [\"http://h/\"], rate_limit: {scope: "
                       "everywhere}}]",
                       "upstreams[0].rate_limit.scope: must be one of local, global, got "
                       "\"everywhere\""},
        ValidationCase{"ReplicaTtlWithinTwoHeartbeats",
                       "fleet: {heartbeat_ms: 500, replica_ttl_ms: 1000}",
                       "fleet.replica_ttl_ms: 1000 must exceed twice fleet.heartbeat_ms (500), or "
                       "live replicas would expire"},
        ValidationCase{"BadReplicaId", "fleet: {replica_id: \"a b\"}",
                       "fleet.replica_id: character 1 is not allowed; use [A-Za-z0-9._:-]"}),
    [](const ::testing::TestParamInfo<ValidationCase>& info) { return info.param.name; });

TEST(ConfigTest, AmqpDefaults) {
  absl::StatusOr<Config> config = ParseConfig("broker: {url: \"amqp://rabbit/\"}", FakeEnv());
  ASSERT_THAT(config, IsOk());
  const v1::Amqp& amqp = config->broker().amqp();
  EXPECT_EQ(amqp.operation_timeout_ms(), 5000u);
  EXPECT_EQ(amqp.connect_timeout_ms(), 5000u);
  EXPECT_EQ(amqp.heartbeat_s(), 10u);
  EXPECT_EQ(amqp.reconnect_initial_ms(), 100u);
  EXPECT_EQ(amqp.reconnect_max_ms(), 5000u);
  EXPECT_EQ(amqp.name_prefix(), "switchboard");
  EXPECT_EQ(amqp.ca_file(), "");
}

TEST(ConfigTest, AmqpsWithCaFileAndTuning) {
  absl::StatusOr<Config> config = ParseConfig(R"yaml(
broker:
  url: "amqps://switchboard:${RABBITMQ_PASSWORD}@rabbit.example.com/prod"
  amqp:
    ca_file: /etc/switchboard/rabbit-ca.pem
    heartbeat_s: 0
    operation_timeout_ms: 2000
    name_prefix: sb-blue_1.0
)yaml",
                                              FakeEnv({{"RABBITMQ_PASSWORD", "hunter2"}}));
  ASSERT_THAT(config, IsOk());
  EXPECT_EQ(config->broker().amqp().ca_file(), "/etc/switchboard/rabbit-ca.pem");
  EXPECT_EQ(config->broker().amqp().heartbeat_s(), 0u);
  EXPECT_EQ(config->broker().amqp().operation_timeout_ms(), 2000u);
  EXPECT_EQ(config->broker().amqp().name_prefix(), "sb-blue_1.0");
}

TEST(ConfigTest, AnAmqpUrlErrorNeverContainsThePassword) {
  for (const char* yaml : {"broker: {url: \"amqp://u:hunter2@rabbit:0/\"}",
                           "broker: {url: \"amqp://u:hunter2%zz@rabbit/\"}",
                           "broker: {url: \"amqps://u:hunter2@rabbit/\"}",
                           "broker: {url: \"amqp://u:a:hunter2/x@rabbit\"}"}) {
    EXPECT_THAT(ParseConfig(yaml, FakeEnv()),
                StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("hunter2"))))
        << yaml;
  }
}

TEST(ConfigTest, AtMost64GroupsPerTopic) {
  std::string groups;
  for (int i = 0; i < 65; ++i) absl::StrAppend(&groups, i == 0 ? "" : ", ", "g", i);
  EXPECT_THAT(
      ParseConfig(absl::StrCat("topics: [{name: jobs, groups: [", groups, "]}]"), FakeEnv()),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("topics[0].groups: has 65 groups; at most 64")));
  groups.resize(groups.rfind(','));  // 64 groups.
  EXPECT_THAT(
      ParseConfig(absl::StrCat("topics: [{name: jobs, groups: [", groups, "]}]"), FakeEnv()),
      IsOk());
}

TEST(ConfigTest, GlobalLimitsOnRedisAreAccepted) {
  absl::StatusOr<Config> config = ParseConfig(R"yaml(
broker: {url: "redis://127.0.0.1:6379"}
fleet: {lease_ms: 50}
upstreams:
  - name: p
    urls: ["http://h/"]
    rate_limit: {requests_per_second: 98, burst: 2, scope: global}
clients:
  - {id: a, token: t, requests_per_second: 5, quota_scope: global}
  - {id: b, token: u, requests_per_second: 5}
)yaml",
                                              FakeEnv());
  ASSERT_THAT(config, IsOk());
  EXPECT_TRUE(HasGlobalLimits(*config));
  EXPECT_EQ(config->upstreams(0).rate_limit().scope(), v1::LIMIT_SCOPE_GLOBAL);
  EXPECT_EQ(config->clients(0).quota_scope(), v1::LIMIT_SCOPE_GLOBAL);
  EXPECT_EQ(config->clients(1).quota_scope(), v1::LIMIT_SCOPE_LOCAL);
  EXPECT_EQ(config->fleet().lease_ms(), 50u);
  EXPECT_EQ(config->fleet().heartbeat_ms(), 500u);
  EXPECT_FALSE(HasGlobalLimits(DefaultConfig()));
}

TEST(ConfigTest, AnErrorNamesTheReferenceOfAnExpandedValueNeverTheValue) {
  // Validation sees only the expanded value, wherever it landed (found by
  // fuzz_config: a listen address quoted with the secret in it).
  const EnvLookup env = FakeEnv({{"SECRET", "s3cr3t-T0KEN"}, {"SHORT", "ab"}});
  EXPECT_THAT(ParseConfig("server:\n  listen: \"${SECRET}am127.0.0\"\n", env),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("server.listen: \"${SECRET}am127.0.0\": expected host:port or "
                          "[ipv6]:port")));
  EXPECT_THAT(ParseConfig("topics: [{name: \"${SECRET}\"}, {name: \"${SECRET}\"}]\n", env),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("${SECRET}"), Not(HasSubstr("s3cr3t")))));
  // Too short to be a secret, and replacing it would garble the message.
  EXPECT_THAT(ParseConfig("server:\n  listen: \"${SHORT}:x\"\n", env),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"ab:x\"")));
}

TEST(ConfigTest, ClientCredentialsCarryEachClientsTokenAndIdentity) {
  absl::StatusOr<Config> config = ParseConfig(
      R"(
clients:
  - {id: burn-detector, token: "${TOKEN}", weight: 2, requests_per_second: 50,
     allowed_topics: ["jobs", "news.*"]}
  - {id: indexer, token: idx}
)",
      FakeEnv({{"TOKEN", "burn-secret"}}));
  ASSERT_THAT(config, IsOk());
  const std::vector<auth::ClientCredential> clients = ClientCredentials(*config);
  ASSERT_EQ(clients.size(), 2u);
  EXPECT_EQ(clients[0].token, "burn-secret");
  EXPECT_EQ(clients[0].identity.id, "burn-detector");
  EXPECT_EQ(clients[0].identity.weight, 2u);
  EXPECT_EQ(clients[0].identity.requests_per_second, 50);
  EXPECT_THAT(clients[0].identity.allowed_topics, ::testing::ElementsAre("jobs", "news.*"));
  EXPECT_EQ(clients[1].token, "idx");
  EXPECT_EQ(clients[1].identity.id, "indexer");
  EXPECT_EQ(clients[1].identity.weight, 1u);
  EXPECT_TRUE(clients[1].identity.allowed_topics.empty());
  EXPECT_TRUE(ClientCredentials(DefaultConfig()).empty());
}

TEST(ConfigTest, EmptyTokenFromTheEnvironmentIsRejected) {
  EXPECT_THAT(
      ParseConfig("clients: [{id: a, token: \"${TOKEN}\"}]", FakeEnv({{"TOKEN", ""}})),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("clients[0].token: must not be empty")));
}

TEST(ConfigTest, ErrorsNeverContainSecrets) {
  EXPECT_THAT(ParseConfig("clients: [{id: a, token: s3cr3t}, {id: b, token: s3cr3t}]", FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("s3cr3t"))));
  EXPECT_THAT(ParseConfig("broker: {url: \"redis://u:s3cr3t@h:1/x\"}", FakeEnv()),
              StatusIs(absl::StatusCode::kInvalidArgument, Not(HasSubstr("s3cr3t"))));
}

TEST(ConfigTest, ListenAddressesMayShareTheAnyPort) {
  EXPECT_THAT(
      ParseConfig("server: {listen: \"127.0.0.1:0\", metrics_listen: \"127.0.0.1:0\"}", FakeEnv()),
      IsOk());
}

TEST(ExposureWarningTest, WarnsOnlyWhenAnonymousAndNotOnLoopback) {
  Config config = DefaultConfig();
  EXPECT_EQ(ExposureWarning(config), std::nullopt);

  config.mutable_server()->set_listen("0.0.0.0:7070");
  EXPECT_THAT(ExposureWarning(config), Optional(HasSubstr("'anonymous'")));
  EXPECT_THAT(ExposureWarning(config), Optional(HasSubstr("0.0.0.0:7070")));

  config.add_clients()->set_id("a");
  EXPECT_EQ(ExposureWarning(config), std::nullopt);
}

}  // namespace
}  // namespace switchboard::config
