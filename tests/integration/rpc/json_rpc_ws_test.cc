// The JSON-RPC front door's WebSocket side (issue 14): WebSocket clients
// connect to `ws://.../<upstream>` of an in-process Switchboard and speak
// JSON-RPC as a web3 client's WebSocket provider does. Their subscriptions
// share the upstream subscriptions of Rpc.Subscribe at a scripted WebSocket
// provider (tests/testing/ws_provider.py); their calls go to a
// ScriptedHttpServer through the Rpc pipeline. The provider and the HTTP
// upstream start once for the suite; each test starts its own Switchboard.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/substitute.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "server/ws/websocket_client.h"
#include "switchboard/v1/rpc.grpc.pb.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/ws_provider_test.h"

namespace switchboard::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr absl::Duration kPatience = absl::Seconds(20);
// Node.js, and the web3 client (ethers) that scripts/setup.sh installs.
constexpr char kNodeBinary[] = "/usr/bin/node";
constexpr char kWatchBlocksScript[] = WEB3_CLIENT_DIR "/watch_blocks.mjs";

// One WebSocket client of the front door, on the test's dispatcher; what
// it receives is read from the test thread.
class FrontDoorClient final : public ws::WebSocketObserver {
 public:
  FrontDoorClient(event::DispatcherImpl& dispatcher, std::string url, std::string token)
      : dispatcher_(dispatcher) {
    ws::WebSocketClientOptions options;
    if (!token.empty()) options.headers.emplace_back("Authorization", "Bearer " + token);
    RunOnDispatcher(dispatcher_, [&] {
      absl::StatusOr<std::unique_ptr<ws::WebSocketClient>> client =
          ws::WebSocketClient::Connect(dispatcher_, url, options, *this);
      if (client.ok()) client_ = *std::move(client);
    });
  }
  ~FrontDoorClient() override {
    RunOnDispatcher(dispatcher_, [&] { client_.reset(); });
  }

  void OnOpen() override {
    absl::MutexLock lock(&mu_);
    open_ = true;
  }
  void OnText(absl::string_view message) override {
    absl::MutexLock lock(&mu_);
    texts_.emplace_back(message);
  }
  void OnClosed(absl::Status why) override {
    absl::MutexLock lock(&mu_);
    closed_ = std::move(why);
  }

  // Waits until the connection opened; its end status if it ended instead.
  absl::Status AwaitOpen() {
    absl::MutexLock lock(&mu_);
    const auto done = [this] {
      mu_.AssertReaderHeld();
      return open_ || closed_.has_value();
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), kPatience)) {
      return absl::DeadlineExceededError("not open in time");
    }
    return open_ ? absl::OkStatus() : *closed_;
  }

  void Send(std::string text) {
    RunOnDispatcher(dispatcher_, [&] { EXPECT_THAT(client_->SendText(text), IsOk()); });
  }

  // The next message received (after those taken before); empty after the
  // patience ran out.
  std::string Next() {
    absl::MutexLock lock(&mu_);
    const auto arrived = [this] {
      mu_.AssertReaderHeld();
      return texts_.size() > taken_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), kPatience)) return "";
    return texts_[taken_++];
  }

  // Sends `request` and returns the next message: its answer.
  std::string Ask(std::string request) {
    Send(std::move(request));
    return Next();
  }

 private:
  event::DispatcherImpl& dispatcher_;
  std::unique_ptr<ws::WebSocketClient> client_;  // Dispatcher thread.
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> closed_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> texts_ ABSL_GUARDED_BY(mu_);
  size_t taken_ ABSL_GUARDED_BY(mu_) = 0;
};

class JsonRpcWebSocketTest : public WsProviderTest {
 protected:
  static void SetUpTestSuite() {
    WsProviderTest::SetUpTestSuite();
    ScriptedHttpServer::Script script;
    script.echo_params = true;
    script.results = {{"eth_blockNumber", R"("0x10")"}, {"eth_chainId", R"("0x1")"}};
    absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> http = ScriptedHttpServer::Start(script);
    if (http.ok()) http_ = *std::move(http);
  }
  static void TearDownTestSuite() {
    WsProviderTest::TearDownTestSuite();
    http_.reset();
  }

  JsonRpcWebSocketTest() : dispatcher_("ws-clients", common::RealClock::Get()) {
    dispatcher_.Start();
  }

