// ws::WebSocketClient against the scripted WebSocket provider
// (tests/testing/ws_provider.py through WsProviderServer), on a real
// dispatcher thread: the upgrade with its path and headers, JSON-RPC
// answers and notifications byte for byte, closes by either side, the
// ping/pong keepalive, the message and queue limits, connect failures, and
// (wss:// is in websocket_client_tls_test.cc). Each suite has one provider,
// reset before each test.
//
// The client lives on the dispatcher thread: the test drives it there with
// RunOnDispatcher and waits for the observer's callbacks through Recorder.
// No gRPC here, so the TSan stage of scripts/test.sh runs these too.
#include "server/ws/websocket_client.h"

#include "tests/integration/ws/websocket_client_fixture.h"

namespace switchboard::ws::client_test {
namespace {

class WebSocketClientTest : public WebSocketClientTestBase {
 protected:
  static void SetUpTestSuite() { StartProvider(); }
  static void TearDownTestSuite() { StopProvider(); }
};

TEST_F(WebSocketClientTest, OpensWithThePathQueryAndHeaders) {
  WebSocketClientOptions options;
  options.headers = {{"Authorization", "Bearer token-1"}};
  ASSERT_THAT(Open(provider().url() + "/v2/key-1?api-key=key-2", options), IsOk());

  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 1);
  EXPECT_THAT(stats->paths, ElementsAre(Pair(1, "/v2/key-1?api-key=key-2")));
  EXPECT_THAT(stats->authorizations, ElementsAre(Pair(1, "Bearer token-1")));
  EXPECT_EQ(recorder_.opens(), 1);
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTest, SubscribeAnswerAndNotificationArriveByteForByte) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(7);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(recorder_.WaitForTexts(1), ElementsAre(ResultAnswer(*sub, 7)));

  // Spacing, escapes and UTF-8 exactly as the provider wrote them.
  const std::string result = R"({ "slot":42,"parent":41, "note":"caf\u00e9 ü \"q\"" })";
  ASSERT_THAT(provider().Notify("slotSubscribe", result), StatusIs(absl::StatusCode::kOk));
  EXPECT_THAT(recorder_.WaitForTexts(2),
              ElementsAre(ResultAnswer(*sub, 7), SlotNotification(result, *sub)));

  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  EXPECT_EQ(stats->subscribes[0].method, "slotSubscribe");
  EXPECT_EQ(stats->subscribes[0].params, "null");
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTest, CloseSendsCloseFrame1000AndNoCallbackFollows) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  CloseClient();
  // The provider answers the close frame and ends the TCP connection (after
  // its 2 s close timeout: the client keeps its socket until destroyed).
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
  EXPECT_THAT(Send(SlotSubscribe(1)), StatusIs(absl::StatusCode::kFailedPrecondition));
  // "No callback follows": none within a while after the provider ended
  // the connection, whose end the client sees meanwhile.
  EXPECT_EQ(recorder_.WaitForClosed(absl::Milliseconds(500)), std::nullopt);
  EXPECT_EQ(recorder_.opens(), 1);
}

// Close() hands the close frame to the bufferevent, which writes from the
// loop; destroying the client right after (as SubscriptionHub's destructor
// does) still writes it out before the socket closes.
TEST_F(WebSocketClientTest, CloseThenDestroyStillSendsTheCloseFrame) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  RunOnDispatcher(dispatcher_, [this] {
    client_->Close();
    client_.reset();
  });
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
}

