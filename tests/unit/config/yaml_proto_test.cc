#include "server/config/yaml_proto.h"

#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/config/v1/config.pb.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::config {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::FieldDescriptor;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::StatusIs;
using ::testing::Eq;
using ::testing::StartsWith;

EnvLookup NoEnv() {
  return [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
}

absl::Status Read(absl::string_view yaml, v1::Config* config) {
  return ReadYamlIntoMessage(yaml, NoEnv(), config);
}

absl::Status ReadError(absl::string_view yaml) {
  v1::Config config;
  return Read(yaml, &config);
}

TEST(YamlProtoTest, EmptyDocumentsLeaveTheMessageUnchanged) {
  for (const char* yaml : {"", "# just a comment\n", "~", "---\n"}) {
    v1::Config config;
    EXPECT_THAT(Read(yaml, &config), IsOk()) << yaml;
    EXPECT_EQ(config.ByteSizeLong(), 0u) << yaml;
  }
}

TEST(YamlProtoTest, ReadsEveryFieldType) {
  v1::Config config;
  ASSERT_THAT(Read(R"yaml(
server:
  listen: "0.0.0.0:1"          # string
  drain_timeout_ms: 250        # uint32
limits:
  max_message_bytes: 4096      # uint64
topics:
  - name: a
    kind: ephemeral            # enum
    overflow: disconnect
  - name: b
    exclusive: TRUE            # bool
    max_len: 18446744073709551615
clients:
  - {id: c, token: t, requests_per_second: 2.5, allowed_topics: [a, "b*"]}
)yaml",
                   &config),
              IsOk());
  EXPECT_EQ(config.server().listen(), "0.0.0.0:1");
  EXPECT_EQ(config.server().drain_timeout_ms(), 250u);
  EXPECT_FALSE(config.server().has_metrics_listen());
  EXPECT_EQ(config.limits().max_message_bytes(), 4096u);
  ASSERT_EQ(config.topics_size(), 2);
  EXPECT_EQ(config.topics(0).kind(), v1::Topic::KIND_EPHEMERAL);
  EXPECT_EQ(config.topics(0).overflow(), v1::Topic::OVERFLOW_DISCONNECT);
  EXPECT_TRUE(config.topics(1).exclusive());
  EXPECT_EQ(config.topics(1).max_len(), std::numeric_limits<uint64_t>::max());
  ASSERT_EQ(config.clients_size(), 1);
  EXPECT_DOUBLE_EQ(config.clients(0).requests_per_second(), 2.5);
  ASSERT_EQ(config.clients(0).allowed_topics_size(), 2);
  EXPECT_EQ(config.clients(0).allowed_topics(0), "a");
  EXPECT_EQ(config.clients(0).allowed_topics(1), "b*");
}

TEST(YamlProtoTest, ExpandsEnvironmentReferencesInEveryScalar) {
  EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "PORT") return "7071";
    if (name == "BYTES") return "2048";
    if (name == "KIND") return "ephemeral";
    return std::nullopt;
  };
  v1::Config config;
  ASSERT_THAT(ReadYamlIntoMessage(R"yaml(
server: {listen: "127.0.0.1:${PORT}"}
limits:
  max_message_bytes: ${BYTES}  # In a {flow mapping}, quote it: "${BYTES}".
topics: [{name: "n.$${x}", kind: "${KIND}"}]
)yaml",
                                  env, &config),
              IsOk());
  EXPECT_EQ(config.server().listen(), "127.0.0.1:7071");
  EXPECT_EQ(config.limits().max_message_bytes(), 2048u);
  EXPECT_EQ(config.topics(0).name(), "n.${x}");
  EXPECT_EQ(config.topics(0).kind(), v1::Topic::KIND_EPHEMERAL);
}

struct ReadErrorCase {
  const char* name;
  const char* yaml;
  const char* message;
};

class YamlProtoErrorTest : public ::testing::TestWithParam<ReadErrorCase> {};

