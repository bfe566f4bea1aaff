// TLS and mutual TLS on the gRPC port (issue 15): sbctl round trips over
// TLS with certificates made by openssl in the test, plaintext and untrusted
// peers refused, client certificates mapped to clients by subject or SAN, a
// certificate rotated on disk reaching new connections while a stream
// opened before goes on, and unusable files failing the start by name.
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/v1/broker.grpc.pb.h"
#include "tests/integration/examples/example_process.h"
#include "tests/testing/broker_calls.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_certificates.h"

namespace switchboard::testing {
namespace {

using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// How long a rotated certificate may take to be served: the 1-s refresh,
// with room for a loaded machine.
constexpr absl::Duration kRotationTimeout = absl::Seconds(30);

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestCertificates>> ca = TestCertificates::Create();
    ASSERT_THAT(ca, IsOk());
    ca_ = *std::move(ca);
    absl::StatusOr<std::unique_ptr<TestCertificates>> other = TestCertificates::Create("Other CA");
    ASSERT_THAT(other, IsOk());
    other_ca_ = *std::move(other);
    server_ =
        Issue(*ca_, "server", "/O=Switchboard Test/CN=switchboard", "IP:127.0.0.1,DNS:localhost");
    worker_a_ = Issue(*ca_, "worker-a", "/O=Switchboard Test/CN=worker-a", "DNS:worker-a.test");
    worker_b_ = Issue(*ca_, "worker-b", "/O=Switchboard Test/CN=b", "URI:spiffe://test/worker-b");
    stranger_ = Issue(*ca_, "stranger", "/O=Switchboard Test/CN=stranger", "");
    // Claims worker-a's subject, signed by a CA the server does not trust.
    intruder_ = Issue(*other_ca_, "intruder", "/O=Switchboard Test/CN=worker-a", "");
  }

  static TestCertificates::Issued Issue(TestCertificates& ca, const std::string& name,
                                        const std::string& subject, const std::string& sans) {
    absl::StatusOr<TestCertificates::Issued> issued = ca.Issue(name, subject, sans);
    EXPECT_THAT(issued, IsOk());
    return issued.value_or(TestCertificates::Issued{});
  }

  // The server's `tls:` block, one line of YAML.
  std::string TlsYaml(bool client_certificates) const {
    std::string yaml = absl::StrCat("{cert_file: \"", server_.cert_file, "\", key_file: \"",
                                    server_.key_file, "\", refresh_interval_ms: 1000");
    if (client_certificates) {
      absl::StrAppend(&yaml, ", client_ca_file: \"", ca_->ca_file(),
                      "\", require_client_cert: true");
    }
    return yaml + "}";
  }

  void Start(const std::string& yaml) {
    absl::StatusOr<InProcessServer> started = StartInProcessServer(yaml);
    ASSERT_THAT(started, IsOk());
    running_ = *std::move(started);
  }

  // sbctl against the server with `flags`, then `args`.
  RunResult Sbctl(const std::vector<std::string>& flags, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {SBCTL_BINARY, absl::StrCat("--server=", running_.target)};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.insert(argv.end(), args.begin(), args.end());
    return switchboard::testing::Run(argv);
  }

  // sbctl's TLS flags presenting `certificate`.
  std::vector<std::string> MutualTls(const TestCertificates::Issued& certificate) const {
    return {"--tls_ca=" + ca_->ca_file(), "--tls_cert=" + certificate.cert_file,
            "--tls_key=" + certificate.key_file};
  }

  // A channel of its own (no subchannel shared with another channel, so a
  // new connection and handshake), trusting the test CA.
  std::shared_ptr<grpc::Channel> NewTlsChannel() const {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadTextFile(ca_->ca_file());
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(running_.target, grpc::SslCredentials(ssl), args);
  }

  std::unique_ptr<TestCertificates> ca_;
  std::unique_ptr<TestCertificates> other_ca_;
  TestCertificates::Issued server_;
  TestCertificates::Issued worker_a_;
  TestCertificates::Issued worker_b_;
  TestCertificates::Issued stranger_;
  TestCertificates::Issued intruder_;
  InProcessServer running_;
};