TEST_F(WebSocketClientTest, SendTextBeforeOpenIsRefused) {
  absl::Status sent;
  RunOnDispatcher(dispatcher_, [&] {
    absl::StatusOr<std::unique_ptr<WebSocketClient>> client =
        WebSocketClient::Connect(dispatcher_, provider().url(), {}, recorder_);
    ASSERT_THAT(client, IsOk());
    client_ = *std::move(client);
    // The handshake cannot have ended inside this closure.
    sent = client_->SendText(SlotSubscribe(1));
  });
  EXPECT_THAT(sent, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not open")));
  ASSERT_THAT(recorder_.WaitForOpen(), IsOk());
  EXPECT_THAT(Send(SlotSubscribe(2)), IsOk());
  EXPECT_THAT(recorder_.WaitForTexts(1), ElementsAre(HasSubstr(R"("id":2})")));
}

TEST_F(WebSocketClientTest, SendTextWorksInsideOnOpenAndOnText) {
  // Inside OnOpen: a subscribe; inside OnText, on its answer: the
  // unsubscribe of the id it carries (the in-read path of SendText).
  recorder_.on_open = [this] { EXPECT_THAT(client_->SendText(SlotSubscribe(1)), IsOk()); };
  recorder_.on_text = [this](absl::string_view message) {
    const absl::string_view prefix = R"({"jsonrpc":"2.0","result":)";
    const absl::string_view suffix = R"(,"id":1})";
    if (!absl::StartsWith(message, prefix) || !absl::EndsWith(message, suffix)) return;
    const absl::string_view sub =
        message.substr(prefix.size(), message.size() - prefix.size() - suffix.size());
    EXPECT_THAT(client_->SendText(absl::StrCat(
                    R"({"jsonrpc":"2.0","id":2,"method":"slotUnsubscribe","params":[)", sub, "]}")),
                IsOk());
  };
  ASSERT_THAT(Connect(provider().url()), IsOk());

  absl::StatusOr<WsProviderStats> stats = provider().WaitFor(
      [](const WsProviderStats& s) { return !s.unsubscribes.empty(); }, kWait, "the unsubscribe");
  ASSERT_THAT(stats, IsOk());
  ASSERT_THAT(stats->subscribes, SizeIs(1));
  ASSERT_THAT(stats->unsubscribes, SizeIs(1));
  EXPECT_EQ(stats->unsubscribes[0].sub, stats->subscribes[0].sub);
  EXPECT_TRUE(stats->unsubscribes[0].known);
  EXPECT_THAT(recorder_.WaitForTexts(2),
              ElementsAre(ResultAnswer(stats->subscribes[0].sub, 1), ResultAnswer("true", 2)));
}

TEST_F(WebSocketClientTest, AbruptCloseByTheProviderIsUnavailableOnce) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().Close(), IsOkAndHolds(1));

  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "no OnClosed within " << kWait;
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1")));
  EXPECT_THAT(Send(SlotSubscribe(1)), StatusIs(absl::StatusCode::kFailedPrecondition));
  CloseClient();  // After the end: nothing to do, no callback.
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_THAT(recorder_.closes(), SizeIs(1));
}

TEST_F(WebSocketClientTest, CleanCloseByTheProviderNamesItsCode) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().CloseClean(), IsOkAndHolds(1));

  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "no OnClosed within " << kWait;
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kUnavailable, HasSubstr("(1001)")));
}

// The client answers the provider's close frame with its code. The
// provider waits for the client's TCP close up to its close timeout (2 s):
// the client keeps its socket until destroyed.
TEST_F(WebSocketClientTest, CleanCloseByTheProviderIsAnswered) {
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().CloseClean(), IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1001);
}

// The answer to the provider's close frame waits in the bufferevent's
// output when OnClosed runs; an observer that destroys the client there (as
// SubscriptionHub does) still sends it.
TEST_F(WebSocketClientTest, CleanCloseByTheProviderIsAnsweredWhenDestroyedInOnClosed) {
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().CloseClean(), IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1001);
}

