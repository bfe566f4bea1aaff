// AmqpConnection (server/broker/amqp) against a real RabbitMQ node: topology
// declared and replayed, pipelined publishes with confirms read back
// byte-exact through a plain rabbitmq-c client (amqp_client.h), the bound on
// unconfirmed publishes, the connection name rabbitmqctl shows, refusals and
// nacks that leave the connection up, a refused login, operation timeouts
// and heartbeats against a stopped (SIGSTOP) broker, and a broker killed and
// restarted under the connection.
//
// One node serves the whole suite; each test names its exchanges, queues and
// connection after itself.
#include "server/broker/amqp/amqp_connection.h"

#include <dirent.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/integration/amqp/amqp_client.h"
#include "tests/integration/amqp/rabbitmq_suite.h"
#include "tests/testing/rabbitmq_server.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace switchboard::broker::amqp {
namespace {

using ::switchboard::testing::AmqpClient;
using ::switchboard::testing::Delivery;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::RabbitMqServer;
using ::switchboard::testing::RabbitMqSuite;
using ::switchboard::testing::ReadTextFile;
using ::switchboard::testing::RunOnDispatcher;
using ::switchboard::testing::StatusIs;
using ::switchboard::testing::StopProcess;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// How long a test waits for a condition before it fails.
constexpr absl::Duration kWait = absl::Seconds(60);

// The node's Erlang VM: the process named beam.smp whose command line or
// environment names the node. SIGSTOP on it makes a broker that keeps its connections open and
// answers nothing.
std::optional<pid_t> BeamPid(const std::string& node_name) {
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return std::nullopt;
  std::optional<pid_t> found;
  while (const dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
    if (ReadTextFile(absl::StrCat("/proc/", pid, "/comm")) != "beam.smp\n") continue;
    if (absl::StrContains(ReadTextFile(absl::StrCat("/proc/", pid, "/cmdline")), node_name) ||
        absl::StrContains(ReadTextFile(absl::StrCat("/proc/", pid, "/environ")), node_name)) {
      found = pid;
      break;
    }
  }
  closedir(proc);
  return found;
}

// SIGSTOPs the node's Erlang VM until Resume() or destruction: a broker that
// keeps its connections open and answers nothing.
class StoppedBroker {
 public:
  explicit StoppedBroker(const RabbitMqServer& server) : beam_(BeamPid(server.node_name())) {
    if (beam_.has_value() && !StopProcess(*beam_, kWait)) beam_.reset();
  }
  ~StoppedBroker() { Resume(); }

  StoppedBroker(const StoppedBroker&) = delete;
  StoppedBroker& operator=(const StoppedBroker&) = delete;

  // False when the VM was not found or could not be stopped.
  bool stopped() const { return beam_.has_value(); }

  void Resume() {
    if (beam_.has_value()) kill(*beam_, SIGCONT);
    beam_.reset();
  }

 private:
  std::optional<pid_t> beam_;
};

// The state changes an AmqpConnection reports, for a test thread to wait on.
// (Waits use a CondVar, never Mutex::Await: in TSan builds the condition of
// an Await runs inside uninstrumented Abseil, unseen by the bridge in
// tests/testing/tsan_absl_sync.cc.)
class RecordingObserver final : public AmqpConnectionObserver {
 public:
  void OnStateChanged(AmqpConnectionState state, const absl::Status& last_error) override {
    absl::MutexLock lock(&mu_);
    changes_.emplace_back(state, last_error);
    changed_.SignalAll();
  }

  // Waits (up to kWait) until the latest change is to `state`; returns its
  // error, or DEADLINE_EXCEEDED.
  absl::Status WaitFor(AmqpConnectionState state) {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + kWait;
    while (changes_.empty() || changes_.back().first != state) {
      if (changed_.WaitWithDeadline(&mu_, deadline) &&
          (changes_.empty() || changes_.back().first != state)) {
        return absl::DeadlineExceededError(absl::StrCat("not ", AmqpConnectionStateName(state),
                                                        " within ", absl::FormatDuration(kWait)));
      }
    }
    return changes_.back().second;
  }

