// example_rpc_workers: seed 004's scene. Five workers with different jobs
// share one rate-limited Solana JSON-RPC provider, not by each opening
// connections of its own (which the provider sees as five clients and
// throttles), but through Switchboard's Rpc service ("Option 2: connection
// proxy service"), which holds the provider's connections and admits calls
// at the provider's rate. The workers are threads of one process here, so
// they also share one Client (one gRPC channel); as separate processes they
// would each have one, and Switchboard would still pace them together.
//
//   slot-watcher      getSlot every 200 ms; the latest slot feeds block-fetcher
//   balance-checker   getBalance of --account every second
//   block-fetcher     getBlock of the latest slot every 500 ms
//   program-scanner   getProgramAccounts, a burst of 5 every 3 s: costly
//                     (an upstream's `method_cost` can charge it more)
//   tx-submitter      sendTransaction every second
//   watcher           a provider subscription (--watch_method, slotSubscribe)
//                     over the provider's WebSocket, which Switchboard shares
//                     with every other worker watching the same thing
//
// (--pace multiplies every call rate.) Each call has a deadline (--call_timeout).
// A call Switchboard cannot admit in time is refused at once with
// RESOURCE_EXHAUSTED and a `retry-after-ms` trailer: the worker waits that
// long and makes the same call again. Such a call never reached the
// provider, so this is safe even for sendTransaction. Other failures are
// retried (with backoff) only for reads that may safely be sent twice
// (UNAVAILABLE: every URL failed); a transaction whose submission failed
// otherwise is counted and dropped, since it may have been sent.
//
// The watcher counts its notifications; it subscribes again, with backoff,
// when its stream ends (a Switchboard restart or drain, an overflow
// disconnect). Switchboard itself subscribes again when its provider
// connection drops, and flags the next notification (`after_resubscribe`).
// A watch the server refuses for good (the upstream has no `ws_urls`, the
// provider refused the method) stops the watcher only: it is reported on
// stderr and as refused=1, and the other workers go on. --watch=false runs
// without it.
//
// Runs for --duration, or until SIGTERM or SIGINT; then prints one line of
// statistics per worker on stdout:
//   worker=slot-watcher method=getSlot ok=149 rpc_errors=0 throttled=3
//     throttled_wait_ms=212 failed=0
//   worker=watcher method=slotSubscribe notifications=75 after_resubscribe=0
//     dropped=0 subscriptions=1 refused=0
// (each on one line), and exits 0. Exits 1 when the server refuses the calls
// for good (an unknown upstream, a bad token, ...).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "switchboard/client/client.h"
#include "switchboard/client/watcher.h"
#include "switchboard/v1/rpc.pb.h"
#include "worker.h"

ABSL_FLAG(std::string, upstream, "solana", "The upstream's name in Switchboard's configuration.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(30),
          "How long to run; 0: until SIGTERM or SIGINT.");
ABSL_FLAG(absl::Duration, call_timeout, absl::Seconds(1),
          "The deadline of each call, queueing for the rate limit included.");
ABSL_FLAG(double, pace, 1.0, "Multiplies every worker's call rate.");
ABSL_FLAG(std::string, account, "Vote111111111111111111111111111111111111111",
          "balance-checker: the account whose balance it checks.");
ABSL_FLAG(bool, watch, true,
          "Run the watcher, which needs an upstream with ws_urls (without them it reports the "
          "refusal and the other workers go on).");
ABSL_FLAG(std::string, watch_method, "slotSubscribe",
          "watcher: the subscribe method (slotSubscribe, rootSubscribe, ...).");
ABSL_FLAG(std::string, watch_params, "", "watcher: the subscribe params as JSON; empty: none.");

namespace switchboard::examples {
namespace {

constexpr char kUsage[] = R"(five workers sharing one rate-limited JSON-RPC upstream.

