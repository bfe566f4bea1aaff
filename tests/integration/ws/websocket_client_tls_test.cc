// ws::WebSocketClient over wss:// against the scripted provider in TLS mode:
// certificates from TestCertificates (a CA of the test's own), verification
// of the chain and of the host name or IP, and what turning it off allows.
// Each suite has one provider, reset before each test.
#include "tests/integration/ws/websocket_client_fixture.h"

namespace switchboard::ws::client_test {
namespace {

// wss:// with a certificate for IP:127.0.0.1 from a test CA.
class WebSocketClientTlsTest : public WebSocketClientTestBase {
 protected:
  static void SetUpTestSuite() { StartTlsProvider("/CN=provider", "IP:127.0.0.1"); }

  // Makes a test CA and a certificate for `subject` and `sans`, and starts
  // the provider with it.
  static void StartTlsProvider(const std::string& subject, const std::string& sans) {
    absl::StatusOr<std::unique_ptr<TestCertificates>> certificates = TestCertificates::Create();
    if (!certificates.ok()) {
      start_error_ = certificates.status().ToString();
      return;
    }
    certificates_ = certificates->release();
    absl::StatusOr<TestCertificates::Issued> issued =
        certificates_->Issue("provider", subject, sans);
    if (!issued.ok()) {
      start_error_ = issued.status().ToString();
      return;
    }
    StartProvider(WsProviderOptions{issued->cert_file, issued->key_file});
  }

  static void TearDownTestSuite() {
    StopProvider();
    delete certificates_;
    certificates_ = nullptr;
  }

  static WebSocketClientOptions VerifiedBy(const std::string& ca_file) {
    WebSocketClientOptions options;
    options.ca_file = ca_file;
    return options;
  }

  static TestCertificates* certificates_;
};

TestCertificates* WebSocketClientTlsTest::certificates_ = nullptr;

TEST_F(WebSocketClientTlsTest, VerifiedWithTheTestCaCarriesJsonRpc) {
  ASSERT_THAT(provider().url(), StartsWith("wss://127.0.0.1:"));
  ASSERT_THAT(Open(provider().url() + "/v1", VerifiedBy(certificates_->ca_file())), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  const std::string result = R"({"slot":7})";
  ASSERT_THAT(provider().Notify("slotSubscribe", result), IsOkAndHolds(1));
  EXPECT_THAT(recorder_.WaitForTexts(2),
              ElementsAre(ResultAnswer(*sub, 1), SlotNotification(result, *sub)));
  CloseClient();
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

// The close frame still waits in the TLS bufferevent's output (as
// plaintext) when the client is destroyed: it goes out as a TLS record then.
TEST_F(WebSocketClientTlsTest, CloseThenDestroyStillSendsTheCloseFrame) {
  ASSERT_THAT(Open(provider().url(), VerifiedBy(certificates_->ca_file())), IsOk());
  RunOnDispatcher(dispatcher_, [this] {
    client_->Close();
    client_.reset();
  });
  EXPECT_EQ(CloseCodeAtProvider(1), 1000);
}

TEST_F(WebSocketClientTlsTest, LargeMessageArrivesWhole) {
  // Many TLS records (16 KiB each) and reads make up one message.
  ASSERT_THAT(Open(provider().url(), VerifiedBy(certificates_->ca_file())), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  std::string result = "\"";
  for (int i = 0; result.size() < (1 << 20); ++i) absl::StrAppend(&result, i, ",");
  result += "\"";
  ASSERT_THAT(provider().Notify("slotSubscribe", result), IsOkAndHolds(1));
  std::vector<std::string> texts = recorder_.WaitForTexts(2);
  ASSERT_THAT(texts, SizeIs(2));
  EXPECT_TRUE(texts[1] == SlotNotification(result, *sub))
      << "got " << texts[1].size() << " bytes, not the " << SlotNotification(result, *sub).size()
      << " sent";
}

TEST_F(WebSocketClientTlsTest, SystemTrustStoreRejectsTheTestCa) {
  ASSERT_THAT(Connect(provider().url(), WebSocketClientOptions()), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify failed")));
  EXPECT_EQ(recorder_.opens(), 0);
  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 0);
}

TEST_F(WebSocketClientTlsTest, AnotherCaRejectsTheCertificate) {
  absl::StatusOr<std::unique_ptr<TestCertificates>> other =
      TestCertificates::Create("Another Test CA");
  ASSERT_THAT(other, IsOk());
  ASSERT_THAT(Connect(provider().url(), VerifiedBy((*other)->ca_file())), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify failed")));
  EXPECT_EQ(recorder_.opens(), 0);
}

TEST_F(WebSocketClientTlsTest, WithoutVerificationOpens) {
  WebSocketClientOptions options;
  options.tls_verify = false;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
  absl::StatusOr<std::string> sub = Subscribe(1);
  ASSERT_THAT(sub, IsOk());
  EXPECT_THAT(recorder_.WaitForTexts(1), ElementsAre(ResultAnswer(*sub, 1)));
}

TEST_F(WebSocketClientTlsTest, UnreadableCaFileIsRefusedByConnect) {
  EXPECT_THAT(Connect(provider().url(), VerifiedBy(certificates_->dir() + "/missing.pem")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("trusted certificates")));
  RunOnDispatcher(dispatcher_, [] {});
  EXPECT_THAT(recorder_.closes(), IsEmpty());
}

// wss:// with a certificate from the test CA for DNS:other.example only, so
// the name 127.0.0.1 does not match.
class WebSocketClientTlsNameTest : public WebSocketClientTlsTest {
 protected:
  static void SetUpTestSuite() { StartTlsProvider("/CN=other.example", "DNS:other.example"); }
};

TEST_F(WebSocketClientTlsNameTest, NameMismatchFailsVerification) {
  ASSERT_THAT(Connect(provider().url(), VerifiedBy(certificates_->ca_file())), IsOk());
  std::optional<absl::Status> closed = recorder_.WaitForClosed();
  ASSERT_TRUE(closed.has_value());
  EXPECT_THAT(*closed,
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("certificate verify failed")));
  EXPECT_EQ(recorder_.opens(), 0);
  absl::StatusOr<WsProviderStats> stats = provider().Stats();
  ASSERT_THAT(stats, IsOk());
  EXPECT_EQ(stats->opened, 0);
}

TEST_F(WebSocketClientTlsNameTest, NameMismatchOpensWithoutVerification) {
  WebSocketClientOptions options;
  options.tls_verify = false;
  ASSERT_THAT(Open(provider().url(), options), IsOk());
}

}  // namespace
}  // namespace switchboard::ws::client_test