  std::vector<AmqpConnectionState> states() const {
    absl::MutexLock lock(&mu_);
    std::vector<AmqpConnectionState> states;
    for (const auto& change : changes_) states.push_back(change.first);
    return states;
  }

 private:
  mutable absl::Mutex mu_;
  absl::CondVar changed_;
  std::vector<std::pair<AmqpConnectionState, absl::Status>> changes_ ABSL_GUARDED_BY(mu_);
};

// The results of many operations, gathered on the owner dispatcher.
class Results {
 public:
  explicit Results(size_t count) : statuses_(count, absl::UnknownError("no result")) {}

  // A callback that records its status as result `index`.
  AmqpConnection::DoneCallback Recorder(size_t index) {
    return [this, index](absl::Status status) {
      absl::MutexLock lock(&mu_);
      statuses_[index] = std::move(status);
      ++done_;
      if (done_ == statuses_.size()) all_done_.SignalAll();
    };
  }

  // Waits (up to kWait) until every operation has its result.
  bool WaitForAll() {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + kWait;
    while (done_ < statuses_.size()) {
      if (all_done_.WaitWithDeadline(&mu_, deadline) && done_ < statuses_.size()) return false;
    }
    return true;
  }

  std::vector<absl::Status> statuses() const {
    absl::MutexLock lock(&mu_);
    return statuses_;
  }

  // How many results have `code`.
  size_t Count(absl::StatusCode code) const {
    absl::MutexLock lock(&mu_);
    size_t count = 0;
    for (const absl::Status& status : statuses_) count += status.code() == code ? 1 : 0;
    return count;
  }

 private:
  mutable absl::Mutex mu_;
  absl::CondVar all_done_;
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
  size_t done_ ABSL_GUARDED_BY(mu_) = 0;
};

class AmqpConnectionTest : public RabbitMqSuite {
 protected:
  void SetUp() override {
    RabbitMqSuite::SetUp();
    if (HasFatalFailure()) return;
    dispatcher_.Start();
  }

  void TearDown() override {
    if (!has_node()) return;  // SetUp() failed before starting the dispatcher.
    RunOnDispatcher(dispatcher_, [this] { connection_.reset(); });
    dispatcher_.Shutdown();
    if (HasFailure()) {
      std::fprintf(stderr, "The end of the RabbitMQ node's log:\n%s\n",
                   switchboard::testing::LogTail(server().log(), 40).c_str());
    }
  }