std::vector<std::string> Concat(std::vector<std::string> first,
                                const std::vector<std::string>& second) {
  first.insert(first.end(), second.begin(), second.end());
  return first;
}

// The last line of `text` (gRPC logs failed handshakes on stderr before
// sbctl's own line).
std::string LastLine(const std::string& text) {
  const std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines.empty() ? "" : lines.back();
}

// The common name of the certificate the server presented on a finished
// call.
std::string ServerCommonName(const grpc::ClientContext& context) {
  const std::vector<grpc::string_ref> names =
      context.auth_context()->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  return names.empty() ? "" : std::string(names.front().data(), names.front().size());
}

TEST_F(TlsTest, SbctlRoundTripsOverTlsAndPlaintextOrUntrustedServersAreRefused) {
  Start(absl::StrCat("server: {tls: ", TlsYaml(false), "}"));
  const std::string trust = "--tls_ca=" + ca_->ca_file();

  RunResult published = Sbctl({trust}, {"publish", "jobs", "over-tls"});
  ASSERT_EQ(published.exit_code, 0) << published.stderr_text;
  RunResult consumed = Sbctl({trust}, {"consume", "jobs", "--group=g", "--count=1"});
  ASSERT_EQ(consumed.exit_code, 0) << consumed.stderr_text;
  EXPECT_EQ(consumed.stdout_text, "over-tls\n");
  // The certificate names localhost too: reached by IP, checked by name.
  EXPECT_EQ(Sbctl({trust, "--tls_server_name=localhost"}, {"health"}).exit_code, 0);

  // Plaintext to a TLS port, a server the system's CAs do not vouch for, a
  // CA that did not sign it, a name it does not carry: no call gets through.
  for (const std::vector<std::string>& flags : {std::vector<std::string>{},
                                                {"--tls"},
                                                {"--tls_ca=" + other_ca_->ca_file()},
                                                {trust, "--tls_server_name=elsewhere.test"}}) {
    RunResult refused = Sbctl(flags, {"publish", "jobs", "refused"});
    EXPECT_EQ(refused.exit_code, 1) << absl::StrJoin(flags, " ");
    EXPECT_THAT(LastLine(refused.stderr_text), StartsWith("UNAVAILABLE: "))
        << absl::StrJoin(flags, " ");
  }
  // Nothing refused was stored: the group's next message is the next one.
  ASSERT_EQ(Sbctl({trust}, {"publish", "jobs", "next"}).exit_code, 0);
  EXPECT_EQ(Sbctl({trust}, {"consume", "jobs", "--group=g", "--count=1"}).stdout_text, "next\n");

  // A TLS file that cannot be read is a usage error naming the flag.
  RunResult missing = Sbctl({"--tls_ca=/nonexistent/ca.pem"}, {"health"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.stderr_text, HasSubstr("--tls_ca: cannot read /nonexistent/ca.pem"));
}

TEST_F(TlsTest, ClientCertificatesMapToClientsBySubjectOrSan) {
  Start(absl::StrCat("server: {tls: ", TlsYaml(true), R"(}
clients:
  - {id: worker-a, cert_subject: "CN=worker-a,O=Switchboard Test", allowed_topics: ["a.*"]}
  - {id: worker-b, cert_san: "spiffe://test/worker-b", allowed_topics: ["b.*"]}
  - {id: ops, token: ops-token}
)"));
  EXPECT_EQ(Sbctl(MutualTls(worker_a_), {"publish", "a.jobs", "m"}).exit_code, 0);
  RunResult a_elsewhere = Sbctl(MutualTls(worker_a_), {"publish", "b.jobs", "m"});
  EXPECT_EQ(a_elsewhere.exit_code, 1);
  EXPECT_THAT(LastLine(a_elsewhere.stderr_text), StartsWith("PERMISSION_DENIED: "));
  EXPECT_THAT(a_elsewhere.stderr_text, HasSubstr("client 'worker-a' may not use topic 'b.jobs'"));

  EXPECT_EQ(Sbctl(MutualTls(worker_b_), {"publish", "b.jobs", "m"}).exit_code, 0);
  EXPECT_THAT(Sbctl(MutualTls(worker_b_), {"publish", "a.jobs", "m"}).stderr_text,
              HasSubstr("client 'worker-b' may not use topic 'a.jobs'"));

  // A valid certificate of nobody configured: refused, unless a token says
  // who is calling.
  RunResult stranger = Sbctl(MutualTls(stranger_), {"publish", "b.jobs", "m"});
  EXPECT_EQ(stranger.exit_code, 1);
  EXPECT_THAT(LastLine(stranger.stderr_text), StartsWith("UNAUTHENTICATED: "));
  EXPECT_THAT(stranger.stderr_text, HasSubstr("matches no client"));
  std::vector<std::string> with_token = MutualTls(stranger_);
  with_token.push_back("--token=ops-token");
  EXPECT_EQ(Sbctl(with_token, {"publish", "b.jobs", "m"}).exit_code, 0);

  // require_client_cert: no certificate, or one from another CA (even with
  // worker-a's subject), and the handshake itself fails.
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--tls_ca=" + ca_->ca_file(), "--token=ops-token"},
        {"--tls_ca=" + ca_->ca_file(), "--tls_cert=" + intruder_.cert_file,
         "--tls_key=" + intruder_.key_file}}) {
    RunResult refused = Sbctl(flags, {"publish", "a.jobs", "m"});
    EXPECT_EQ(refused.exit_code, 1) << absl::StrJoin(flags, " ");
    EXPECT_THAT(LastLine(refused.stderr_text), StartsWith("UNAVAILABLE: "))
        << absl::StrJoin(flags, " ");
  }
  // worker-a's publish is on a.jobs for anyone allowed to read it.
  RunResult a_jobs = Sbctl({"--token=ops-token", "--tls_ca=" + ca_->ca_file(),
                            "--tls_cert=" + stranger_.cert_file, "--tls_key=" + stranger_.key_file},
                           {"consume", "a.jobs", "--group=audit", "--count=1"});
  EXPECT_EQ(a_jobs.stdout_text, "m\n") << a_jobs.stderr_text;
}

