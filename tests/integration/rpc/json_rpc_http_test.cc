// The JSON-RPC front door (issue 14): an unmodified HTTP client (curl)
// posts JSON-RPC calls and batches to `POST /<upstream>` of an in-process
// Switchboard, whose upstreams are ScriptedHttpServers answering each call
// with its params. Answers come back byte-exact with the caller's own ids;
// limits answer 429 with Retry-After; bad input gets a precise answer.
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

constexpr char kCurlBinary[] = "/usr/bin/curl";  // Debian's curl (scripts/setup.sh).
// Node.js, and the web3 client that scripts/setup.sh installs from npm.
constexpr char kNodeBinary[] = "/usr/bin/node";
constexpr char kReadChainScript[] = WEB3_CLIENT_DIR "/read_chain.mjs";
constexpr int kMaxBatchCalls = 3;
constexpr int kMaxBodyBytes = 4096;

struct CurlResult {
  int status = 0;
  std::map<std::string, std::string> headers;  // Names in lower case.
  std::string body;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// POSTs `body` with curl to http://127.0.0.1:`port``path`, with `args`
// (headers, say) before the URL.
CurlResult Curl(int port, const std::string& path, const std::string& body,
                std::vector<std::string> args = {}, const std::string& method = "POST") {
  std::vector<std::string> argv = {kCurlBinary, "-sS",  "-i",
                                   "-X",        method, "--data-binary",
                                   "@-",        "-H",   "Content-Type: application/json"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(absl::StrCat("http://127.0.0.1:", port, path));
  const RunResult run = Run(argv, body, absl::Seconds(30));
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  CurlResult result;
  const size_t head_end = run.stdout_text.find("\r\n\r\n");
  if (head_end == std::string::npos) return result;
  std::vector<std::string> lines = absl::StrSplit(run.stdout_text.substr(0, head_end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() >= 2) {
    EXPECT_TRUE(absl::SimpleAtoi(status_line[1], &result.status));
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> header = absl::StrSplit(lines[i], absl::MaxSplits(": ", 1));
    if (header.size() == 2) result.headers[absl::AsciiStrToLower(header[0])] = header[1];
  }
  result.body = run.stdout_text.substr(head_end + 4);
  return result;
}

class JsonRpcHttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ScriptedHttpServer::Script echo;
    echo.echo_params = true;
    // What an Ethereum node answers the web3 client's calls.
    echo.results = {{"eth_chainId", R"("0x1")"},
                    {"eth_blockNumber", R"("0x10")"},
                    {"eth_getBalance", R"("0xde0b6b3a7640000")"}};
    absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> provider = ScriptedHttpServer::Start(echo);
    ASSERT_THAT(provider, IsOk());
    provider_ = provider->release();
    // `echo` batches; `limited` admits one call, the next 20 s later, and
    // refuses what cannot be admitted within its 300 ms request timeout.
    absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
        R"(
server:
  json_rpc_listen: "127.0.0.1:0"
  json_rpc_http: {max_batch_calls: $1}
limits: {max_message_bytes: $2}
clients:
  - {id: worker, token: "t0ken-1"}
upstreams:
  - {name: echo, urls: ["$0"], max_connections: 2, batch: {max_calls: 10}}
  - {name: eth, urls: ["$0"], max_connections: 2}
  - name: limited
    urls: ["$0"]
    timeout_ms: 300
    rate_limit: {requests_per_second: 0.05, burst: 1}
)",
        provider_->url(), kMaxBatchCalls, kMaxBodyBytes));
    ASSERT_THAT(server, IsOk());
    server_ = new InProcessServer(*std::move(server));
    port_ = server_->server->json_rpc_port();
    ASSERT_GT(port_, 0);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete provider_;
  }

  static CurlResult Post(const std::string& path, const std::string& body) {
    return Curl(port_, path, body, {"-H", "Authorization: Bearer t0ken-1"});
  }

  static inline ScriptedHttpServer* provider_ = nullptr;
  static inline InProcessServer* server_ = nullptr;
  static inline int port_ = 0;
};

