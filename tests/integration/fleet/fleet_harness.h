// The fleet tests' harness (issue 11): the provider and replica settings
// the acceptance tests share, access-log arithmetic, and FleetTest, the
// fixture that starts real `switchboard` replicas on one shared redis-server
// and nginx provider, loads them, kills them and reads what the provider saw.
// Used by global_limit_test.cc.
//
// redis-server and nginx are started once for the suite. Each test's
// replicas use a Redis database of their own (`redis://.../<db>`): the
// replicas a test SIGKILLs stay registered until their heartbeat expires, and
// must not count as live replicas of the next test.
#pragma once

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "tests/integration/rpc/rpc_harness.h"
#include "tests/testing/in_process_server.h"
#include "tests/testing/nginx_server.h"
#include "tests/testing/redis_server.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/switchboard_process.h"

namespace switchboard::testing {

inline constexpr char kUpstream[] = "provider";
inline constexpr char kMethod[] = "getSlot";

// The provider: nginx's limit_req.
inline constexpr double kProviderRate = 100;
inline constexpr int kProviderBurst = 5;

// Every replica's share of the one global limit: the single-replica rate
// test's figures (tests/integration/rpc/rate_limit_test.cc says why 98 and
// 2 against nginx's 100 and 5).
inline constexpr double kSwitchboardRate = 98;
inline constexpr double kSwitchboardBurst = 2;
inline constexpr int kMaxConnections = 2;

// The deadline of every call of the loads: a call the limiter cannot admit
// in time is refused at once, so each caller's next turn comes on time.
inline constexpr absl::Duration kCallDeadline = absl::Milliseconds(100);

// The fleet's coordination, at its documented defaults (written out so the
// figures below can be read against them).
inline constexpr int kHeartbeatMs = 500;
inline constexpr int kReplicaTtlMs = 2000;
inline constexpr int kLeaseMs = 50;
inline constexpr int kRedisTimeoutMs = 250;

// The share of the provider's limit the fleet must use: issue 11's 95 of
// 100 requests/s. Sanitizer builds run unoptimized and several times
// slower, and a limiter loses the time its dispatcher is busy beyond one
// call's interval: there the bound is looser. Everything else the tests
// assert holds in every build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr double kMinShareOfRateLimit = 0.9;
#else
inline constexpr double kMinShareOfRateLimit = 0.95;
#endif

// A 1-second window's total at the provider that counts as "the survivors
// absorbed the killed replica's share": 90% of the limit, looser where
// sanitizers slow everything down (see kMinShareOfRateLimit).
inline constexpr double kMinWindowShareOfRateLimit = kMinShareOfRateLimit - 0.05;

// While Redis is down each replica runs on its fallback share; the provider
// must see at most this many requests in any 1-second window.
inline constexpr double kMaxOutageWindow = 1.1 * kProviderRate;

// The issue's promise, and what the test allows for it (the machine is
// shared and CI runs under ASan): global coordination resumes this long
// after Redis is back.
inline constexpr absl::Duration kPromisedRecovery = absl::Seconds(2);
inline constexpr absl::Duration kAllowedRecovery = absl::Seconds(5);

// Requests that reached the main provider during a pause that a 429 with
// `Retry-After: 1` through another replica started (those already in flight
// or admitted before the news arrived).
inline constexpr int kMaxRequestsDuringPause = 3;
inline constexpr absl::Duration kPushbackRetryAfter = absl::Seconds(1);
// The edges of the pause window left out of the count: nginx stamps a
// request when it answers it, so a request just before or after the pause
// may carry a time a little inside it.
inline constexpr absl::Duration kPauseEdge = absl::Milliseconds(50);

inline constexpr char kLiveReplicas[] = "switchboard_fleet_live_replicas";
inline constexpr char kFallback[] =
    R"(switchboard_global_limit_fallback{kind="upstream",name="provider"})";
inline constexpr char kTokensLeased[] =
    R"(switchboard_global_limit_tokens_leased_total{kind="upstream",name="provider"})";
inline constexpr char kTokensReturned[] =
    R"(switchboard_global_limit_tokens_returned_total{kind="upstream",name="provider"})";
inline constexpr char kLeaseRoundTripsOk[] =
    R"(switchboard_global_limit_lease_round_trips_total{kind="upstream",name="provider",)"
    R"(outcome="ok"})";
inline constexpr char kLeaseRoundTripsError[] =
    R"(switchboard_global_limit_lease_round_trips_total{kind="upstream",name="provider",)"
    R"(outcome="error"})";
inline constexpr char kThrottled[] = R"(switchboard_upstream_throttled_total{upstream="provider"})";
inline constexpr char kRateGauge[] = R"(switchboard_upstream_rate{upstream="provider"})";

// The configuration of one replica: broker on database `db` of `redis`,
// the fleet's coordination at its defaults, and upstream `provider` at `url`
// with the global limit. LoadTestConfigYaml's upstream, plus `scope`.
std::string ReplicaConfigYaml(const RedisServer& redis, int db, absl::string_view url);

// The value of a counter on `port`; 0 while it is absent (not yet counted).
double CounterValue(int port, absl::string_view series);

// `log`'s entries answered in [from, to), in time order (nginx writes a line
// once the request is done, which is not always in answer order).
std::vector<AccessLogEntry> SortedEntries(const AccessLog& log, absl::Time from,
                                          absl::Time to = absl::InfiniteFuture());

int CountStatus(const std::vector<AccessLogEntry>& entries, int status);

// The requests answered in each whole second [from + k s, from + (k + 1) s)
// that ends by `to`.
std::vector<int> PerSecondTotals(const std::vector<AccessLogEntry>& entries, absl::Time from,
                                 absl::Time to);

// The most requests answered in any window of `width`: one starting at each
// request of `sorted` (in time order).
int BusiestWindow(const std::vector<AccessLogEntry>& sorted, absl::Duration width);

// Prints per-second totals on one line, with what the first one starts
// after.
void PrintPerSecond(absl::string_view what, absl::string_view origin,
                    const std::vector<int>& totals);

// Prints when each 429 of `entries` was answered, in seconds after each of
// `events` (name, time), so a failure shows what it followed.
void Print429s(const std::vector<AccessLogEntry>& entries,
               const std::vector<std::pair<std::string, absl::Time>>& events);

// What the provider saw from a test's replicas.
struct ProviderTraffic {
  std::vector<AccessLogEntry> entries;  // Answered since the test began, in time order.
  int requests_429 = 0;
};

// redis-server and the provider, shared by the suite.
struct FleetServers {
  std::unique_ptr<RedisServer> redis;
  std::unique_ptr<NginxServer> provider;
};

// One replica: its process, a client of its own, and that client's load.
struct Replica {
  std::unique_ptr<SwitchboardProcess> process;
  std::unique_ptr<client::Client> client;
  std::unique_ptr<CallLoad> load;  // Last: it uses `client`.
  bool killed = false;
};

class FleetTest : public SharedServersTest<FleetServers> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<RedisServer>> redis = RedisServer::Start();
    NginxServer::Options provider_options;
    provider_options.rate_limit = absl::StrCat(kProviderRate, "r/s");
    provider_options.burst = kProviderBurst;
    absl::StatusOr<std::unique_ptr<NginxServer>> provider = NginxServer::Start(provider_options);
    ASSERT_THAT(redis, IsOk());
    ASSERT_THAT(provider, IsOk());
    shared_.reset(new FleetServers{*std::move(redis), *std::move(provider)});
  }

  void SetUp() override {
    SharedServersTest::SetUp();
    if (HasFatalFailure()) return;
    // Redis has 16 databases; 0 is left alone.
    ASSERT_LT(next_db_, 16) << "more tests than Redis databases: give the suite a second Redis";
    db_ = next_db_++;
    absl::StatusOr<AccessLog> log = shared_->provider->ReadAccessLog();
    ASSERT_THAT(log, IsOk());
    log_entries_before_ = log->entries.size();
    test_start_ = absl::Now();
  }

  void TearDown() override {
    // Loads first: a load stopped after its replica died only collects
    // UNAVAILABLEs.
    for (Replica& replica : replicas_) {
      if (replica.load) replica.load->Stop();
    }
    replicas_.clear();  // SIGKILLs the processes still running.
  }

  RedisServer& redis() { return *shared_->redis; }
  NginxServer& provider() { return *shared_->provider; }

  // Starts a replica whose upstream is at `url` (the shared provider when
  // empty), next in replicas_; with `extra_yaml` appended to its
  // configuration, and its client calling with `token`.
  absl::Status StartReplica(std::string url = "", absl::string_view extra_yaml = "",
                            const std::string& token = "") {
    if (url.empty()) url = provider().url();
    Replica replica;
    replica.process = std::make_unique<SwitchboardProcess>(
        SWITCHBOARD_BINARY, absl::StrCat(ReplicaConfigYaml(redis(), db_, url), extra_yaml));
    if (absl::Status started = replica.process->Start(); !started.ok()) return started;
    replica.client = MakeRpcClient(replica.process->target(), kCallDeadline, token);
    replicas_.push_back(std::move(replica));
    return absl::OkStatus();
  }

  // Starts replica `index`'s load: `calls_per_second` from `callers`
  // threads, each call `getSlot` on the provider.
  void StartLoad(size_t index, double calls_per_second, int callers) {
    replicas_[index].load = std::make_unique<CallLoad>(
        *replicas_[index].client,
        CallLoad::Options{callers, calls_per_second, RpcRequest(kUpstream, kMethod)});
  }

  // Waits until every replica still running counts `live` live replicas
  // (the heartbeats of all, and the expiry of any that died, are through).
  absl::Status WaitForLiveReplicas(int live) {
    for (const Replica& replica : replicas_) {
      if (replica.killed) continue;
      absl::StatusOr<double> seen = WaitForMetric(replica.process->metrics_port(), kLiveReplicas,
                                                  [live](double value) { return value == live; });
      if (!seen.ok()) return seen.status();
      if (*seen != live) {
        return absl::DeadlineExceededError(
            absl::StrCat("a replica counts ", *seen, " live replicas, not ", live));
      }
    }
    return absl::OkStatus();
  }

  // Scrapes `series` from every running replica, all of them every 20 ms,
  // until each has satisfied `done`, or kRpcWaitTimeout passes. Returns, by
  // replica, how long after `since` it was first seen to (nullopt: never, or
  // killed).
  std::vector<std::optional<absl::Duration>> TimeUntilEveryReplica(
      absl::string_view series, absl::FunctionRef<bool(double)> done, absl::Time since) {
    std::vector<std::optional<absl::Duration>> seen(replicas_.size());
    const absl::Time deadline = absl::Now() + kRpcWaitTimeout;
    while (true) {
      bool all = true;
      for (size_t i = 0; i < replicas_.size(); ++i) {
        if (replicas_[i].killed || seen[i].has_value()) continue;
        absl::StatusOr<double> value = ScrapeMetric(replicas_[i].process->metrics_port(), series);
        if (value.ok() && done(*value)) {
          seen[i] = absl::Now() - since;
        } else {
          all = false;
        }
      }
      if (all || absl::Now() >= deadline) return seen;
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  // Kills replica `index` (SIGKILL) and stops its load.
  void KillReplica(size_t index) {
    Replica& replica = replicas_[index];
    EXPECT_THAT(replica.process->Kill(), IsOk());
    replica.killed = true;
    if (replica.load) replica.load->Stop();
  }

  // Stops every load and returns each one's outcomes, by replica.
  std::vector<std::vector<CallOutcome>> StopLoads() {
    std::vector<std::vector<CallOutcome>> outcomes;
    for (Replica& replica : replicas_) {
      if (replica.load) {
        replica.load->Stop();
        outcomes.push_back(replica.load->outcomes());
      } else {
        outcomes.emplace_back();
      }
    }
    return outcomes;
  }

  // What the provider answered since the test began, once its log holds a
  // line for each of `ok_calls` calls answered (nginx writes the line after
  // the answer).
  absl::StatusOr<ProviderTraffic> ProviderTrafficSinceStart(int ok_calls) {
    absl::StatusOr<AccessLog> log = provider().WaitForAccessLog(log_entries_before_ + ok_calls);
    if (!log.ok()) return log.status();
    ProviderTraffic traffic;
    traffic.entries = SortedEntries(*log, test_start_);
    traffic.requests_429 = CountStatus(traffic.entries, 429);
    return traffic;
  }

  // Reports the global limiter's counters of every running replica.
  void ReportLeaseFigures() {
    for (size_t i = 0; i < replicas_.size(); ++i) {
      if (replicas_[i].killed) continue;
      const int port = replicas_[i].process->metrics_port();
      ReportFigure(absl::StrCat("replica", i, "_tokens_leased"), CounterValue(port, kTokensLeased));
      ReportFigure(absl::StrCat("replica", i, "_tokens_returned"),
                   CounterValue(port, kTokensReturned));
      ReportFigure(absl::StrCat("replica", i, "_lease_round_trips_ok"),
                   CounterValue(port, kLeaseRoundTripsOk));
      ReportFigure(absl::StrCat("replica", i, "_lease_round_trips_error"),
                   CounterValue(port, kLeaseRoundTripsError));
    }
  }

  static int OkCalls(const std::vector<CallOutcome>& outcomes) {
    return CountByCode(outcomes)[absl::StatusCode::kOk];
  }

  static int OkCalls(const std::vector<std::vector<CallOutcome>>& outcomes) {
    int ok = 0;
    for (const auto& one : outcomes) ok += OkCalls(one);
    return ok;
  }

  static inline int next_db_ = 1;
  int db_ = 0;
  size_t log_entries_before_ = 0;
  absl::Time test_start_;
  std::vector<Replica> replicas_;
};

}  // namespace switchboard::testing