  example_rpc_workers [--server=HOST:PORT] [--token=T] [--upstream=solana]
                      [--duration=30s] [--call_timeout=1s] [--pace=1]
                      [--watch=true] [--watch_method=slotSubscribe]
                      [--watch_params=JSON]

Honours RESOURCE_EXHAUSTED + retry-after-ms by waiting and calling again.
A sixth worker watches a provider subscription through Switchboard.
Prints one line of statistics per worker when it stops.)";

// How long the watcher waits for the provider to accept its subscription
// before it only waits for the stream's end.
constexpr absl::Duration kLiveTimeout = absl::Seconds(10);

// What one worker does, round after round.
struct WorkerPlan {
  std::string name;
  std::string method;
  // Between the starts of two rounds, at --pace 1.
  absl::Duration interval;
  // The params of each call of the next round, in order (more than one call
  // makes the round a burst).
  std::function<std::vector<std::string>()> round;
  // Whether a call that may have reached the provider can be sent again.
  bool may_resend;
  // Sees each result (the JSON-RPC `result`, as text).
  std::function<void(const std::string& result_json)> on_result;
};

// What one worker's calls came to. Written by its thread only; read after
// it was joined.
struct WorkerStats {
  int64_t ok = 0;          // Answered with a result.
  int64_t rpc_errors = 0;  // Answered with a JSON-RPC error object.
  int64_t throttled = 0;   // Refused with RESOURCE_EXHAUSTED, then made again.
  absl::Duration throttled_wait;
  int64_t failed = 0;  // Given up on.
};

// One worker: runs its plan's rounds on the thread that calls Run(), until
// shutdown, and counts what its calls came to.
class RpcWorker {
 public:
  RpcWorker(const client::Client& client, Shutdown& shutdown, std::string upstream, WorkerPlan plan,
            double pace)
      : client_(client),
        shutdown_(shutdown),
        upstream_(std::move(upstream)),
        plan_(std::move(plan)),
        interval_(plan_.interval / pace) {}

  // Runs rounds until shutdown. On a permanent failure it requests the
  // shutdown of every worker, and failure() says why.
  void Run() {
    absl::Time next_round = absl::Now();
    do {
      for (const std::string& params : plan_.round()) {
        if (!CallUntilAnswered(params)) return;
      }
      // A round that ran late (its calls waited) starts the next one at once,
      // without making up for the time lost.
      next_round = std::max(next_round + interval_, absl::Now());
    } while (!shutdown_.WaitFor(next_round - absl::Now()));
  }

  const WorkerPlan& plan() const { return plan_; }
  const WorkerStats& stats() const { return stats_; }
  const absl::Status& failure() const { return failure_; }

 private:
  // Makes one call, again and again while it is refused for now; false when
  // the worker must stop (shutdown, or a permanent failure).
  bool CallUntilAnswered(const std::string& params) {
    v1::CallRequest request;
    request.set_upstream(upstream_);
    request.set_method(plan_.method);
    request.set_params_json(params);
    common::Backoff backoff(RetryBackoff(absl::Milliseconds(50), absl::Seconds(2)));
    while (!shutdown_.requested()) {
      absl::Duration retry_after = absl::ZeroDuration();
      const absl::StatusOr<v1::CallResponse> response = client_.Call(request, &retry_after);
      if (response.ok()) {
        if (response->has_error_json()) {
          ++stats_.rpc_errors;
          std::cerr << plan_.name << ": " << plan_.method << " answered an error "
                    << response->error_json() << std::endl;
        } else {
          ++stats_.ok;
          if (plan_.on_result) plan_.on_result(response->result_json());
        }
        return true;
      }
      const absl::Status& status = response.status();
      if (IsPermanentFailure(status)) {
        failure_ = status;
        shutdown_.Request(absl::StrCat(plan_.name, " failed"));
        return false;
      }
      const bool refused = status.code() == absl::StatusCode::kResourceExhausted;
      if (!refused && !(plan_.may_resend && status.code() == absl::StatusCode::kUnavailable)) {
        ++stats_.failed;
        std::cerr << plan_.name << ": " << plan_.method << " failed, not sent again: " << status
                  << std::endl;
        return true;
      }
      // Refused before it reached the provider: wait as long as Switchboard
      // says (or back off when it did not say), and call again.
      const absl::Duration delay = retry_after > absl::ZeroDuration()
                                       ? retry_after
                                       : absl::Trunc(backoff.Next(random_), absl::Milliseconds(1));
      if (refused) {
        ++stats_.throttled;
        stats_.throttled_wait += delay;
      } else {
        std::cerr << plan_.name << ": " << plan_.method << " failed (" << status << "), again in "
                  << absl::FormatDuration(delay) << std::endl;
      }
      shutdown_.WaitFor(delay);
    }
    return false;
  }