TEST_F(JsonRpcHttpTest, ACallAndABatchComeBackByteExactWithTheCallersIds) {
  const CurlResult single = Post(
      "/echo", R"({"jsonrpc":"2.0","id":"abc","method":"getBalance","params":[ "x" , 1.50 ]})");
  EXPECT_EQ(single.status, 200);
  EXPECT_EQ(single.Header("content-type"), "application/json");
  EXPECT_EQ(single.body, R"({"jsonrpc":"2.0","id":"abc","result":[ "x" , 1.50 ]})");

  // A notification (no id) is run and gets no answer; the others keep the
  // batch's order.
  const CurlResult batch = Post("/echo", R"([
    {"jsonrpc":"2.0","id":7,"method":"getSlot","params":[1]},
    {"jsonrpc":"2.0","method":"getSlot","params":[2]},
    {"jsonrpc":"2.0","id":{"deep":[1]},"method":"getSlot","params":{"k":3}}])");
  EXPECT_EQ(batch.status, 200);
  EXPECT_EQ(batch.body, R"([{"jsonrpc":"2.0","id":7,"result":[1]},)"
                        R"({"jsonrpc":"2.0","id":{"deep":[1]},"result":{"k":3}}])");
}

// ethers' JsonRpcProvider, unmodified, with the token in its URL: it asks
// the chain id alone, then batches the block number and a balance.
TEST_F(JsonRpcHttpTest, AnUnmodifiedWeb3ClientReadsTheChainThroughTheFrontDoor) {
  const size_t before = provider_->requests().size();
  const RunResult run = testing::Run(
      {kNodeBinary, kReadChainScript, absl::StrCat("http://127.0.0.1:", port_, "/eth/t0ken-1"),
       "0x00000000219ab540356cBB839Cbe05303d7705Fa"},
      std::nullopt, absl::Seconds(60));
  EXPECT_EQ(run.exit_code, 0) << run.stderr_text;
  EXPECT_EQ(run.stdout_text, R"({"chainId":"1","blockNumber":16,"balance":"1000000000000000000"})"
                             "\n");
  const std::vector<std::string> requests = provider_->requests();
  ASSERT_GT(requests.size(), before);
  int balances = 0;
  for (size_t i = before; i < requests.size(); ++i) {
    if (absl::StrContains(requests[i],
                          R"("method":"eth_getBalance","params":)"
                          R"(["0x00000000219ab540356cbb839cbe05303d7705fa","latest"])")) {
      ++balances;
    }
  }
  EXPECT_EQ(balances, 1);
}

TEST_F(JsonRpcHttpTest, TheTokenMayBeInThePathAndAnUnknownCallerIsRefused) {
  const std::string call = R"({"jsonrpc":"2.0","id":1,"method":"getSlot","params":[5]})";
  const CurlResult by_path = Curl(port_, "/echo/t0ken-1", call);
  EXPECT_EQ(by_path.status, 200);
  EXPECT_EQ(by_path.body, R"({"jsonrpc":"2.0","id":1,"result":[5]})");
  for (const CurlResult& refused :
       {Curl(port_, "/echo/wr0ng-secret", call), Curl(port_, "/echo", call),
        Curl(port_, "/echo", call, {"-H", "Authorization: Bearer wr0ng-secret"})}) {
    EXPECT_EQ(refused.status, 401);
    EXPECT_THAT(refused.body, HasSubstr(R"("error":{"code":-32600,)"));
    EXPECT_THAT(refused.body, Not(HasSubstr("wr0ng-secret")));
  }
}