TEST_P(YamlProtoErrorTest, NamesTheFieldPath) {
  EXPECT_THAT(ReadError(GetParam().yaml),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq(GetParam().message)));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, YamlProtoErrorTest,
    ::testing::Values(
        ReadErrorCase{"TopLevelScalar", "hello", "(top level): must be a mapping, got \"hello\""},
        ReadErrorCase{"TopLevelList", "- a", "(top level): must be a mapping, got a list"},
        ReadErrorCase{"KeyNotAName", "{[a]: b}",
                      "(top level): keys must be field names, got a list"},
        ReadErrorCase{
            "UnknownTopLevelKey", "srever: {}",
            "srever: unknown field; expected one of server, broker, limits, topics, clients, "
            "logging, upstreams, fleet"},
        ReadErrorCase{"UnknownNestedKey", "server: {listen_addr: x}",
                      "server.listen_addr: unknown field; expected one of listen, "
                      "metrics_listen, drain_timeout_ms, upstream_threads, tls, json_rpc_listen, "
                      "json_rpc_http"},
        ReadErrorCase{"UnknownKeyInList", "topics: [{name: a}, {name: b, bufer: 3}]",
                      "topics[1].bufer: unknown field; expected one of name, kind, buffer, "
                      "overflow, max_len, max_bytes, dedup_window_ms, ack_deadline_ms, "
                      "max_delivery_attempts, dead_letter_suffix, exclusive, retry_backoff, "
                      "ordering_partitions, groups"},
        ReadErrorCase{"RepeatedKey", "server:\n  listen: a:1\n  listen: b:2\n",
                      "server.listen: appears more than once"},
        ReadErrorCase{"MessageGivenList", "server: [a]", "server: must be a mapping, got a list"},
        ReadErrorCase{"MessageGivenNull",
                      "server:", "server: must be a mapping, got nothing (null)"},
        ReadErrorCase{"ListGivenMapping", "topics: {name: x}",
                      "topics: must be a list, got a mapping"},
        ReadErrorCase{"ListGivenScalar", "clients: [{id: a, allowed_topics: jobs}]",
                      "clients[0].allowed_topics: must be a list, got \"jobs\""},
        ReadErrorCase{"EmptyList", "topics: []", "topics: must not be empty; omit the key instead"},
        ReadErrorCase{"StringGivenNull", "server: {listen: }",
                      "server.listen: must be a string, got nothing (null)"},
        ReadErrorCase{"StringGivenMapping", "server: {listen: {a: b}}",
                      "server.listen: must be a string, got a mapping"},
        ReadErrorCase{"ListElementGivenList", "clients: [{id: a, allowed_topics: [[x]]}]",
                      "clients[0].allowed_topics[0]: must be a string, got a list"},
        ReadErrorCase{"UnsignedGivenWord", "server: {drain_timeout_ms: soon}",
                      "server.drain_timeout_ms: must be a non-negative integer, got \"soon\""},
        ReadErrorCase{"UnsignedGivenNegative", "limits: {max_batch_messages: -1}",
                      "limits.max_batch_messages: must be a non-negative integer, got \"-1\""},
        ReadErrorCase{"UnsignedGivenFraction", "limits: {max_batch_messages: 1.5}",
                      "limits.max_batch_messages: must be a non-negative integer, got \"1.5\""},
        ReadErrorCase{"Uint32Overflow", "topics: [{name: j, max_delivery_attempts: 4294967296}]",
                      "topics[0].max_delivery_attempts: must be a non-negative integer, got "
                      "\"4294967296\""},
        ReadErrorCase{"Uint64Overflow", "topics: [{name: j, max_len: 18446744073709551616}]",
                      "topics[0].max_len: must be a non-negative integer, got "
                      "\"18446744073709551616\""},
        ReadErrorCase{"BoolGivenYes", "topics: [{name: jobs, exclusive: yes}]",
                      "topics[0].exclusive: must be true or false, got \"yes\""},
        ReadErrorCase{"DoubleGivenWord", "clients: [{id: a, requests_per_second: fast}]",
                      "clients[0].requests_per_second: must be a number, got \"fast\""},
        ReadErrorCase{"DoubleGivenNan", "clients: [{id: a, requests_per_second: nan}]",
                      "clients[0].requests_per_second: must be a number, got \"nan\""},
        ReadErrorCase{"DoubleGivenInfinity", "clients: [{id: a, requests_per_second: inf}]",
                      "clients[0].requests_per_second: must be a number, got \"inf\""},
        ReadErrorCase{"EnumTypo", "topics: [{name: jobs}, {name: n, overflow: dropp}]",
                      "topics[1].overflow: must be one of drop_oldest, drop_newest, disconnect, "
                      "got \"dropp\""},
        ReadErrorCase{"EnumProtoSpelling", "topics: [{name: n, kind: KIND_EPHEMERAL}]",
                      "topics[0].kind: must be one of durable, ephemeral, got \"KIND_EPHEMERAL\""},
        ReadErrorCase{"LogLevel", "logging: {level: verbose}",
                      "logging.level: must be one of debug, info, warning, error, got "
                      "\"verbose\""},
        ReadErrorCase{"UnsetVariable", "clients: [{id: a, token: \"${BURN_TOKEN}\"}]",
                      "clients[0].token: environment variable BURN_TOKEN is not set"},
        ReadErrorCase{"BadReference", "broker: {url: \"redis://${HOST\"}",
                      "broker.url: unterminated \"${\": expected \"${NAME}\""}),
    [](const ::testing::TestParamInfo<ReadErrorCase>& info) { return info.param.name; });