// The example workers take the same TLS flags: seed 002's API and runner,
// each known by its certificate and allowed only the topics it needs.
TEST_F(TlsTest, TheExampleJobsSceneRunsOverMutualTls) {
  constexpr int kJobs = 20;
  Start(absl::StrCat("server: {tls: ", TlsYaml(true), R"(}
topics:
  - {name: jobs, kind: durable, ack_deadline_ms: 600000}
  - {name: results, kind: durable, ack_deadline_ms: 600000}
clients:
  - {id: jobs-api, cert_subject: "CN=worker-a,O=Switchboard Test", allowed_topics: [jobs, results]}
  - {id: job-runner, cert_san: "spiffe://test/worker-b", allowed_topics: [jobs, results]}
)"));
  absl::StatusOr<Subprocess> runner =
      StartExample(EXAMPLE_JOB_RUNNER_BINARY, running_.target,
                   Concat(MutualTls(worker_b_), {absl::StrCat("--max_jobs=", kJobs)}));
  ASSERT_THAT(runner, IsOk());
  ASSERT_TRUE(WaitForStderr(*runner, "consuming jobs")) << runner->stderr_text();
  absl::StatusOr<Subprocess> api =
      StartExample(EXAMPLE_JOBS_API_BINARY, running_.target,
                   Concat(MutualTls(worker_a_), {absl::StrCat("--jobs=", kJobs)}));
  ASSERT_THAT(api, IsOk());
  ASSERT_EQ(api->Wait(kExampleTimeout), std::optional<int>(0)) << api->stderr_text();
  const auto summaries = KeyValueLines(api->stdout_text(), "summary:");
  ASSERT_EQ(summaries.size(), 1u) << api->stdout_text();
  EXPECT_EQ(IntField(summaries[0], "distinct_results"), kJobs);
  ASSERT_EQ(runner->Wait(kExampleTimeout), std::optional<int>(0)) << runner->stderr_text();
  const auto ran = KeyValueLines(runner->stdout_text(), "summary:");
  ASSERT_EQ(ran.size(), 1u) << runner->stdout_text();
  EXPECT_EQ(IntField(ran[0], "jobs_run"), kJobs);
}

TEST_F(TlsTest, ARotatedCertificateReachesNewConnectionsWhileAnOpenStreamGoesOn) {
  Start(absl::StrCat("server: {tls: ", TlsYaml(false), "}"));
  std::shared_ptr<grpc::Channel> before = NewTlsChannel();
  v1::Broker::Stub before_stub(before);
  grpc::ClientContext stream_context;
  std::unique_ptr<ConsumeStream> stream =
      OpenConsume(before_stub, stream_context, "jobs", "g", 10, 0);
  v1::PublishResponse response;
  ASSERT_TRUE(Publish(before_stub, "jobs", {"before"}, &response).ok());
  ASSERT_EQ(ReadDeliveries(*stream, 1).size(), 1u);
  EXPECT_EQ(ServerCommonName(stream_context), "switchboard");

  // Rotate the way a mounted Secret does: new files take the old names.
  TestCertificates::Issued rotated =
      Issue(*ca_, "rotated", "/O=Switchboard Test/CN=switchboard-rotated", "IP:127.0.0.1");
  std::filesystem::rename(rotated.key_file, server_.key_file);
  std::filesystem::rename(rotated.cert_file, server_.cert_file);

  // New connections get the new certificate once the watcher read it.
  const absl::Time deadline = absl::Now() + kRotationTimeout;
  std::string served;
  while (served != "switchboard-rotated" && absl::Now() < deadline) {
    std::shared_ptr<grpc::Channel> fresh = NewTlsChannel();
    v1::Broker::Stub fresh_stub(fresh);
    grpc::ClientContext context;
    context.set_deadline(Deadline());
    v1::PublishRequest request;
    request.set_topic("probes");
    request.add_messages()->set_payload("probe");
    ASSERT_TRUE(fresh_stub.Publish(&context, request, &response).ok());
    served = ServerCommonName(context);
    if (served != "switchboard-rotated") absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(served, "switchboard-rotated");

  // The stream opened before the rotation still delivers, on its old
  // connection.
  ASSERT_TRUE(Publish(before_stub, "jobs", {"after"}, &response).ok());
  const std::vector<v1::Delivery> after = ReadDeliveries(*stream, 1);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].message().payload(), "after");
  EXPECT_EQ(ServerCommonName(stream_context), "switchboard");
  stream_context.TryCancel();
  stream->Finish();
}