TEST_F(WebSocketClientTest, ObserverMayDestroyTheClientInsideOnClosed) {
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  ASSERT_THAT(Open(provider().url()), IsOk());
  ASSERT_THAT(provider().Close(), IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  bool destroyed = false;
  RunOnDispatcher(dispatcher_, [&] { destroyed = client_ == nullptr; });
  EXPECT_TRUE(destroyed);
  EXPECT_THAT(recorder_.closes(), SizeIs(1));
}

TEST_F(WebSocketClientTest, KeepaliveKeepsAnAnsweringProviderOpen) {
  // A ping after each quiet 100 ms, answered well within 1.5 s: over 3.5 s
  // at least two pings go out and are answered.
  WebSocketClientOptions options;
  options.ping_interval = absl::Milliseconds(100);
  options.pong_timeout = absl::Milliseconds(1500);
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  EXPECT_EQ(recorder_.WaitForClosed(absl::Milliseconds(3500)), std::nullopt);
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  EXPECT_THAT(recorder_.WaitForTexts(1), ElementsAre(ResultAnswer(*sub, 1)));
}

TEST_F(WebSocketClientTest, KeepaliveEndsAFrozenProvidersConnection) {
  WebSocketClientOptions options;
  options.ping_interval = absl::Milliseconds(200);
  options.pong_timeout = absl::Milliseconds(300);
  // The subscription hub's way: the client goes inside OnClosed, here
  // inside the keepalive timer's own callback.
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  ASSERT_THAT(provider().Freeze(), IsOkAndHolds(1));

  const absl::Time frozen = absl::Now();
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "the frozen connection stayed open for " << kWait;
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                HasSubstr("no answer to a WebSocket ping within 300ms")));
  std::cerr << "closed " << absl::FormatDuration(absl::Now() - frozen)
            << " after the freeze (ping 200ms, pong timeout 300ms)\n";
  EXPECT_THAT(recorder_.closes(), SizeIs(1));
}

TEST_F(WebSocketClientTest, MessageOverMaxMessageBytesClosesWith1009) {
  constexpr size_t kLimit = 64 << 10;
  WebSocketClientOptions options;
  options.max_message_bytes = kLimit;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(recorder_.WaitForTexts(1), SizeIs(1));

  // A JSON string result padded so that the whole message is `size` bytes.
  const auto result_of_size = [&](size_t size) {
    const size_t frame = SlotNotification("\"\"", *sub).size();
    return absl::StrCat("\"", std::string(size - frame, 'x'), "\"");
  };
  const std::string at_limit = result_of_size(kLimit);
  ASSERT_THAT(provider().Notify("slotSubscribe", at_limit), IsOkAndHolds(1));
  std::vector<std::string> texts = recorder_.WaitForTexts(2);
  ASSERT_THAT(texts, SizeIs(2));
  EXPECT_EQ(texts[1].size(), kLimit);
  EXPECT_EQ(texts[1], SlotNotification(at_limit, *sub));

  ASSERT_THAT(provider().Notify("slotSubscribe", result_of_size(kLimit + 1)), IsOkAndHolds(1));
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value()) << "a message over the limit did not end the connection";
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kUnavailable,
                                AnyOf(HasSubstr("1009"), HasSubstr("limit"))));
  EXPECT_THAT(recorder_.texts(), SizeIs(2));  // The large one never came through.
}

// The client tells the provider why: close frame 1009.
TEST_F(WebSocketClientTest, MessageOverMaxMessageBytesSends1009) {
  WebSocketClientOptions options;
  options.max_message_bytes = 1024;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(provider().Notify("slotSubscribe", absl::StrCat("\"", std::string(2048, 'x'), "\"")),
              IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1009);
}

// As above: the close frame 1009 still goes out when the observer destroys
// the client inside OnClosed.
TEST_F(WebSocketClientTest, MessageOverMaxMessageBytesSends1009WhenDestroyedInOnClosed) {
  recorder_.on_closed = [this](const absl::Status&) { client_.reset(); };
  WebSocketClientOptions options;
  options.max_message_bytes = 1024;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  ASSERT_THAT(provider().Notify("slotSubscribe", absl::StrCat("\"", std::string(2048, 'x'), "\"")),
              IsOkAndHolds(1));
  ASSERT_TRUE(recorder_.WaitForClosed().has_value());
  EXPECT_EQ(CloseCodeAtProvider(1), 1009);
}