TEST(YamlProtoTest, ErrorsNeverEchoAValueThatMayBeASecret) {
  // A URL with a key where a list is expected, a token where a number is.
  EXPECT_THAT(ReadError("upstreams: [{name: s, urls: \"https://host/v1/SECRETKEY123?apikey=S2\"}]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("upstreams[0].urls: must be a list, got a value of 38 characters "
                          "(not shown)")));
  EXPECT_THAT(ReadError("server: {drain_timeout_ms: tok_live_0123456789abcdefghijklmnopqrstuv}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("server.drain_timeout_ms: must be a non-negative integer, got a value "
                          "of 41 characters (not shown)")));
  // Short, but with letters and digits: it may be a password.
  EXPECT_THAT(ReadError("topics: [{name: jobs, exclusive: hunter2}]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("topics[0].exclusive: must be true or false, got a value of 7 "
                          "characters (not shown)")));
  // An expanded variable is named, never its value.
  EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "RPC_KEY") return "sk_SECRET";
    return std::nullopt;
  };
  v1::Config config;
  EXPECT_THAT(ReadYamlIntoMessage("server: {drain_timeout_ms: \"${RPC_KEY}\"}", env, &config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("server.drain_timeout_ms: must be a non-negative integer, got the "
                          "expansion of \"${RPC_KEY}\" (not shown)")));
  // Ten megabytes of garbage are described, not repeated.
  const std::string huge(10 << 20, 'x');
  const absl::Status status = ReadError(absl::StrCat("server: {drain_timeout_ms: ", huge, "}"));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               Eq("server.drain_timeout_ms: must be a non-negative integer, got a "
                                  "value of 10485760 characters (not shown)")));
  // Nor is an unknown key that is not a plain name.
  EXPECT_THAT(ReadError("server: {\"https://h/SECRET\": 1}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("server: unknown field a value of 16 characters (not shown); "
                                  "expected one of listen,")));
}

constexpr char kSeveralDocuments[] =
    "YAML: the config holds more than one document (separated by ---, or after a stray ',' at "
    "the top level); Switchboard reads exactly one";