  static std::string TestName() {
    return ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  // A name for this test's exchange or queue, unique within the node.
  static std::string Unique(absl::string_view what) {
    return absl::StrCat("sbtest.", TestName(), ".", what);
  }

  AmqpConnectionOptions Options() const {
    AmqpConnectionOptions options;
    options.host = "127.0.0.1";
    options.port = static_cast<uint16_t>(server().port());
    options.operation_timeout = absl::Seconds(30);
    options.reconnect_initial = absl::Milliseconds(50);
    options.reconnect_max = absl::Milliseconds(500);
    return options;
  }

  // Starts this test's connection, role = the test's name, and (unless told
  // otherwise) waits until it is ready.
  void StartConnection(AmqpConnectionOptions options, bool wait_until_ready = true) {
    RunOnDispatcher(dispatcher_, [&] {
      connection_ =
          std::make_unique<AmqpConnection>(dispatcher_, std::move(options), TestName(), observer_);
      connection_->Start();
    });
    if (wait_until_ready) {
      ASSERT_THAT(observer_.WaitFor(AmqpConnectionState::kReady), IsOk());
    }
  }

  // Runs `start` on the owner dispatcher with a callback, and waits for the
  // callback's status.
  absl::Status Await(absl::AnyInvocable<void(AmqpConnection::DoneCallback)> start) {
    auto results = std::make_shared<Results>(1);
    dispatcher_.Post(
        [start = std::move(start), results]() mutable { start(results->Recorder(0)); });
    if (!results->WaitForAll()) return absl::DeadlineExceededError("no result");
    return results->statuses()[0];
  }

  absl::Status Declare(Declaration declaration, absl::Duration timeout = absl::Seconds(30)) {
    return Await([&](AmqpConnection::DoneCallback done) {
      connection_->Declare(std::move(declaration), timeout, std::move(done));
    });
  }

  absl::Status Publish(AmqpMessage message, absl::Duration timeout = absl::Seconds(30)) {
    return Await([&](AmqpConnection::DoneCallback done) {
      connection_->Publish(std::move(message), timeout, std::move(done));
    });
  }

  // Declares a durable topic exchange and a quorum queue bound to it with
  // `binding_key`.
  void DeclareDurableTopology(const std::string& exchange, const std::string& queue,
                              const std::string& binding_key) {
    ASSERT_THAT(Declare(ExchangeDeclaration{exchange}), IsOk());
    ASSERT_THAT(Declare(QueueDeclaration::Quorum(queue)), IsOk());
    ASSERT_THAT(Declare(BindingDeclaration{queue, exchange, binding_key}), IsOk());
  }

  // A plain rabbitmq-c client, to check what the broker holds.
  absl::StatusOr<std::unique_ptr<AmqpClient>> Client() const {
    return AmqpClient::Connect(server().port(), absl::StrCat("sbtest-checker:", TestName()));
  }

  // Waits (up to kWait) until `queue` counts `count` ready messages: a
  // restarted node's quorum queue counts 0 until it has elected its leader.
  static void WaitForCount(AmqpClient& client, const std::string& queue, uint32_t count) {
    const absl::Time deadline = absl::Now() + kWait;
    absl::StatusOr<uint32_t> counted;
    while (true) {
      counted = client.DeclareQuorumQueue(queue, /*passive=*/true);
      ASSERT_THAT(counted.status(), IsOk());
      if (*counted >= count || absl::Now() >= deadline) break;
      absl::SleepFor(absl::Milliseconds(50));  // A poll interval, not a wait for an event.
    }
    ASSERT_EQ(*counted, count) << "queue " << queue;
  }

  // Fetches `expected.size()` messages from `queue` and compares their ids
  // and bodies in order, then checks the queue is empty.
  static void ExpectQueueHolds(AmqpClient& client, const std::string& queue,
                               const std::vector<AmqpMessage>& expected) {
    for (size_t i = 0; i < expected.size(); ++i) {
      absl::StatusOr<std::optional<Delivery>> got = client.Get(queue);
      ASSERT_THAT(got.status(), IsOk());
      ASSERT_TRUE(got->has_value()) << "message " << i << " of " << expected.size() << " lost";
      EXPECT_EQ((*got)->message_id, expected[i].message_id);
      EXPECT_TRUE((*got)->body == expected[i].body) << "message " << i << " differs";
      ASSERT_THAT(client.Ack((*got)->delivery_tag), IsOk());
    }
    absl::StatusOr<std::optional<Delivery>> empty = client.Get(queue);
    ASSERT_THAT(empty.status(), IsOk());
    EXPECT_FALSE(empty->has_value()) << "more messages than published";
  }

  event::DispatcherImpl dispatcher_{"amqp-owner", common::RealClock::Get()};
  RecordingObserver observer_;
  std::unique_ptr<AmqpConnection> connection_;  // Owner dispatcher only.
};

// Message i of a test: every byte value, a size that varies with i (some
// past one frame), and its index in the first bytes.
AmqpMessage NumberedMessage(const std::string& exchange, const std::string& routing_key, size_t i) {
  AmqpMessage message;
  message.exchange = exchange;
  message.routing_key = routing_key;
  message.message_id = absl::StrCat("message-", i);
  message.body = absl::StrCat(i, ":");
  const size_t size = i % 100 == 7 ? 200 * 1000 : (i * 37) % 3000;
  for (size_t byte = 0; byte < size; ++byte) {
    message.body.push_back(static_cast<char>((byte * 31 + i) & 0xff));
  }
  return message;
}

TEST_F(AmqpConnectionTest, ThousandPipelinedPublishesAreConfirmedAndReadBackByteExact) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareDurableTopology(exchange, queue, "orders.*"));