TEST_F(JsonRpcHttpTest, CallsRefusedByALimitGet429WithRetryAfter) {
  const std::string call = R"({"jsonrpc":"2.0","id":1,"method":"getSlot","params":[1]})";
  // The burst admits the first; the next slot is 20 s away, past the
  // upstream's 300 ms timeout: the others are refused at once.
  const CurlResult admitted = Post("/limited", call);
  EXPECT_EQ(admitted.status, 200) << admitted.body;
  EXPECT_EQ(admitted.body, R"({"jsonrpc":"2.0","id":1,"result":[1]})");
  const CurlResult refused = Post("/limited", call);
  EXPECT_EQ(refused.status, 429);
  int64_t retry_after = 0;
  EXPECT_TRUE(absl::SimpleAtoi(refused.Header("retry-after"), &retry_after));
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 20);
  EXPECT_THAT(refused.body, HasSubstr(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32005,)"));
  // A batch refused whole is a 429 too; partly refused, a 200.
  const CurlResult batch = Post("/limited", absl::StrCat("[", call, ",", call, "]"));
  EXPECT_EQ(batch.status, 429);
  EXPECT_THAT(batch.body, HasSubstr(R"(},{"jsonrpc":"2.0","id":1,"error":{"code":-32005,)"));
}

TEST_F(JsonRpcHttpTest, BadRequestsGetPreciseAnswersAndReachNoProvider) {
  const size_t before = provider_->requests().size();
  const auto rejected = [](absl::string_view code) {
    return ScrapeMetric(server_->metrics_port,
                        absl::StrCat(R"(switchboard_requests_rejected_total{code=")", code,
                                     R"(",method="JsonRpcHttp"})"))
        .value_or(0);
  };
  const double invalid_before = rejected("INVALID_ARGUMENT");
  const double not_found_before = rejected("NOT_FOUND");
  const CurlResult get = Curl(port_, "/echo", "", {}, "GET");
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.Header("allow"), "GET, POST");  // GET with Upgrade: websocket.
  EXPECT_EQ(Post("/nowhere", "{}").status, 404);
  EXPECT_EQ(Post("/echo/a/b", "{}").status, 404);

  const CurlResult not_json = Post("/echo", R"({"id":1,)");
  EXPECT_EQ(not_json.status, 200);
  EXPECT_THAT(not_json.body, HasSubstr(R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,)"));
  EXPECT_THAT(Post("/echo", "[]").body, HasSubstr(R"("error":{"code":-32600,)"));
  const std::string item = R"({"jsonrpc":"2.0","id":1,"method":"getSlot"})";
  EXPECT_THAT(Post("/echo", absl::StrCat("[", item, ",", item, ",", item, ",", item, "]")).body,
              HasSubstr("a batch may have at most 3 calls, got 4"));
  EXPECT_EQ(Post("/echo", R"({"jsonrpc":"2.0","id":1,"method":"getSlot","params":5})").body,
            R"({"jsonrpc":"2.0","id":1,"error":{"code":-32602,)"
            R"("message":"params: must be a JSON array or object"}})");
  EXPECT_EQ(Post("/echo", R"({"jsonrpc":"2.0","id":2,"method":"bad method"})").body.substr(0, 47),
            R"({"jsonrpc":"2.0","id":2,"error":{"code":-32600,)");
  EXPECT_EQ(
      Post("/echo", R"({"jsonrpc":"2.0","id":3})").body,
      R"({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"method: is required"}})");
  const CurlResult too_large =
      Post("/echo", absl::StrCat(R"({"id":1,"method":"m","params":[")",
                                 std::string(kMaxBodyBytes, 'x'), R"("]})"));
  EXPECT_EQ(too_large.status, 413);
  EXPECT_EQ(provider_->requests().size(), before);
  // Counted: the parse error, the empty and the long batch, the three bad
  // calls; the two unknown paths.
  EXPECT_EQ(rejected("INVALID_ARGUMENT") - invalid_before, 6);
  EXPECT_EQ(rejected("NOT_FOUND") - not_found_before, 2);
}

}  // namespace
}  // namespace switchboard::testing