TEST(YamlProtoTest, ASecondDocumentIsAnError) {
  EXPECT_THAT(ReadError("server: {listen: \"a:1\"}\n---\nserver: {listen: \"b:2\"}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq(kSeveralDocuments)));
  // yaml-cpp reads a stray ',' as a document it never gets past: refused, at once.
  EXPECT_THAT(ReadError(","), StatusIs(absl::StatusCode::kInvalidArgument, Eq(kSeveralDocuments)));
  EXPECT_THAT(ReadError("server: {listen: \"a:1\"}\n---\n,"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq(kSeveralDocuments)));
}

TEST(YamlProtoTest, SyntaxErrorsGiveTheLine) {
  EXPECT_THAT(ReadError("server:\n  listen: [\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("YAML line 3, column ")));
  EXPECT_THAT(ReadError("a: b\n c: d\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("YAML line 2, column ")));
}

TEST(YamlProtoTest, YamlEnumNamesDropTheEnumPrefix) {
  EXPECT_EQ(YamlEnumName(*v1::Topic::Kind_descriptor()->FindValueByName("KIND_DURABLE")),
            "durable");
  EXPECT_EQ(
      YamlEnumName(*v1::Topic::Overflow_descriptor()->FindValueByName("OVERFLOW_DROP_OLDEST")),
      "drop_oldest");
  EXPECT_EQ(YamlEnumName(*v1::Logging::Level_descriptor()->FindValueByName("LEVEL_WARNING")),
            "warning");
}

TEST(CheckFieldBoundsTest, ChecksSetFieldsAtEveryDepth) {
  v1::Config config;
  EXPECT_THAT(CheckFieldBounds(config), IsOk());
  config.mutable_limits()->set_max_message_bytes(67108864);
  config.add_topics()->set_buffer(1);
  config.add_topics()->set_buffer(1000000);
  EXPECT_THAT(CheckFieldBounds(config), IsOk());

  config.mutable_topics(1)->set_buffer(1000001);
  EXPECT_THAT(CheckFieldBounds(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("topics[1].buffer: must be between 1 and 1000000, got 1000001")));
  config.mutable_topics(1)->set_buffer(0);
  EXPECT_THAT(CheckFieldBounds(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("topics[1].buffer: must be between 1 and 1000000, got 0")));
  config.mutable_limits()->set_max_message_bytes(67108865);
  EXPECT_THAT(CheckFieldBounds(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("limits.max_message_bytes: must be between 1 and 67108864, got "
                          "67108865")));
}

TEST(CheckFieldBoundsTest, ComparesDoublesExactly) {
  v1::Config config;
  config.add_clients()->set_requests_per_second(1000000.0);
  EXPECT_THAT(CheckFieldBounds(config), IsOk());
  config.mutable_clients(0)->set_requests_per_second(1000000.5);
  EXPECT_THAT(CheckFieldBounds(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("clients[0].requests_per_second: must be between 0 and 1000000, got "
                          "1000000.5")));
  config.mutable_clients(0)->set_requests_per_second(-0.25);
  EXPECT_THAT(CheckFieldBounds(config),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("clients[0].requests_per_second: must be between 0 and 1000000, got "
                          "-0.25")));
}

// Walks the schema: every bounded field is numeric, has both bounds, and its
// default lies within them. Returns the number of bounded fields seen.
int CheckSchemaBounds(const Descriptor& descriptor) {
  int bounded = 0;
  for (int i = 0; i < descriptor.field_count(); ++i) {
    const FieldDescriptor& field = *descriptor.field(i);
    SCOPED_TRACE(field.full_name());
    if (field.cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      bounded += CheckSchemaBounds(*field.message_type());
      continue;
    }
    if (!field.options().HasExtension(v1::bounds)) continue;
    ++bounded;
    const v1::Bounds& bounds = field.options().GetExtension(v1::bounds);
    EXPECT_TRUE(bounds.has_min());
    EXPECT_TRUE(bounds.has_max());
    long double default_value = 0;
    switch (field.cpp_type()) {
      case FieldDescriptor::CPPTYPE_UINT32:
        default_value = field.default_value_uint32();
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        default_value = field.default_value_uint64();
        break;
      case FieldDescriptor::CPPTYPE_DOUBLE:
        default_value = field.default_value_double();
        break;
      default:
        ADD_FAILURE() << "bounds on a field of unexpected type";
    }
    EXPECT_GE(default_value, bounds.min());
    EXPECT_LE(default_value, bounds.max());
  }
  return bounded;
}

TEST(CheckFieldBoundsTest, EverySchemaDefaultIsWithinItsBounds) {
  EXPECT_EQ(CheckSchemaBounds(*v1::Config::descriptor()), 63);
}

}  // namespace
}  // namespace switchboard::config