TEST_F(TlsTest, UnusableTlsFilesFailTheStartNamingTheField) {
  const auto start = [](const std::string& tls) {
    return StartInProcessServer(absl::StrCat("server: {tls: ", tls, "}")).status();
  };
  EXPECT_THAT(start(absl::StrCat("{cert_file: \"", server_.cert_file, "\", key_file: \"",
                                 worker_a_.key_file, "\"}")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("server.tls.key_file: does not match the certificate of "
                                  "cert_file")));
  EXPECT_THAT(start(absl::StrCat("{cert_file: \"", server_.key_file, "\", key_file: \"",
                                 server_.key_file, "\"}")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("server.tls.cert_file: no PEM certificate chain in ")));
  EXPECT_THAT(start(absl::StrCat("{cert_file: \"", server_.cert_file, "\", key_file: \"",
                                 server_.cert_file, "\"}")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("server.tls.key_file: no PEM private key in ")));
  EXPECT_THAT(
      start(absl::StrCat("{cert_file: /nonexistent.pem, key_file: \"", server_.key_file, "\"}")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               StartsWith("server.tls.cert_file: cannot read /nonexistent.pem")));
  EXPECT_THAT(start(absl::StrCat("{cert_file: /dev/zero, key_file: \"", server_.key_file, "\"}")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("server.tls.cert_file: /dev/zero is not a file")));
  EXPECT_THAT(
      start(absl::StrCat("{cert_file: \"", server_.cert_file, "\", key_file: \"", server_.key_file,
                         "\", client_ca_file: \"", server_.key_file, "\"}")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               StartsWith("server.tls.client_ca_file: no PEM certificate in ")));
}

}  // namespace
}  // namespace switchboard::testing