  const client::Client& client_;
  Shutdown& shutdown_;
  const std::string upstream_;
  const WorkerPlan plan_;
  const absl::Duration interval_;
  WorkerStats stats_;
  absl::Status failure_;
  absl::BitGen random_;  // The jitter of CallUntilAnswered's backoffs.
};

// The watcher: one provider subscription through Switchboard (Rpc.Subscribe),
// watched again with backoff whenever its stream ends, until shutdown or a
// refusal for good.
class SubscriptionWatcher {
 public:
  SubscriptionWatcher(const client::Client& client, Shutdown& shutdown, std::string upstream,
                      std::string method, std::string params_json)
      : client_(client), shutdown_(shutdown) {
    request_.set_upstream(std::move(upstream));
    request_.set_method(std::move(method));
    request_.set_params_json(std::move(params_json));
  }

  // Watches until shutdown, or until the server refuses the watch for good
  // (said on stderr and in Summary(); the other workers are not stopped).
  void Run() {
    common::Backoff backoff(RetryBackoff(absl::Milliseconds(100), absl::Seconds(5)));
    absl::BitGen random;
    while (!shutdown_.requested()) {
      client::Watcher watcher(client_, request_,
                              [this](const v1::RpcNotification& n) { OnNotification(n); });
      const StopOnShutdown stop_watcher(shutdown_, [&watcher] { watcher.Stop(); });
      if (watcher.WaitUntilLive(kLiveTimeout).ok()) {
        ++subscriptions_;
        backoff.Reset();
      }
      const absl::Status ended = watcher.Wait();
      if (shutdown_.requested()) return;
      if (IsPermanentFailure(ended)) {
        refusal_ = ended;
        std::cerr << "rpc_workers: watcher stopped, the others go on: the server refused "
                  << request_.method() << " on upstream " << request_.upstream() << ": " << ended
                  << std::endl;
        return;
      }
      const absl::Duration delay = absl::Trunc(backoff.Next(random), absl::Milliseconds(1));
      std::cerr << "rpc_workers: watcher: the subscription ended (" << ended
                << "); watching again in " << absl::FormatDuration(delay) << std::endl;
      shutdown_.WaitFor(delay);
    }
  }

  // The summary line's fields after the first; read after Run() returned.
  std::string Summary() const {
    return absl::StrCat("method=", request_.method(), " notifications=", notifications_.load(),
                        " after_resubscribe=", after_resubscribe_.load(),
                        " dropped=", dropped_.load(), " subscriptions=", subscriptions_,
                        " refused=", refusal_.ok() ? 0 : 1);
  }

 private:
  // On a gRPC thread, one notification at a time.
  void OnNotification(const v1::RpcNotification& notification) {
    if (notifications_.fetch_add(1) == 0) {
      // Once, so that the log shows the subscription works.
      std::cerr << "rpc_workers: watcher: first notification of " << request_.method()
                << " (sequence " << notification.sequence() << ")" << std::endl;
    }
    if (notification.after_resubscribe()) {
      ++after_resubscribe_;
      std::cerr << "rpc_workers: watcher: Switchboard subscribed again; notifications before "
                   "sequence "
                << notification.sequence() << " may be missing" << std::endl;
    }
    dropped_ += static_cast<int64_t>(notification.dropped_since_last());
  }

