// Connection against a real redis-server: the handshake, replies matched by
// id, timeouts, pipelining, fail-fast, AUTH/SELECT, reconnecting after the
// server is killed and restarted, and pub/sub pushes.
#include "server/broker/redis/connection.h"

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/recording_sinks.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_matchers.h"

namespace switchboard::broker::redis {
namespace {

using ::switchboard::testing::IsOk;
using ::switchboard::testing::kWaitTimeout;
using ::switchboard::testing::RedisServer;
using ::switchboard::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;

// Records a connection's observer calls and state changes.
class Recorder final : public ConnectionObserver {
 public:
  // Records the comings (true) and goings (false) of readiness.
  void OnStateChanged(absl::string_view, ConnectionState from, ConnectionState to) override {
    absl::MutexLock lock(&mu_);
    if (to == ConnectionState::kAbsent) return;  // Close() of a test's connection.
    if (from == ConnectionState::kReady || to == ConnectionState::kReady) {
      states_.push_back(to == ConnectionState::kReady);
    }
  }
  void OnReconnectAttempt(absl::string_view) override {
    absl::MutexLock lock(&mu_);
    ++reconnect_attempts_;
  }
  void OnWrite(absl::string_view, size_t commands) override {
    absl::MutexLock lock(&mu_);
    writes_.push_back(commands);
  }
  void OnPush(Reply push) {
    absl::MutexLock lock(&mu_);
    pushes_.push_back(std::move(push));
  }

  // Waits until `n` state changes were seen.
  bool WaitForStates(size_t n) {
    return WaitUntil([&] { return states_.size() >= n; });
  }
  bool WaitForReconnectAttempts(int n) {
    return WaitUntil([&] { return reconnect_attempts_ >= n; });
  }
  bool WaitForPushes(size_t n) {
    return WaitUntil([&] { return pushes_.size() >= n; });
  }

  std::vector<bool> states() const {
    absl::MutexLock lock(&mu_);
    return states_;
  }
  std::vector<size_t> writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }
  std::vector<Reply> pushes() const {
    absl::MutexLock lock(&mu_);
    return pushes_;
  }

 private:
  template <typename Condition>
  bool WaitUntil(Condition condition) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&condition), kWaitTimeout);
  }

  mutable absl::Mutex mu_;
  std::vector<bool> states_ ABSL_GUARDED_BY(mu_);
  int reconnect_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> writes_ ABSL_GUARDED_BY(mu_);
  std::vector<Reply> pushes_ ABSL_GUARDED_BY(mu_);
};

class ConnectionTest : public ::testing::Test {
 protected:
  ConnectionTest() : io_("redis-test-io", common::RealClock::Get()) { io_.Start(); }

  ~ConnectionTest() override {
    RunOnIo([&] { connections_.clear(); });
    io_.Shutdown();
  }

  void StartServer(RedisServer::Options options = {}) {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start(std::move(options));
    ASSERT_THAT(server, IsOk());
    redis_ = *std::move(server);
  }

  ConnectionOptions Options() const {
    ConnectionOptions options;
    options.port = static_cast<uint16_t>(redis_->port());
    options.reconnect_initial = absl::Milliseconds(20);
    options.reconnect_max = absl::Milliseconds(200);
    return options;
  }

  // Runs `fn` on the I/O thread and waits for it.
  void RunOnIo(absl::AnyInvocable<void()> fn) {
    absl::Notification done;
    io_.Post([&] {
      fn();
      done.Notify();
    });
    done.WaitForNotification();
  }

  // A recorder that outlives every connection of the test.
  Recorder& NewRecorder() { return recorders_.emplace_back(); }

  // Opens a connection; `recorder` sees its observer calls and pushes.
  Connection& Open(ConnectionOptions options, Recorder& recorder,
                   const std::string& role = "command") {
    Connection* connection = nullptr;
    RunOnIo([&] {
      connections_.push_back(std::make_unique<Connection>(io_, std::move(options), role, recorder));
      connection = connections_.back().get();
      connection->Start([](bool) {}, [&recorder](Reply push) { recorder.OnPush(std::move(push)); });
    });
    return *connection;
  }

  // Opens a connection and waits until it is ready.
  Connection& OpenReady(Recorder& recorder, const std::string& role = "command") {
    Connection& connection = Open(Options(), recorder, role);
    EXPECT_TRUE(recorder.WaitForStates(1));
    return connection;
  }

