// What the ws::WebSocketClient tests share (websocket_client_test.cc over
// ws://, websocket_client_tls_test.cc over wss://): a Recorder of the
// observer's callbacks, and the fixture that runs a client on a real
// dispatcher against a scripted provider started once per suite.
//
// The client lives on the dispatcher thread: the tests drive it there with
// RunOnDispatcher and wait for the observer's callbacks through Recorder.
#pragma once

#include <unistd.h>

#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "server/ws/websocket_client.h"
#include "tests/testing/run_on_dispatcher.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_certificates.h"
#include "tests/testing/ws_provider_server.h"

namespace switchboard::ws::client_test {

using ::switchboard::testing::BindRefusingPort;
using ::switchboard::testing::IsOk;
using ::switchboard::testing::IsOkAndHolds;
using ::switchboard::testing::ListenOnLoopback;
using ::switchboard::testing::LoopbackSocket;
using ::switchboard::testing::RunOnDispatcher;
using ::switchboard::testing::StatusIs;
using ::switchboard::testing::TestCertificates;
using ::switchboard::testing::WsProviderOptions;
using ::switchboard::testing::WsProviderServer;
using ::switchboard::testing::WsProviderStats;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::SizeIs;
using ::testing::StartsWith;

// The bound on anything that should happen at once: generous, for a loaded
// machine or a TSan build. Waits end as soon as the awaited thing happens.
constexpr absl::Duration kWait = absl::Seconds(20);

// What the provider puts around a Solana notification's result.
constexpr absl::string_view kSlotNotificationPrefix =
    R"({"jsonrpc":"2.0","method":"slotNotification","params":{"result":)";

inline std::string SlotNotification(absl::string_view result, absl::string_view sub) {
  return absl::StrCat(kSlotNotificationPrefix, result, ",\"subscription\":", sub, "}}");
}

inline std::string SlotSubscribe(int id) {
  return absl::StrCat(R"({"jsonrpc":"2.0","id":)", id, R"(,"method":"slotSubscribe"})");
}

inline std::string ResultAnswer(absl::string_view result, int id) {
  return absl::StrCat(R"({"jsonrpc":"2.0","result":)", result, R"(,"id":)", id, "}");
}

// The observer: records each callback (made on the dispatcher thread) for
// the test's thread to wait for. The optional hooks run on the dispatcher
// thread after the callback is recorded, outside the lock; set them before
// connecting.
class Recorder final : public WebSocketObserver {
 public:
  std::function<void()> on_open;
  std::function<void(absl::string_view)> on_text;
  std::function<void(const absl::Status&)> on_closed;

  void OnOpen() override {
    {
      absl::MutexLock lock(&mu_);
      ++opens_;
      changed_.SignalAll();
    }
    if (on_open) on_open();
  }

  void OnText(absl::string_view message) override {
    {
      absl::MutexLock lock(&mu_);
      texts_.emplace_back(message);
      changed_.SignalAll();
    }
    if (on_text) on_text(message);
  }

  void OnClosed(absl::Status why) override {
    {
      absl::MutexLock lock(&mu_);
      closes_.push_back(why);
      changed_.SignalAll();
    }
    if (on_closed) on_closed(why);
  }

  // OK once OnOpen ran; the status of an OnClosed that came instead;
  // DEADLINE_EXCEEDED after kWait.
  absl::Status WaitForOpen() {
    absl::MutexLock lock(&mu_);
    Await([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return opens_ > 0 || !closes_.empty(); },
          kWait);
    if (opens_ > 0) return absl::OkStatus();
    if (!closes_.empty()) return closes_.front();
    return absl::DeadlineExceededError(
        absl::StrCat("no OnOpen within ", absl::FormatDuration(kWait)));
  }

  // The first OnClosed's status, once it ran; nullopt when none came within
  // `timeout`.
  std::optional<absl::Status> WaitForClosed(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    Await([this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !closes_.empty(); }, timeout);
    if (closes_.empty()) return std::nullopt;
    return closes_.front();
  }

  // The messages so far, once there are `count` of them (or an OnClosed
  // came, or kWait passed: then fewer).
  std::vector<std::string> WaitForTexts(size_t count) {
    absl::MutexLock lock(&mu_);
    Await([this, count]()
              ABSL_NO_THREAD_SAFETY_ANALYSIS { return texts_.size() >= count || !closes_.empty(); },
          kWait);
    return texts_;
  }

  int opens() {
    absl::MutexLock lock(&mu_);
    return opens_;
  }
  std::vector<std::string> texts() {
    absl::MutexLock lock(&mu_);
    return texts_;
  }
  std::vector<absl::Status> closes() {
    absl::MutexLock lock(&mu_);
    return closes_;
  }