  const client::Client& client_;
  Shutdown& shutdown_;
  v1::RpcSubscribeRequest request_;
  std::atomic<int64_t> notifications_{0};
  std::atomic<int64_t> after_resubscribe_{0};
  std::atomic<int64_t> dropped_{0};
  int64_t subscriptions_ = 0;  // Run()'s thread only.
  absl::Status refusal_;       // Run()'s thread only.
};

// The five workers of the scene. slot-watcher writes `latest_slot`,
// block-fetcher reads it.
std::vector<WorkerPlan> ScenePlans(std::atomic<int64_t>& latest_slot) {
  const std::string account = absl::GetFlag(FLAGS_account);
  const auto same_params = [](std::string params) {
    return [params = std::move(params)] { return std::vector<std::string>{params}; };
  };
  std::vector<WorkerPlan> plans;
  plans.push_back({"slot-watcher", "getSlot", absl::Milliseconds(200), same_params(""),
                   /*may_resend=*/true, [&latest_slot](const std::string& result_json) {
                     int64_t slot = 0;
                     if (absl::SimpleAtoi(result_json, &slot)) {
                       latest_slot = slot;
                     } else {
                       std::cerr << "slot-watcher: getSlot answered " << result_json
                                 << ", not a slot number" << std::endl;
                     }
                   }});
  plans.push_back({"balance-checker", "getBalance", absl::Seconds(1),
                   same_params(absl::StrCat(R"([")", account, R"("])")), /*may_resend=*/true,
                   nullptr});
  plans.push_back({"block-fetcher", "getBlock", absl::Milliseconds(500),
                   [&latest_slot] {
                     return std::vector<std::string>{
                         absl::StrCat("[", latest_slot.load(),
                                      R"(,{"encoding":"json","transactionDetails":"signatures",)",
                                      R"("maxSupportedTransactionVersion":0}])")};
                   },
                   /*may_resend=*/true, nullptr});
  plans.push_back({"program-scanner", "getProgramAccounts", absl::Seconds(3),
                   [] {
                     std::vector<std::string> round;
                     for (const char* program : {"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
                                                 "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb",
                                                 "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL",
                                                 "Stake11111111111111111111111111111111111111",
                                                 "Vote111111111111111111111111111111111111111"}) {
                       round.push_back(absl::StrCat(R"([")", program,
                                                    R"(",{"encoding":"base64","dataSlice":)",
                                                    R"({"offset":0,"length":0}}])"));
                     }
                     return round;
                   },
                   /*may_resend=*/true, nullptr});
  // A real submitter signs a new transaction each time; this one sends the
  // same placeholder bytes.
  plans.push_back({"tx-submitter", "sendTransaction", absl::Seconds(1),
                   same_params(R"(["AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",{"encoding":"base64"}])"),
                   /*may_resend=*/false, nullptr});
  return plans;
}

int Run() {
  const double pace = absl::GetFlag(FLAGS_pace);
  if (!(pace > 0)) {
    std::cerr << "rpc_workers: --pace must be above 0, got " << pace << std::endl;
    return kExitUsage;
  }
  Shutdown shutdown;
  client::ClientOptions options = ClientOptionsFromFlags();
  options.rpc_timeout = absl::GetFlag(FLAGS_call_timeout);
  client::Client client(options);

  std::atomic<int64_t> latest_slot{0};
  std::vector<std::unique_ptr<RpcWorker>> workers;
  for (WorkerPlan& plan : ScenePlans(latest_slot)) {
    workers.push_back(std::make_unique<RpcWorker>(client, shutdown, absl::GetFlag(FLAGS_upstream),
                                                  std::move(plan), pace));
  }
  std::unique_ptr<SubscriptionWatcher> watcher;
  if (absl::GetFlag(FLAGS_watch)) {
    watcher = std::make_unique<SubscriptionWatcher>(client, shutdown, absl::GetFlag(FLAGS_upstream),
                                                    absl::GetFlag(FLAGS_watch_method),
                                                    absl::GetFlag(FLAGS_watch_params));
  }
  std::vector<std::thread> threads;
  if (watcher != nullptr) threads.emplace_back([&watcher] { watcher->Run(); });
  for (const auto& worker : workers) threads.emplace_back([&worker] { worker->Run(); });
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  if (!shutdown.WaitFor(duration == absl::ZeroDuration() ? absl::InfiniteDuration() : duration)) {
    shutdown.Request("duration");
  }
  for (std::thread& thread : threads) thread.join();

  int exit_code = kExitOk;
  for (const auto& worker : workers) {
    const WorkerStats& stats = worker->stats();
    std::cout << "worker=" << worker->plan().name << " method=" << worker->plan().method
              << " ok=" << stats.ok << " rpc_errors=" << stats.rpc_errors
              << " throttled=" << stats.throttled
              << " throttled_wait_ms=" << absl::ToInt64Milliseconds(stats.throttled_wait)
              << " failed=" << stats.failed << std::endl;
    if (!worker->failure().ok()) {
      std::cerr << "rpc_workers: " << worker->plan().name << " gave up, and stopped the others: "
                << "the server refused " << worker->plan().method << " on upstream "
                << absl::GetFlag(FLAGS_upstream) << ": " << worker->failure() << std::endl;
      exit_code = kExitFailure;
    }
  }
  if (watcher != nullptr) std::cout << "worker=watcher " << watcher->Summary() << std::endl;
  return exit_code;
}

}  // namespace
}  // namespace switchboard::examples

int main(int argc, char** argv) {
  switchboard::examples::ParseWorkerFlags(argc, argv, switchboard::examples::kUsage);
  return switchboard::examples::Run();
}