  void SetUp() override {
    WsProviderTest::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_NE(http_, nullptr) << "the HTTP upstream did not start";
    absl::StatusOr<InProcessServer> server = StartInProcessServer(absl::Substitute(
        R"(
server:
  json_rpc_listen: "127.0.0.1:0"
  json_rpc_http: {max_subscriptions_per_websocket: 3}
clients:
  - {id: worker, token: "t0ken-1"}
upstreams:
  - {name: sol, urls: ["$0"], max_connections: 2, ws_urls: ["$1"],
     subscriptions: {linger_ms: 200, buffer: 8, overflow: drop_oldest}}
  - {name: plain, urls: ["$0"]}
)",
        http_->url(), provider_->url()));
    ASSERT_THAT(server, IsOk());
    server_ = *std::move(server);
    port_ = server_.server->json_rpc_port();
    ASSERT_GT(port_, 0);
  }

  std::unique_ptr<FrontDoorClient> Connect(absl::string_view path = "/sol",
                                           std::string token = "t0ken-1") {
    return std::make_unique<FrontDoorClient>(
        dispatcher_, absl::StrCat("ws://127.0.0.1:", port_, path), std::move(token));
  }

  static inline std::unique_ptr<ScriptedHttpServer> http_;
  event::DispatcherImpl dispatcher_;
  InProcessServer server_;
  int port_ = 0;
};

TEST_F(JsonRpcWebSocketTest, TenClientsAndAGrpcStreamShareOneUpstreamSubscription) {
  std::vector<std::unique_ptr<FrontDoorClient>> clients;
  for (int i = 0; i < 10; ++i) {
    clients.push_back(Connect());
    ASSERT_THAT(clients.back()->AwaitOpen(), IsOk());
    EXPECT_EQ(clients.back()->Ask(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})"),
              R"({"jsonrpc":"2.0","id":1,"result":1})");
  }
  // A worker on gRPC watching the same: the same upstream subscription.
  std::unique_ptr<v1::Rpc::Stub> worker =
      v1::Rpc::NewStub(grpc::CreateChannel(server_.target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer t0ken-1");
  v1::RpcSubscribeRequest request;
  request.set_upstream("sol");
  request.set_method("slotSubscribe");
  std::unique_ptr<grpc::ClientReader<v1::RpcNotification>> stream =
      worker->Subscribe(&context, request);
  stream->WaitForInitialMetadata();

  EXPECT_THAT(ScrapeMetric(server_.metrics_port, "switchboard_json_rpc_websockets"),
              IsOkAndHolds(10));
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1) << stats->DebugString();
  EXPECT_THAT(stats->subscribes, SizeIs(1)) << stats->DebugString();

  ASSERT_THAT(provider_->Notify("slotSubscribe", R"({"parent":4,"root":3,"slot":5})"),
              IsOkAndHolds(1));
  for (auto& client : clients) {
    EXPECT_EQ(client->Next(), R"({"jsonrpc":"2.0","method":"slotNotification","params":{"result":)"
                              R"({"parent":4,"root":3,"slot":5},"subscription":1}})");
  }
  v1::RpcNotification notification;
  ASSERT_TRUE(stream->Read(&notification));
  EXPECT_EQ(notification.result_json(), R"({"parent":4,"root":3,"slot":5})");
  context.TryCancel();
}

TEST_F(JsonRpcWebSocketTest,
       UnsubscribeAnswersTrueOnceAndTheUpstreamSubscriptionGoesAfterTheLinger) {
  std::unique_ptr<FrontDoorClient> client = Connect();
  ASSERT_THAT(client->AwaitOpen(), IsOk());
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":"a","method":"accountSubscribe","params":["A"]})"),
            R"({"jsonrpc":"2.0","id":"a","result":1})");
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":"b","method":"accountSubscribe","params":["B"]})"),
            R"({"jsonrpc":"2.0","id":"b","result":2})");
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":3,"method":"accountUnsubscribe","params":[1]})"),
            R"({"jsonrpc":"2.0","id":3,"result":true})");
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":4,"method":"accountUnsubscribe","params":[1]})"),
            R"({"jsonrpc":"2.0","id":4,"result":false})");
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.unsubscribes.empty(); },
                         kPatience, "the unsubscribe after the linger");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->unsubscribes, SizeIs(1)) << stats->DebugString();
  EXPECT_EQ(stats->unsubscribes[0].method, "accountUnsubscribe");
  EXPECT_TRUE(stats->unsubscribes[0].known);
  // The other subscription is alive.
  ASSERT_THAT(provider_->Notify("accountSubscribe", "7", R"(["B"])"), IsOkAndHolds(1));
  EXPECT_EQ(client->Next(),
            R"({"jsonrpc":"2.0","method":"accountNotification","params":{"result":7,)"
            R"("subscription":2}})");
}