  constexpr size_t kCount = 1000;
  std::vector<AmqpMessage> messages;
  for (size_t i = 0; i < kCount; ++i) {
    messages.push_back(NumberedMessage(exchange, "orders.created", i));
  }
  Results results(kCount);
  size_t most_unconfirmed = 0;  // Owner dispatcher only, until joined below.
  RunOnDispatcher(dispatcher_, [&] {
    for (size_t i = 0; i < kCount; ++i) {
      connection_->Publish(
          messages[i], [&, record = results.Recorder(i)](absl::Status status) mutable {
            most_unconfirmed = std::max(most_unconfirmed, connection_->unconfirmed_publishes());
            record(std::move(status));
          });
    }
  });
  ASSERT_TRUE(results.WaitForAll());
  EXPECT_EQ(results.Count(absl::StatusCode::kOk), kCount) << results.statuses()[0];
  RunOnDispatcher(dispatcher_, [&] {
    EXPECT_LE(most_unconfirmed, AmqpConnection::kMaxUnconfirmedPublishes);
    // Pipelined: confirms came back while many others were still out.
    EXPECT_GT(most_unconfirmed, 1u);
    EXPECT_EQ(connection_->unconfirmed_publishes(), 0u);
  });

  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Client();
  ASSERT_THAT(client.status(), IsOk());
  ASSERT_NO_FATAL_FAILURE(WaitForCount(**client, queue, kCount));
  ASSERT_NO_FATAL_FAILURE(ExpectQueueHolds(**client, queue, messages));
}

TEST_F(AmqpConnectionTest, RabbitmqctlShowsTheConnectionName) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  EXPECT_EQ(connection_->connection_name(), absl::StrCat("switchboard:", TestName()));

  absl::StatusOr<std::string> connections =
      server().Ctl({"-q", "--no-table-headers", "list_connections", "name", "client_properties"});
  ASSERT_THAT(connections.status(), IsOk());
  size_t ours = 0;
  for (absl::string_view row : absl::StrSplit(*connections, '\n', absl::SkipEmpty())) {
    ours += absl::StrContains(
                row, absl::StrCat("{\"connection_name\",\"switchboard:", TestName(), "\"}"))
                ? 1
                : 0;
  }
  EXPECT_EQ(ours, 1u) << *connections;
}

TEST_F(AmqpConnectionTest, RefusalsFailTheirOperationAndTheConnectionCarriesOn) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareDurableTopology(exchange, queue, "jobs.#"));

  // The same queue with other arguments: the broker closes the channel.
  QueueDeclaration classic;
  classic.name = queue;
  EXPECT_THAT(Declare(classic),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("queue.declare"), HasSubstr(queue), HasSubstr("406"))));
  // A publish to no exchange: the broker closes the publish channel.
  AmqpMessage lost = NumberedMessage(Unique("missing"), "jobs.a", 0);
  EXPECT_THAT(Publish(lost),
              StatusIs(absl::StatusCode::kNotFound,
                       AllOf(HasSubstr("basic.publish"), HasSubstr(Unique("missing")))));

  // Both channels were opened again, and nothing else changed.
  const AmqpMessage message = NumberedMessage(exchange, "jobs.a", 1);
  ASSERT_THAT(Publish(message), IsOk());
  ASSERT_THAT(Declare(BindingDeclaration{queue, exchange, "more.#"}), IsOk());
  EXPECT_EQ(connection_->state(), AmqpConnectionState::kReady);
  EXPECT_THAT(observer_.states(), ::testing::ElementsAre(AmqpConnectionState::kReady));

  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Client();
  ASSERT_THAT(client.status(), IsOk());
  ASSERT_NO_FATAL_FAILURE(WaitForCount(**client, queue, 1));
  ASSERT_NO_FATAL_FAILURE(ExpectQueueHolds(**client, queue, {message}));
}