TEST_F(WebSocketClientTest, SendTextBeyondMaxQueuedBytesIsRefused) {
  constexpr size_t kLimit = 64 << 10;
  WebSocketClientOptions options;
  options.max_queued_bytes = kLimit;
  ASSERT_THAT(Open(provider().url(), options), IsOk());

  // One message larger than the limit on its own.
  EXPECT_THAT(Send(std::string(kLimit + 1, ' ')),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("65536 bytes")));

  // Two that fit alone but not together: the bufferevent writes only from
  // the loop, so within one closure on the dispatcher the first still waits
  // when the second comes.
  const std::string big =
      absl::StrCat(R"({"jsonrpc":"2.0","id":1,"method":"slotSubscribe",)", R"("params":[{"pad":")",
                   std::string(kLimit - 1024, 'p'), R"("}]})");
  absl::Status first;
  absl::Status second;
  size_t queued = 0;
  RunOnDispatcher(dispatcher_, [&] {
    first = client_->SendText(big);
    queued = client_->queued_bytes();
    second = client_->SendText(SlotSubscribe(2) + std::string(2048, ' '));
  });
  EXPECT_THAT(first, IsOk());
  EXPECT_GE(queued, big.size());
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kResourceExhausted,
                               AllOf(HasSubstr("65536 bytes"), HasSubstr("waiting"))));

  // Once the provider has read it all (it answered), the queue is empty and
  // SendText takes messages again; the refused one never went out.
  ASSERT_THAT(recorder_.WaitForTexts(1), ElementsAre(HasSubstr(R"("id":1})")));
  EXPECT_EQ(QueuedBytes(), 0u);
  EXPECT_THAT(Send(SlotSubscribe(3)), IsOk());
  std::vector<std::string> texts = recorder_.WaitForTexts(2);
  ASSERT_THAT(texts, SizeIs(2));
  EXPECT_THAT(texts[1], HasSubstr(R"("id":3})"));
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

TEST_F(WebSocketClientTest, ConnectionRefusedIsUnavailableWithTheUrlMasked) {
  absl::StatusOr<LoopbackSocket> refusing = BindRefusingPort();
  ASSERT_THAT(refusing, IsOk());
  const std::string host = absl::StrCat("127.0.0.1:", refusing->port);
  ASSERT_THAT(Connect(absl::StrCat("ws://", host, "/v2/secret-key-1?api-key=secret-key-2")),
              IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  close(refusing->fd);
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(absl::StrCat("ws://", host, "/***/***?api-key=***")),
                             Not(HasSubstr("secret")))));
  EXPECT_EQ(recorder_.opens(), 0);
}

TEST_F(WebSocketClientTest, NoUpgradeAnswerWithinConnectTimeoutIsDeadlineExceeded) {
  // A listener that never accepts: the TCP connect succeeds (the kernel
  // queues it), the upgrade is never answered.
  absl::StatusOr<LoopbackSocket> silent = ListenOnLoopback(4);
  ASSERT_THAT(silent, IsOk());
  WebSocketClientOptions options;
  options.connect_timeout = absl::Milliseconds(300);
  ASSERT_THAT(Connect(absl::StrCat("ws://127.0.0.1:", silent->port), options), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  close(silent->fd);
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed, StatusIs(absl::StatusCode::kDeadlineExceeded,
                                HasSubstr("no WebSocket connection within 300ms")));
  EXPECT_EQ(recorder_.opens(), 0);
}

TEST_F(WebSocketClientTest, BadUrlIsRefusedByConnect) {
  EXPECT_THAT(Connect("http://127.0.0.1:1/"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(Connect("ws://127.0.0.1:0/"), StatusIs(absl::StatusCode::kInvalidArgument));
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_EQ(recorder_.opens(), 0);
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

}  // namespace
}  // namespace switchboard::ws::client_test