TEST_F(JsonRpcWebSocketTest, EthSubscribeGetsAHexIdAndCallsGoThroughTheRpcPipeline) {
  std::unique_ptr<FrontDoorClient> client = Connect();
  ASSERT_THAT(client->AwaitOpen(), IsOk());
  EXPECT_EQ(
      client->Ask(R"({"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]})"),
      R"({"jsonrpc":"2.0","id":1,"result":"0x1"})");
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":9,"method":"eth_blockNumber","params":[]})"),
            R"({"jsonrpc":"2.0","id":9,"result":"0x10"})");
  ASSERT_THAT(provider_->Notify("eth_subscribe", R"({"number":"0x11"})"), IsOkAndHolds(1));
  EXPECT_EQ(client->Next(),
            R"({"jsonrpc":"2.0","method":"eth_subscription","params":{"result":{"number":"0x11"},)"
            R"("subscription":"0x1"}})");
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":2,"method":"eth_unsubscribe","params":["0x1"]})"),
            R"({"jsonrpc":"2.0","id":2,"result":true})");
}

TEST_F(JsonRpcWebSocketTest, BadInputGetsJsonRpcErrorsAndTheConnectionGoesOn) {
  std::unique_ptr<FrontDoorClient> client = Connect();
  ASSERT_THAT(client->AwaitOpen(), IsOk());
  EXPECT_THAT(client->Ask("{not json"), HasSubstr(R"("error":{"code":-32700)"));
  EXPECT_THAT(client->Ask(R"([{"jsonrpc":"2.0","id":1,"method":"getSlot"}])"),
              HasSubstr("batches are not served over WebSocket"));
  EXPECT_THAT(client->Ask(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe","params":[1,)"),
              HasSubstr(R"("error":{"code":-32700)"));
  EXPECT_THAT(client->Ask(R"({"jsonrpc":"2.0","id":2,"method":"slotSubscribe","params":7})"),
              HasSubstr(R"({"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"params)"));
  for (int i = 0; i < 3; ++i) {
    client->Ask(
        absl::StrCat(R"({"jsonrpc":"2.0","id":1,"method":"accountSubscribe","params":[)", i, "]}"));
  }
  EXPECT_THAT(client->Ask(R"({"jsonrpc":"2.0","id":5,"method":"rootSubscribe"})"),
              HasSubstr("max_subscriptions_per_websocket"));
  // Still serving.
  EXPECT_EQ(client->Ask(R"({"jsonrpc":"2.0","id":9,"method":"eth_blockNumber"})"),
            R"({"jsonrpc":"2.0","id":9,"result":"0x10"})");

  std::unique_ptr<FrontDoorClient> plain = Connect("/plain");
  ASSERT_THAT(plain->AwaitOpen(), IsOk());
  EXPECT_THAT(plain->Ask(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})"),
              HasSubstr(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32601,)"));

  EXPECT_THAT(Connect("/sol", "wrong")->AwaitOpen(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("401")));
  EXPECT_THAT(Connect("/nope")->AwaitOpen(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("404")));
}

TEST_F(JsonRpcWebSocketTest, TwentyHttpClientsAndTenWebSocketsShareTheProvidersConnections) {
  const int connections_before = http_->connections();
  const size_t requests_before = http_->requests().size();
  // The calls' answers wait, so that all 20 are in flight at once.
  http_->HoldAnswers();
  std::vector<RunResult> posts(20);
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([this, i, &posts] {
      posts[i] = testing::Run(
          {"/usr/bin/curl", "-sS", "--data-binary", "@-", "-H", "Authorization: Bearer t0ken-1",
           absl::StrCat("http://127.0.0.1:", port_, "/sol")},
          absl::StrCat(R"({"jsonrpc":"2.0","id":)", i, R"(,"method":"getBalance","params":[)", i,
                       "]}"),
          absl::Seconds(60));
    });
  }
  std::vector<std::unique_ptr<FrontDoorClient>> sockets;
  for (int i = 0; i < 10; ++i) {
    sockets.push_back(Connect());
    ASSERT_THAT(sockets.back()->AwaitOpen(), IsOk());
    // Two distinct subscriptions, five sockets each.
    EXPECT_EQ(
        sockets.back()->Ask(absl::StrCat(
            R"({"jsonrpc":"2.0","id":1,"method":"accountSubscribe","params":[)", i % 2, "]}")),
        R"({"jsonrpc":"2.0","id":1,"result":1})");
  }
  // Two requests reach the provider, one per connection (max_connections);
  // the rest wait for a free connection.
  EXPECT_TRUE(http_->WaitForRequests(requests_before + 2, kPatience));
  EXPECT_EQ(http_->requests().size(), requests_before + 2);
  http_->ReleaseAnswers();
  for (std::thread& client : clients) client.join();
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(posts[i].stdout_text,
              absl::StrCat(R"({"jsonrpc":"2.0","id":)", i, R"(,"result":[)", i, "]}"))
        << posts[i].stderr_text;
  }
  EXPECT_EQ(http_->connections() - connections_before, 2);
  absl::StatusOr<WsProviderStats> stats = provider_->Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1) << stats->DebugString();
  EXPECT_THAT(stats->subscribes, SizeIs(2)) << stats->DebugString();
}