TEST_F(AmqpConnectionTest, PublishWithoutConfirmInTimeFailsWithDeadlineExceeded) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareDurableTopology(exchange, queue, "#"));

  StoppedBroker stopped(server());
  ASSERT_TRUE(stopped.stopped()) << "no beam.smp for " << server().node_name();

  const AmqpMessage late = NumberedMessage(exchange, "a", 0);
  EXPECT_THAT(Publish(late, absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("confirm")));
  // Still ready: a stopped broker is not a lost connection (heartbeats
  // would tell, after two intervals).
  EXPECT_EQ(connection_->state(), AmqpConnectionState::kReady);
  stopped.Resume();

  // The late confirm is dropped unseen; the next publish is confirmed.
  const AmqpMessage next = NumberedMessage(exchange, "a", 1);
  ASSERT_THAT(Publish(next), IsOk());
  RunOnDispatcher(dispatcher_, [&] { EXPECT_EQ(connection_->unconfirmed_publishes(), 0u); });

  // The timed-out message was routed all the same: a timeout says "unknown",
  // not "lost".
  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Client();
  ASSERT_THAT(client.status(), IsOk());
  ASSERT_NO_FATAL_FAILURE(WaitForCount(**client, queue, 2));
  ASSERT_NO_FATAL_FAILURE(ExpectQueueHolds(**client, queue, {late, next}));
}

TEST_F(AmqpConnectionTest, AtMostTheBoundOfPublishesAreUnconfirmed) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareDurableTopology(exchange, queue, "#"));

  // With the broker stopped no confirm comes: the bound's worth of
  // publishes go out and time out unconfirmed; the rest time out waiting
  // for a slot, never sent. (Small bodies: all of them fit in the socket
  // buffers of a stopped broker.)
  constexpr size_t kBound = AmqpConnection::kMaxUnconfirmedPublishes;
  constexpr size_t kCount = kBound + 44;
  Results results(kCount);
  {
    StoppedBroker stopped(server());
    ASSERT_TRUE(stopped.stopped()) << "no beam.smp for " << server().node_name();
    RunOnDispatcher(dispatcher_, [&] {
      for (size_t i = 0; i < kCount; ++i) {
        AmqpMessage message;
        message.exchange = exchange;
        message.routing_key = "a";
        message.message_id = absl::StrCat("message-", i);
        message.body = absl::StrCat(i);
        connection_->Publish(std::move(message), absl::Seconds(1), results.Recorder(i));
      }
    });
    ASSERT_TRUE(results.WaitForAll());
    EXPECT_EQ(connection_->unconfirmed_publishes(), kBound);
  }
  EXPECT_EQ(results.Count(absl::StatusCode::kDeadlineExceeded), kCount);
  size_t unconfirmed = 0;
  size_t unsent = 0;
  for (const absl::Status& status : results.statuses()) {
    unconfirmed += absl::StrContains(status.message(), "no confirm") ? 1 : 0;
    unsent += absl::StrContains(status.message(), "slots") ? 1 : 0;
  }
  EXPECT_EQ(unconfirmed, kBound);
  EXPECT_EQ(unsent, kCount - kBound);

  // Resumed, the broker routes and confirms what was sent (a timeout means
  // "unknown", not "lost"); the slots free up for new publishes.
  const AmqpMessage after = NumberedMessage(exchange, "a", kCount);
  ASSERT_THAT(Publish(after), IsOk());
  RunOnDispatcher(dispatcher_, [&] { EXPECT_EQ(connection_->unconfirmed_publishes(), 0u); });
  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Client();
  ASSERT_THAT(client.status(), IsOk());
  ASSERT_NO_FATAL_FAILURE(WaitForCount(**client, queue, kBound + 1));
}

TEST_F(AmqpConnectionTest, RefusedLoginIsDownAndCallsFailAtOnceWithoutThePassword) {
  constexpr char kPassword[] = "not-guests-secret";
  AmqpConnectionOptions options = Options();
  options.password = kPassword;
  ASSERT_NO_FATAL_FAILURE(StartConnection(options, /*wait_until_ready=*/false));
  EXPECT_THAT(
      observer_.WaitFor(AmqpConnectionState::kDown),
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr("login"), HasSubstr("ACCESS_REFUSED"), Not(HasSubstr(kPassword)))));
  const std::string address = absl::StrCat("127.0.0.1:", server().port());
  EXPECT_THAT(
      Publish(NumberedMessage(Unique("topic"), "a", 0)),
      StatusIs(absl::StatusCode::kUnavailable,
               AllOf(HasSubstr(address), HasSubstr("ACCESS_REFUSED"), Not(HasSubstr(kPassword)))));
  EXPECT_THAT(Declare(ExchangeDeclaration{Unique("topic")}),
              StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr(kPassword))));
  EXPECT_THAT(observer_.states(), ::testing::ElementsAre(AmqpConnectionState::kDown));
}