  absl::StatusOr<Reply> Call(Connection& connection, Command command,
                             absl::Duration timeout = absl::Seconds(5)) {
    absl::Notification done;
    absl::StatusOr<Reply> result = absl::UnknownError("no reply");
    io_.Post([&] {
      connection.Send(command, timeout, [&](absl::StatusOr<Reply> reply) {
        result = std::move(reply);
        done.Notify();
      });
    });
    if (!done.WaitForNotificationWithTimeout(kWaitTimeout)) {
      return absl::DeadlineExceededError("the callback never ran");
    }
    return result;
  }

  event::DispatcherImpl io_;
  std::unique_ptr<RedisServer> redis_;
  std::deque<Recorder> recorders_;
  std::vector<std::unique_ptr<Connection>> connections_;  // I/O thread only.
};

TEST_F(ConnectionTest, SendsCommandsAndNamesItselfOnTheServer) {
  StartServer();
  Recorder& recorder = NewRecorder();
  Connection& connection = OpenReady(recorder);
  EXPECT_THAT(recorder.states(), ElementsAre(true));

  absl::StatusOr<Reply> set = Call(connection, Command::Of({"SET", "greeting", "hello"}));
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->type, Reply::Type::kStatus);
  EXPECT_EQ(set->str, "OK");
  absl::StatusOr<Reply> get = Call(connection, Command::Of({"GET", "greeting"}));
  ASSERT_THAT(get, IsOk());
  EXPECT_EQ(get->str, "hello");
  absl::StatusOr<Reply> error = Call(connection, Command::Of({"INCR", "greeting"}));
  ASSERT_THAT(error, IsOk());
  EXPECT_TRUE(error->is_error());

  absl::StatusOr<std::vector<std::string>> names = redis_->ClientNames();
  ASSERT_THAT(names, IsOk());
  EXPECT_THAT(*names, Contains(std::string("switchboard:command")).Times(1));
}

TEST_F(ConnectionTest, CommandsSentTogetherLeaveInOneWrite) {
  StartServer();
  Recorder& recorder = NewRecorder();
  Connection& connection = OpenReady(recorder);

  absl::Mutex mu;
  std::vector<int64_t> counts;
  io_.Post([&] {
    for (int i = 0; i < 100; ++i) {
      connection.Send(Command::Of({"INCR", "counter"}), [&](absl::StatusOr<Reply> reply) {
        absl::MutexLock lock(&mu);
        counts.push_back(reply.ok() ? reply->integer : -1);
      });
    }
  });
  {
    absl::MutexLock lock(&mu);
    auto all_replied = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return counts.size() == 100; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all_replied), kWaitTimeout));
    for (int i = 0; i < 100; ++i) EXPECT_EQ(counts[i], i + 1);
  }
  // The handshake (CLIENT SETNAME, CLIENT ID) was one write, the 100 INCRs
  // another.
  EXPECT_THAT(recorder.writes(), ElementsAre(2, 100));
}