// A WebSocket client on a raw socket that subscribes and then never reads.
class StalledSocket {
 public:
  explicit StalledSocket(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    const int small = 4096;  // So that little fills it.
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~StalledSocket() { close(fd_); }

  // Upgrades, reads the 101 and sends `request` in one masked text frame.
  bool Subscribe(const std::string& request) {
    const std::string upgrade =
        "GET /sol/t0ken-1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: "
        "Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
        "13\r\n\r\n";
    if (!connected_ || write(fd_, upgrade.data(), upgrade.size()) != ssize_t(upgrade.size())) {
      return false;
    }
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && read(fd_, &c, 1) == 1) head += c;
    if (!absl::StartsWith(head, "HTTP/1.1 101")) return false;
    // FIN + text; masked, with a zero mask, so the payload goes as it is.
    std::string frame = {'\x81', static_cast<char>(0x80 | request.size()), 0, 0, 0, 0};
    frame += request;
    return request.size() < 126 && write(fd_, frame.data(), frame.size()) == ssize_t(frame.size());
  }

 private:
  const int fd_;
  bool connected_ = false;
};

TEST_F(JsonRpcWebSocketTest, ASocketThatStopsReadingDropsByItsOverflowPolicyAlone) {
  StalledSocket stalled(port_);
  ASSERT_TRUE(stalled.Subscribe(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})"));
  std::unique_ptr<FrontDoorClient> reader = Connect();
  ASSERT_THAT(reader->AwaitOpen(), IsOk());
  // Shared with the stalled socket's: live once it answers.
  EXPECT_EQ(reader->Ask(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe"})"),
            R"({"jsonrpc":"2.0","id":1,"result":1})");
  // Far more than the kernel's socket buffers, the connection's hold
  // threshold and the 8 buffered notifications can take.
  const std::string payload(128 * 1024, 'x');
  for (int i = 0; i < 150; ++i) {
    const std::string result = absl::StrCat(R"({"n":)", i, R"(,"pad":")", payload, R"("})");
    ASSERT_THAT(provider_->Notify("slotSubscribe", result), IsOkAndHolds(1));
    // The reader keeps up: it gets each one, in order, before the next.
    ASSERT_EQ(reader->Next(),
              absl::StrCat(R"({"jsonrpc":"2.0","method":"slotNotification",)",
                           R"("params":{"result":)", result, R"(,"subscription":1}})"));
  }
  // The stalled socket's subscription dropped what its buffer could not
  // hold; Switchboard kept serving.
  absl::StatusOr<double> dropped = ScrapeMetric(
      server_.metrics_port, R"(switchboard_ws_notifications_dropped_total{upstream="sol"})");
  ASSERT_THAT(dropped, IsOk());
  EXPECT_GT(*dropped, 0);
  EXPECT_EQ(reader->Ask(R"({"jsonrpc":"2.0","id":9,"method":"eth_blockNumber"})"),
            R"({"jsonrpc":"2.0","id":9,"result":"0x10"})");
}

TEST_F(JsonRpcWebSocketTest, AnUnmodifiedEthersWebSocketProviderWatchesBlocks) {
  // ethers subscribes to newHeads through the front door and prints each
  // block number the provider announces, until it has three.
  RunResult watched;
  std::thread watcher([&] {
    watched = testing::Run({kNodeBinary, kWatchBlocksScript,
                            absl::StrCat("ws://127.0.0.1:", port_, "/sol/t0ken-1"), "3"},
                           std::nullopt, absl::Seconds(60));
  });
  absl::StatusOr<WsProviderStats> stats =
      provider_->WaitFor([](const WsProviderStats& s) { return !s.subscribes.empty(); },
                         absl::Seconds(30), "ethers' eth_subscribe");
  EXPECT_THAT(stats, IsOk());
  if (stats.ok()) {
    EXPECT_EQ(stats->subscribes[0].method, "eth_subscribe");
    EXPECT_EQ(stats->subscribes[0].params, R"(["newHeads"])");
    for (const char* number : {"0x11", "0x12", "0x13"}) {
      EXPECT_THAT(provider_->Notify("eth_subscribe",
                                    absl::StrCat(R"({"number":")", number, R"(","hash":"0xab"})")),
                  IsOkAndHolds(1));
    }
  }
  watcher.join();
  EXPECT_EQ(watched.exit_code, 0) << watched.stderr_text;
  EXPECT_EQ(watched.stdout_text, "17\n18\n19\n") << watched.stderr_text;
}

}  // namespace
}  // namespace switchboard::testing