TEST_F(AmqpConnectionTest, PublishNackedByTheBrokerFailsWithUnavailable) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("bounded");
  ASSERT_THAT(Declare(ExchangeDeclaration{exchange}), IsOk());
  // A queue full at one message that refuses more: the broker nacks.
  QueueDeclaration bounded;
  bounded.name = queue;
  bounded.arguments["x-max-length"] = int64_t{1};
  bounded.arguments["x-overflow"] = std::string("reject-publish");
  ASSERT_THAT(Declare(bounded), IsOk());
  ASSERT_THAT(Declare(BindingDeclaration{queue, exchange, "#"}), IsOk());

  const AmqpMessage first = NumberedMessage(exchange, "a", 0);
  ASSERT_THAT(Publish(first), IsOk());
  EXPECT_THAT(Publish(NumberedMessage(exchange, "a", 1)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("nacked")));
  EXPECT_EQ(connection_->state(), AmqpConnectionState::kReady);

  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Client();
  ASSERT_THAT(client.status(), IsOk());
  ASSERT_NO_FATAL_FAILURE(ExpectQueueHolds(**client, queue, {first}));
}

TEST_F(AmqpConnectionTest, DeclarationWithoutAnswerInTimeRemakesTheConnection) {
  AmqpConnectionOptions options = Options();
  options.connect_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(StartConnection(options));
  const std::string exchange = Unique("topic");
  ASSERT_THAT(Declare(ExchangeDeclaration{exchange}), IsOk());
  {
    StoppedBroker stopped(server());
    ASSERT_TRUE(stopped.stopped()) << "no beam.smp for " << server().node_name();
    EXPECT_THAT(Declare(ExchangeDeclaration{Unique("unanswered")}, absl::Milliseconds(300)),
                StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("exchange.declare")));
    // The connection's state is unknown after a lost answer: dropped.
    EXPECT_THAT(observer_.WaitFor(AmqpConnectionState::kDown),
                StatusIs(absl::StatusCode::kUnavailable));
  }
  ASSERT_THAT(observer_.WaitFor(AmqpConnectionState::kReady), IsOk());
  // Usable again, for declarations and publishes.
  ASSERT_THAT(Declare(QueueDeclaration::Quorum(Unique("group"))), IsOk());
  ASSERT_THAT(Publish(NumberedMessage(exchange, "a", 0)), IsOk());
}

TEST_F(AmqpConnectionTest, SilentBrokerIsDetectedByHeartbeats) {
  AmqpConnectionOptions options = Options();
  options.heartbeat = absl::Seconds(1);
  options.connect_timeout = absl::Seconds(1);
  ASSERT_NO_FATAL_FAILURE(StartConnection(options));
  {
    StoppedBroker stopped(server());
    ASSERT_TRUE(stopped.stopped()) << "no beam.smp for " << server().node_name();
    // Nothing heard for two intervals: dropped, with no operation pending.
    EXPECT_THAT(observer_.WaitFor(AmqpConnectionState::kDown),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("heartbeat")));
    EXPECT_THAT(Publish(NumberedMessage(Unique("any"), "a", 0)),
                StatusIs(absl::StatusCode::kUnavailable, HasSubstr("is down")));
  }
  ASSERT_THAT(observer_.WaitFor(AmqpConnectionState::kReady), IsOk());
}