 private:
  // A CondVar loop rather than Mutex::AwaitWithTimeout: Abseil evaluates an
  // absl::Condition inside its own (in TSan builds uninstrumented) code,
  // where tests/testing/tsan_absl_sync.cc cannot show TSan the lock.
  void Await(absl::FunctionRef<bool()> done, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done()) {
      if (changed_.WaitWithDeadline(&mu_, deadline)) return;  // Timed out.
    }
  }

  absl::Mutex mu_;
  absl::CondVar changed_;  // Signalled with each callback.
  int opens_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> texts_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> closes_ ABSL_GUARDED_BY(mu_);
};

// One provider per suite (suites run one after another, so they share the
// pointer); a dispatcher, a Recorder and at most one client per test.
class WebSocketClientTestBase : public ::testing::Test {
 protected:
  static void StartProvider(const WsProviderOptions& options = WsProviderOptions()) {
    absl::StatusOr<std::unique_ptr<WsProviderServer>> started = WsProviderServer::Start(options);
    if (started.ok()) {
      provider_ = started->release();
    } else {
      start_error_ = started.status().ToString();
    }
  }

  static void StopProvider() {
    delete provider_;
    provider_ = nullptr;
  }

  void SetUp() override {
    dispatcher_.Start();
    ASSERT_NE(provider_, nullptr) << "the WebSocket provider did not start: " << start_error_;
    ASSERT_THAT(provider_->Reset(), IsOk());
  }

  void TearDown() override {
    RunOnDispatcher(dispatcher_, [this] { client_.reset(); });
    dispatcher_.Shutdown();
  }

  WsProviderServer& provider() { return *provider_; }

  // Connect() on the dispatcher thread; the client is kept in client_.
  absl::Status Connect(const std::string& url, WebSocketClientOptions options = {}) {
    absl::Status status;
    RunOnDispatcher(dispatcher_, [&] {
      absl::StatusOr<std::unique_ptr<WebSocketClient>> client =
          WebSocketClient::Connect(dispatcher_, url, std::move(options), recorder_);
      if (client.ok()) {
        client_ = *std::move(client);
      } else {
        status = client.status();
      }
    });
    return status;
  }

  // Connects and waits for OnOpen.
  absl::Status Open(const std::string& url, WebSocketClientOptions options = {}) {
    if (absl::Status connected = Connect(url, std::move(options)); !connected.ok()) {
      return connected;
    }
    return recorder_.WaitForOpen();
  }

  absl::Status Send(std::string message) {
    absl::Status status;
    RunOnDispatcher(dispatcher_, [&] {
      status = client_ == nullptr ? absl::InternalError("the test destroyed the client")
                                  : client_->SendText(message);
    });
    return status;
  }

  size_t QueuedBytes() {
    size_t bytes = 0;
    RunOnDispatcher(dispatcher_, [&] { bytes = client_ == nullptr ? 0 : client_->queued_bytes(); });
    return bytes;
  }

  void CloseClient() {
    RunOnDispatcher(dispatcher_, [this] {
      if (client_ != nullptr) client_->Close();
    });
  }

  // Sends slotSubscribe with `id` and waits until the provider answered it
  // and made it live (a notification can follow); its subscription id as
  // JSON text. The answer is left for the test to check.
  absl::StatusOr<std::string> Subscribe(int id) {
    absl::StatusOr<WsProviderStats> before = provider().Stats();
    if (!before.ok()) return before.status();
    const size_t count = before->subscribes.size();
    if (absl::Status sent = Send(SlotSubscribe(id)); !sent.ok()) return sent;
    absl::StatusOr<WsProviderStats> after = provider().WaitFor(
        [count](const WsProviderStats& stats) { return stats.subscribes.size() > count; }, kWait,
        "the subscribe");
    if (!after.ok()) return after.status();
    return after->subscribes.back().sub;
  }

  // Waits until connection `conn` ended at the provider and returns the
  // close code the client sent (1006: none); 0, failing the test, when it
  // did not end within kWait.
  int CloseCodeAtProvider(int64_t conn) {
    absl::StatusOr<WsProviderStats> stats = provider().WaitFor(
        [conn](const WsProviderStats& s) { return s.close_codes.count(conn) > 0; }, kWait,
        absl::StrCat("the end of connection ", conn));
    if (!stats.ok()) {
      ADD_FAILURE() << stats.status();
      return 0;
    }
    return stats->close_codes.at(conn);
  }

  static inline WsProviderServer* provider_ = nullptr;
  static inline std::string start_error_;

  event::DispatcherImpl dispatcher_{"ws-test", common::RealClock::Get()};
  Recorder recorder_;                        // Outlives client_.
  std::unique_ptr<WebSocketClient> client_;  // Dispatcher thread only.
};

}  // namespace switchboard::ws::client_test
