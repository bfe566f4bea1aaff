// Issue 12's HTTP/2 default: an upstream that says nothing of `http2`
// multiplexes its calls over HTTP/2 where an https:// provider negotiates
// it, and speaks HTTP/1.1 to an http:// one.
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::testing {
namespace {

using ::testing::Each;
using ::testing::Field;
using ::testing::SizeIs;

constexpr absl::Duration kCallDeadline = absl::Seconds(20);
constexpr int kCalls = 40;

// Makes kCalls concurrent calls to `upstream`; expects every one answered.
void CallConcurrently(const client::Client& client, absl::string_view upstream) {
  std::vector<CallOutcome> outcomes(kCalls);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      outcomes[i] = TimedCall(client, RpcRequest(upstream, "getSlot", absl::StrCat("[", i, "]")));
    });
  }
  for (std::thread& caller : callers) caller.join();
  for (const CallOutcome& outcome : outcomes) EXPECT_THAT(outcome.status, IsOk());
}

TEST(RpcHttp2DefaultTest, HttpsNegotiatesHttp2AndHttpSpeaksHttp11) {
  NginxServer::Options tls_options;
  tls_options.tls = true;
  tls_options.http2 = true;
  // The calls' bodies go after their headers (they may not repeat): a
  // provider that answered before reading one could lose its answer to
  // libcurl 7.88 (server/http/http_pool_impl.h).
  tls_options.read_body = true;
  absl::StatusOr<std::unique_ptr<NginxServer>> tls = NginxServer::Start(tls_options);
  absl::StatusOr<std::unique_ptr<NginxServer>> cleartext = NginxServer::Start();
  ASSERT_THAT(tls, IsOk());
  ASSERT_THAT(cleartext, IsOk());
  // No `http2:` key. The TLS nginx's certificate is its own (self-signed).
  absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
      R"(
upstreams:
  - {name: tls, urls: ["$0"], max_connections: 1, tls_verify: false, coalescing: {enabled: false}}
  - {name: cleartext, urls: ["$1"], max_connections: 1, coalescing: {enabled: false}}
)",
      (*tls)->url(), (*cleartext)->url()));
  ASSERT_THAT(server, IsOk());
  std::unique_ptr<client::Client> client = MakeRpcClient(server->target, kCallDeadline);

  CallConcurrently(*client, "tls");
  CallConcurrently(*client, "cleartext");

  absl::StatusOr<AccessLog> tls_log = (*tls)->WaitForAccessLog(kCalls);
  ASSERT_THAT(tls_log, IsOk());
  EXPECT_THAT(tls_log->entries, SizeIs(kCalls));
  EXPECT_THAT(tls_log->entries, Each(Field(&AccessLogEntry::protocol, "HTTP/2.0")));
  EXPECT_THAT(tls_log->Connections(), SizeIs(1));
  absl::StatusOr<AccessLog> cleartext_log = (*cleartext)->WaitForAccessLog(kCalls);
  ASSERT_THAT(cleartext_log, IsOk());
  EXPECT_THAT(cleartext_log->entries, SizeIs(kCalls));
  EXPECT_THAT(cleartext_log->entries, Each(Field(&AccessLogEntry::protocol, "HTTP/1.1")));
  EXPECT_THAT(cleartext_log->Connections(), SizeIs(1));
}

}  // namespace
}  // namespace switchboard::testing
