// amqps: AmqpConnection and AmqpBroker over TLS (rabbitmq-c's OpenSSL
// socket) against a node with a TLS listener, its certificate issued by a
// CA of the test's own (tests/testing/test_certificates.h) for the name
// "localhost". The connection verifies the certificate against
// AmqpConnectionOptions::ca_file and the host name: a broker whose
// certificate another CA signed, or whose name is not the one dialled, is
// refused, and the reason is in the connection's last error.
//
// One node for the suite (it boots in seconds), started with its TLS
// listener before the first test.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/broker/amqp/amqp_broker.h"
#include "server/broker/amqp/amqp_connection.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/rabbitmq_server.h"
#include "tests/testing/recording_sinks.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"

namespace switchboard::broker::amqp {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::RabbitMqServer;
using ::switchboard::testing::RecordingConsumerSink;
using ::switchboard::testing::RecordingObserver;
using ::switchboard::testing::TestCertificates;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(60);

// The states a connection went through, for waiting on one.
class StateLog final : public AmqpConnectionObserver {
 public:
  void OnStateChanged(AmqpConnectionState state, const absl::Status& error) override {
    absl::MutexLock lock(&mu_);
    last_ = state;
    last_error_ = absl::Status(error.code(), error.message());
    changed_.SignalAll();
  }

  // Waits until the connection is in `state`; its last error then.
  std::optional<absl::Status> WaitFor(AmqpConnectionState state) {
    const absl::Time deadline = absl::Now() + kWait;
    absl::MutexLock lock(&mu_);
    while (last_ != state) {
      if (changed_.WaitWithDeadline(&mu_, deadline) && last_ != state) return std::nullopt;
    }
    return last_error_;
  }

 private:
  absl::Mutex mu_;
  absl::CondVar changed_;
  AmqpConnectionState last_ ABSL_GUARDED_BY(mu_) = AmqpConnectionState::kConnecting;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
};

class AmqpTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<TestCertificates>> certificates = TestCertificates::Create();
    if (!certificates.ok()) {
      start_error() = certificates.status();
      return;
    }
    certificates_() = *std::move(certificates);
    absl::StatusOr<TestCertificates::Issued> issued =
        certificates_()->Issue("broker", "/CN=localhost", "DNS:localhost");
    if (!issued.ok()) {
      start_error() = issued.status();
      return;
    }
    absl::StatusOr<std::unique_ptr<RabbitMqServer>> node =
        RabbitMqServer::Start(RabbitMqServer::TlsListener{issued->cert_file, issued->key_file,
                                                          certificates_()->ca_file()});
    if (!node.ok()) {
      start_error() = node.status();
      return;
    }
    node_() = *std::move(node);
  }
  static void TearDownTestSuite() {
    node_().reset();
    certificates_().reset();
  }
  void SetUp() override { ASSERT_NE(node_(), nullptr) << "no TLS node: " << start_error(); }

  // amqps to the node's TLS listener as `host`, trusting `ca_file`.
  static AmqpConnectionOptions Tls(const std::string& host, const std::string& ca_file) {
    AmqpConnectionOptions options;
    options.host = host;
    options.port = static_cast<uint16_t>(node_()->tls_port());
    options.tls = true;
    options.ca_file = ca_file;
    options.reconnect_max = absl::Milliseconds(500);
    return options;
  }

  static std::unique_ptr<RabbitMqServer>& node_() {
    static auto* const node = new std::unique_ptr<RabbitMqServer>();
    return *node;
  }
  static std::unique_ptr<TestCertificates>& certificates_() {
    static auto* const certificates = new std::unique_ptr<TestCertificates>();
    return *certificates;
  }
  static absl::Status& start_error() {
    static auto* const error = new absl::Status();
    return *error;
  }
};

TEST_F(AmqpTlsTest, ABrokerOverAmqpsPublishesAndConsumes) {
  event::DispatcherImpl dispatcher("amqps-test", common::RealClock::Get());
  dispatcher.Start();
  RecordingObserver observer;
  StateLog connections;
  AmqpBrokerOptions options;
  options.connection = Tls("localhost", certificates_()->ca_file());
  TopicDeclaration jobs{"jobs", {}};
  jobs.policy.groups = {"g"};
  auto broker = std::make_unique<AmqpBroker>(dispatcher, std::move(options), TopicPolicies({jobs}),
                                             observer, connections);
  absl::Notification serving;
  broker->WatchHealth([&serving](bool now) {
    if (now && !serving.HasBeenNotified()) serving.Notify();
  });
  ASSERT_TRUE(serving.WaitForNotificationWithTimeout(kWait)) << "never served over amqps";

  absl::Notification published;
  absl::StatusOr<std::vector<std::string>> ids;
  std::vector<OutgoingMessage> messages(1);
  messages[0].payload = "over tls";
  broker->Publish("jobs", std::move(messages), [&](absl::StatusOr<std::vector<std::string>> got) {
    ids = std::move(got);
    published.Notify();
  });
  published.WaitForNotification();
  ASSERT_THAT(ids.status(), IsOk());
  RecordingConsumerSink sink;
  auto session = broker->Consume({"jobs", "g", 1, absl::ZeroDuration()}, sink);
  ASSERT_THAT(session.status(), IsOk());
  ASSERT_TRUE(sink.WaitForCount(1));
  EXPECT_EQ(sink.deliveries()[0].message.payload, "over tls");
  EXPECT_EQ(sink.deliveries()[0].message.id, (*ids)[0]);
  session->reset();
  broker->Shutdown();
  broker.reset();
  dispatcher.Shutdown();
}

TEST_F(AmqpTlsTest, ACertificateOfAnotherCaIsRefused) {
  absl::StatusOr<std::unique_ptr<TestCertificates>> other = TestCertificates::Create("Other CA");
  ASSERT_THAT(other.status(), IsOk());
  event::DispatcherImpl dispatcher("amqps-test", common::RealClock::Get());
  dispatcher.Start();
  StateLog states;
  auto connection = std::make_unique<AmqpConnection>(
      dispatcher, Tls("localhost", (*other)->ca_file()), "tls-other-ca", states);
  connection->Start();
  const std::optional<absl::Status> why = states.WaitFor(AmqpConnectionState::kDown);
  ASSERT_TRUE(why.has_value()) << "never refused";
  EXPECT_THAT(why->message(), HasSubstr("SSL peer cert verification failed"));
  connection.reset();
  dispatcher.Shutdown();
}

TEST_F(AmqpTlsTest, ACertificateForAnotherNameIsRefused) {
  event::DispatcherImpl dispatcher("amqps-test", common::RealClock::Get());
  dispatcher.Start();
  StateLog states;
  // The certificate names localhost; 127.0.0.1 is the same listener under
  // a name the certificate does not carry.
  auto connection = std::make_unique<AmqpConnection>(
      dispatcher, Tls("127.0.0.1", certificates_()->ca_file()), "tls-other-name", states);
  connection->Start();
  const std::optional<absl::Status> why = states.WaitFor(AmqpConnectionState::kDown);
  ASSERT_TRUE(why.has_value()) << "never refused";
  EXPECT_THAT(why->message(), HasSubstr("SSL hostname verification failed"));
  connection.reset();
  dispatcher.Shutdown();
}

}  // namespace
}  // namespace switchboard::broker::amqp