// Last: it kills and restarts the suite's node.
TEST_F(AmqpConnectionTest, BrokerKilledFailsFastThenResumesWithTopologyRedeclared) {
  ASSERT_NO_FATAL_FAILURE(StartConnection(Options()));
  const std::string exchange = Unique("topic");
  const std::string queue = Unique("group");
  ASSERT_NO_FATAL_FAILURE(DeclareDurableTopology(exchange, queue, "events.#"));
  // Transient topology: gone after the restart unless the connection
  // declares it again.
  const std::string transient_exchange = Unique("transient-topic");
  const std::string transient_queue = Unique("transient-queue");
  ExchangeDeclaration transient{transient_exchange};
  transient.durable = false;
  QueueDeclaration transient_classic;
  transient_classic.name = transient_queue;
  transient_classic.durable = false;
  ASSERT_THAT(Declare(transient), IsOk());
  ASSERT_THAT(Declare(transient_classic), IsOk());
  ASSERT_THAT(Declare(BindingDeclaration{transient_queue, transient_exchange, "k"}), IsOk());
  // The durable topology on disk (tests/testing/rabbitmq_server.h).
  ASSERT_THAT(server().SyncMetadata(), IsOk());

  constexpr size_t kConfirmed = 200;
  std::vector<AmqpMessage> confirmed;
  for (size_t i = 0; i < kConfirmed; ++i) {
    confirmed.push_back(NumberedMessage(exchange, "events.created", i));
  }
  Results before(kConfirmed);
  RunOnDispatcher(dispatcher_, [&] {
    for (size_t i = 0; i < kConfirmed; ++i) connection_->Publish(confirmed[i], before.Recorder(i));
  });
  ASSERT_TRUE(before.WaitForAll());
  ASSERT_EQ(before.Count(absl::StatusCode::kOk), kConfirmed);

  // Publishes in flight when the broker dies: stopped first, so that none
  // can be confirmed.
  const std::optional<pid_t> beam = BeamPid(server().node_name());
  ASSERT_TRUE(beam.has_value()) << "no beam.smp for " << server().node_name();
  ASSERT_TRUE(StopProcess(*beam, kWait)) << "beam.smp " << *beam << " did not stop";
  constexpr size_t kPending = 50;
  Results pending(kPending);
  RunOnDispatcher(dispatcher_, [&] {
    for (size_t i = 0; i < kPending; ++i) {
      connection_->Publish(NumberedMessage(exchange, "events.created", kConfirmed + i),
                           pending.Recorder(i));
    }
  });
  server().Kill();

  ASSERT_TRUE(pending.WaitForAll());
  EXPECT_EQ(pending.Count(absl::StatusCode::kUnavailable), kPending) << pending.statuses()[0];
  EXPECT_THAT(observer_.WaitFor(AmqpConnectionState::kDown),
              StatusIs(absl::StatusCode::kUnavailable));
  // New operations fail at once (their 30 s timeout would say
  // DEADLINE_EXCEEDED), naming the broker.
  const std::string address = absl::StrCat("127.0.0.1:", server().port());
  EXPECT_THAT(Publish(NumberedMessage(exchange, "events.created", 999)),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr(address), HasSubstr("is down"), Not(HasSubstr("guest@")))));
  EXPECT_THAT(Declare(ExchangeDeclaration{Unique("while-down")}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(address)));

  ASSERT_THAT(server().Restart(), IsOk());
  ASSERT_THAT(observer_.WaitFor(AmqpConnectionState::kReady), IsOk());
  EXPECT_THAT(observer_.states(),
              ::testing::ElementsAre(AmqpConnectionState::kReady, AmqpConnectionState::kDown,
                                     AmqpConnectionState::kReady));

  // The transient exchange, queue and binding exist again, declared by the
  // connection: a publish lands in the queue.
  AmqpMessage after_transient = NumberedMessage(transient_exchange, "k", 1000);
  ASSERT_THAT(Publish(after_transient), IsOk());
  AmqpMessage after_durable = NumberedMessage(exchange, "events.updated", 1001);
  ASSERT_THAT(Publish(after_durable), IsOk());

  absl::StatusOr<std::unique_ptr<AmqpClient>> client = Client();
  ASSERT_THAT(client.status(), IsOk());
  ASSERT_NO_FATAL_FAILURE(ExpectQueueHolds(**client, transient_queue, {after_transient}));
  // Every confirmed publish is there, in order, then the one after the
  // restart; none of those that failed.
  confirmed.push_back(after_durable);
  ASSERT_NO_FATAL_FAILURE(WaitForCount(**client, queue, kConfirmed + 1));
  ASSERT_NO_FATAL_FAILURE(ExpectQueueHolds(**client, queue, confirmed));
}

}  // namespace
}  // namespace switchboard::broker::amqp