TEST_F(ConnectionTest, TimedOutCommandFailsAndItsLateReplyIsDropped) {
  StartServer();
  Recorder& recorder = NewRecorder();
  Connection& connection = OpenReady(recorder);

  absl::Mutex mu;
  std::vector<absl::StatusOr<Reply>> sleep_results;
  absl::Notification pinged;
  absl::StatusOr<Reply> ping = absl::UnknownError("no reply");
  io_.Post([&] {
    connection.Send(Command::Of({"DEBUG", "SLEEP", "0.5"}), absl::Milliseconds(50),
                    [&](absl::StatusOr<Reply> reply) {
                      absl::MutexLock lock(&mu);
                      sleep_results.push_back(std::move(reply));
                    });
    connection.Send(Command::Of({"PING"}), absl::Seconds(5), [&](absl::StatusOr<Reply> reply) {
      ping = std::move(reply);
      pinged.Notify();
    });
  });
  ASSERT_TRUE(pinged.WaitForNotificationWithTimeout(kWaitTimeout));
  // PING was answered after DEBUG SLEEP's late "OK", and got its own reply.
  ASSERT_THAT(ping, IsOk());
  EXPECT_EQ(ping->str, "PONG");
  RunOnIo([] {});
  absl::MutexLock lock(&mu);
  ASSERT_EQ(sleep_results.size(), 1u);
  EXPECT_THAT(sleep_results[0], StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(connection.ready());
}

TEST_F(ConnectionTest, FailsFastAndNeverInlineWhileNotReady) {
  StartServer();
  const ConnectionOptions options = Options();
  redis_->Kill();
  Recorder& recorder = NewRecorder();
  Connection& connection = Open(options, recorder);
  absl::Notification done;
  absl::StatusOr<Reply> result = absl::UnknownError("no reply");
  bool inline_call = true;
  bool returned = false;  // Set on the I/O thread once Send() returned.
  io_.Post([&] {
    connection.Send(Command::Of({"PING"}), [&](absl::StatusOr<Reply> reply) {
      inline_call = !returned;
      result = std::move(reply);
      done.Notify();
    });
    returned = true;
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWaitTimeout));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(inline_call);
  ASSERT_TRUE(recorder.WaitForReconnectAttempts(2)) << "keeps retrying";
  EXPECT_THAT(recorder.states(), ::testing::IsEmpty());
}

TEST_F(ConnectionTest, KilledServerFailsPendingCommandsAndRestartReconnects) {
  StartServer();
  Recorder& recorder = NewRecorder();
  Connection& connection = OpenReady(recorder);

  // A command that blocks until the server goes away.
  absl::Notification blocked_done;
  absl::StatusOr<Reply> blocked = absl::UnknownError("no reply");
  io_.Post([&] {
    connection.Send(Command::Of({"BLPOP", "never", "0"}), absl::Seconds(60),
                    [&](absl::StatusOr<Reply> reply) {
                      blocked = std::move(reply);
                      blocked_done.Notify();
                    });
  });
  RunOnIo([] {});  // BLPOP is in the output buffer (or on the wire).
  redis_->Kill();
  ASSERT_TRUE(blocked_done.WaitForNotificationWithTimeout(kWaitTimeout));
  EXPECT_THAT(blocked, StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_TRUE(recorder.WaitForStates(2));
  EXPECT_THAT(Call(connection, Command::Of({"PING"})), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_THAT(redis_->Restart(), IsOk());
  ASSERT_TRUE(recorder.WaitForStates(3));
  EXPECT_THAT(recorder.states(), ElementsAre(true, false, true));
  absl::StatusOr<Reply> pong = Call(connection, Command::Of({"PING"}));
  ASSERT_THAT(pong, IsOk());
  EXPECT_EQ(pong->str, "PONG");
  absl::StatusOr<std::vector<std::string>> names = redis_->ClientNames();
  ASSERT_THAT(names, IsOk());
  EXPECT_THAT(*names, Contains(std::string("switchboard:command")).Times(1));
}

TEST_F(ConnectionTest, AuthenticatesWithThePasswordAndSelectsTheDatabase) {
  RedisServer::Options server_options;
  server_options.password = "s3cret";
  StartServer(server_options);
  ConnectionOptions options = Options();
  options.password = "s3cret";
  options.db = 3;
  Recorder& recorder = NewRecorder();
  Connection& connection = Open(options, recorder);
  ASSERT_TRUE(recorder.WaitForStates(1));
  ASSERT_THAT(Call(connection, Command::Of({"SET", "k", "v"})), IsOk());

  absl::StatusOr<std::string> clients = redis_->Command({"CLIENT", "LIST"});
  ASSERT_THAT(clients, IsOk());
  bool found = false;
  for (absl::string_view line : absl::StrSplit(*clients, '\n')) {
    if (!absl::StrContains(line, "name=switchboard:command ")) continue;
    found = true;
    EXPECT_TRUE(absl::StrContains(line, " db=3 ")) << line;
  }
  EXPECT_TRUE(found) << *clients;
  EXPECT_EQ(redis_->Command({"EXISTS", "k"}).value_or(""), "0") << "written to db 3, not 0";
}

TEST_F(ConnectionTest, AuthenticatesAsAnAclUser) {
  RedisServer::Options server_options;
  server_options.acl_user = "worker";
  server_options.acl_password = "pa55";
  StartServer(server_options);
  ConnectionOptions options = Options();
  options.user = "worker";
  options.password = "pa55";
  Recorder& recorder = NewRecorder();
  Connection& connection = Open(options, recorder);
  ASSERT_TRUE(recorder.WaitForStates(1));
  absl::StatusOr<Reply> whoami = Call(connection, Command::Of({"ACL", "WHOAMI"}));
  ASSERT_THAT(whoami, IsOk());
  EXPECT_EQ(whoami->str, "worker");
}

TEST_F(ConnectionTest, WrongPasswordNeverBecomesReady) {
  RedisServer::Options server_options;
  server_options.password = "right";
  StartServer(server_options);
  ConnectionOptions options = Options();
  options.password = "wrong";
  Recorder& recorder = NewRecorder();
  Connection& connection = Open(options, recorder);
  ASSERT_TRUE(recorder.WaitForReconnectAttempts(2));
  EXPECT_THAT(recorder.states(), ::testing::IsEmpty());
  // The caller learns why: Redis' own refusal, without the password.
  const absl::StatusOr<Reply> refused = Call(connection, Command::Of({"PING"}));
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                ::testing::HasSubstr("(last attempt: AUTH failed: WRONGPASS")));
  EXPECT_THAT(refused.status().message(), ::testing::Not(::testing::HasSubstr("wrong")));
}

TEST_F(ConnectionTest, CloseFailsPendingCommandsAndStopsReconnecting) {
  StartServer();
  Recorder& recorder = NewRecorder();
  Connection& connection = OpenReady(recorder);
  absl::Notification done;
  absl::StatusOr<Reply> blocked = absl::UnknownError("no reply");
  RunOnIo([&] {
    connection.Send(Command::Of({"BLPOP", "never", "0"}), absl::Seconds(60),
                    [&](absl::StatusOr<Reply> reply) {
                      blocked = std::move(reply);
                      done.Notify();
                    });
    connection.Close();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWaitTimeout));
  EXPECT_THAT(blocked, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(connection.ready());
  EXPECT_THAT(Call(connection, Command::Of({"PING"})), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(ConnectionTest, SubscriptionConfirmationsAndMessagesArriveAsPushes) {
  StartServer();
  Recorder& publisher_recorder = NewRecorder();
  Recorder& subscriber_recorder = NewRecorder();
  Connection& publisher = OpenReady(publisher_recorder);
  Connection& subscriber = OpenReady(subscriber_recorder, "subscriber");
  absl::Status subscribed = absl::UnknownError("not run");
  RunOnIo([&] { subscribed = subscriber.SendPubSub(Command::Of({"SUBSCRIBE", "news"})); });
  ASSERT_THAT(subscribed, IsOk());
  ASSERT_TRUE(subscriber_recorder.WaitForPushes(1));
  absl::StatusOr<Reply> receivers = Call(publisher, Command::Of({"PUBLISH", "news", "extra!"}));
  ASSERT_THAT(receivers, IsOk());
  EXPECT_EQ(receivers->integer, 1);
  ASSERT_TRUE(subscriber_recorder.WaitForPushes(2));

  const std::vector<Reply> pushes = subscriber_recorder.pushes();
  ASSERT_EQ(pushes.size(), 2u);
  ASSERT_EQ(pushes[0].elements.size(), 3u);
  EXPECT_EQ(pushes[0].elements[0].str, "subscribe");
  EXPECT_EQ(pushes[0].elements[1].str, "news");
  ASSERT_EQ(pushes[1].elements.size(), 3u);
  EXPECT_EQ(pushes[1].elements[0].str, "message");
  EXPECT_EQ(pushes[1].elements[2].str, "extra!");
  absl::StatusOr<std::vector<std::string>> names = redis_->ClientNames();
  ASSERT_THAT(names, IsOk());
  EXPECT_THAT(*names, Contains(std::string("switchboard:subscriber")));
}

TEST_F(ConnectionTest, UnconfirmedSubscriptionStartsTheConnectionOver) {
  StartServer();
  // A user without channel permissions: its SUBSCRIBE is refused, and no
  // confirmation ever comes.
  ASSERT_EQ(redis_->Command({"ACL", "SETUSER", "deaf", "on", ">pw", "~*", "resetchannels", "+@all"})
                .value_or(""),
            "OK");
  ConnectionOptions options = Options();
  options.user = "deaf";
  options.password = "pw";
  options.command_timeout = absl::Milliseconds(200);
  Recorder& recorder = NewRecorder();
  Connection& subscriber = Open(options, recorder, "subscriber");
  ASSERT_TRUE(recorder.WaitForStates(1));
  absl::Status sent = absl::UnknownError("not run");
  RunOnIo([&] { sent = subscriber.SendPubSub(Command::Of({"SUBSCRIBE", "news"})); });
  ASSERT_THAT(sent, IsOk());
  ASSERT_TRUE(recorder.WaitForStates(3));
  EXPECT_THAT(recorder.states(), ElementsAre(true, false, true));
  EXPECT_THAT(recorder.pushes(), ::testing::IsEmpty());
}

}  // namespace
}  // namespace switchboard::broker::redis
