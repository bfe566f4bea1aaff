// Helpers shared by the Rpc service's acceptance tests (issue 4), which speak
// gRPC through the client library to an in-process Switchboard whose
// upstreams are real nginx servers (tests/testing/nginx_server.h) or
// ScriptedHttpServers: unary calls with their outcome and timing, a paced
// multi-threaded call load, access-log windows and metric polling.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "switchboard/client/client.h"
#include "switchboard/v1/rpc.pb.h"
#include "tests/integration/rpc/scripted_http_server.h"
#include "tests/testing/nginx_server.h"

namespace switchboard::testing {

// How long a test waits for something that must happen.
inline constexpr absl::Duration kRpcWaitTimeout = absl::Seconds(10);

// A configuration with one upstream, `name` at `url`, whose limiter admits
// `rate` calls per second with `burst`, over at most `max_connections`, and
// which never coalesces: load tests make the same call over and over, which
// would otherwise share requests rather than load the provider. `batch`, when
// not empty, is the upstream's `batch:` block (auto-batching on).
std::string LoadTestConfigYaml(absl::string_view name, absl::string_view url, double rate,
                               double burst, int max_connections = 2, absl::string_view batch = "");

// The `batch:` block of the load tests run with auto-batching on.
inline constexpr char kLoadTestBatch[] = "{max_calls: 100}";
// The params of the load tests' calls with auto-batching on: the provider
// behind (StartBatchingProvider) echoes them as each call's result.
inline constexpr char kLoadTestParams[] = "[7]";

// A JSON-RPC provider that answers batches, behind nginx: nginx (started
// with `options`: its rate limit, pushback, access log) proxies `/` to a
// ScriptedHttpServer that answers every call, alone or in a batch, with its
// own id and its params as the result, after `delay`, and counts calls.
struct BatchingProvider {
  std::unique_ptr<ScriptedHttpServer> provider;
  std::unique_ptr<NginxServer> nginx;
};
absl::StatusOr<BatchingProvider> StartBatchingProvider(NginxServer::Options options,
                                                       absl::Duration delay = absl::ZeroDuration());

// The upstream of a load test: nginx alone, answering every call itself
// (`provider` null), or with `batching` StartBatchingProvider() with
// default nginx options and `delay`.
absl::StatusOr<BatchingProvider> StartLoadTestUpstream(bool batching, absl::Duration delay);

// One entry per JSON-RPC call `provider` read, at the time it read the
// request that carried it (a batch's calls share it), in that order: for
// PeakLimitReqExcess over calls rather than HTTP requests.
std::vector<AccessLogEntry> CallEntries(const ScriptedHttpServer& provider);

// Base of a suite whose tests share servers that its SetUpTestSuite()
// starts once and keeps in `shared_`: starting a Switchboard costs seconds
// (its metrics endpoint takes up to 2 s to stop). Each test fails at once
// when they did not start.
template <typename Shared>
class SharedServersTest : public ::testing::Test {
 protected:
  static void TearDownTestSuite() { shared_.reset(); }
  void SetUp() override { ASSERT_NE(shared_, nullptr) << "the suite's servers did not start"; }

  static inline std::unique_ptr<Shared> shared_;
};

// A JSON-RPC call of `method` on `upstream`.
v1::CallRequest RpcRequest(absl::string_view upstream, absl::string_view method,
                           absl::string_view params_json = "");

// A client of the server at `target` whose unary calls carry `deadline` and,
// when `token` is not empty, `authorization: Bearer <token>`.
std::unique_ptr<client::Client> MakeRpcClient(const std::string& target, absl::Duration deadline,
                                              const std::string& token = "");

// One unary Call as its caller saw it.
struct CallOutcome {
  absl::Status status;
  v1::CallResponse response;  // When OK.
  // The `retry-after-ms` trailer, when the server sent one.
  std::optional<absl::Duration> retry_after;
  absl::Time start;
  absl::Time end;
};

// For gMock's messages.
void PrintTo(const CallOutcome& outcome, std::ostream* os);
void PrintTo(const AccessLogEntry& entry, std::ostream* os);

// Makes one unary call and times it. Thread-safe.
CallOutcome TimedCall(const client::Client& client, const v1::CallRequest& request);

// Outcomes by status code.
std::map<absl::StatusCode, int> CountByCode(const std::vector<CallOutcome>& outcomes);

// Successful calls that ended in [from, to).
int CountOkEndedIn(const std::vector<CallOutcome>& outcomes, absl::Time from, absl::Time to);

// Caller threads, each making unary calls with `client` at a steady pace
// until Stop(), together demanding `calls_per_second`: a caller waits for
// its call to end, then for its next turn (at once when it is late), so
// calls refused at once leave the demand where it is.
class CallLoad {
 public:
  struct Options {
    int callers = 50;
    double calls_per_second = 500;
    v1::CallRequest request;
  };

  // Starts the callers. `client` must outlive this object.
  CallLoad(const client::Client& client, Options options);
  ~CallLoad();  // Stops.

  CallLoad(const CallLoad&) = delete;
  CallLoad& operator=(const CallLoad&) = delete;

  // Stops the callers and waits for their last calls. Idempotent.
  void Stop();

  // Every call made, in completion order; complete after Stop().
  std::vector<CallOutcome> outcomes() const;

 private:
  void RunCaller(int index);

  const client::Client& client_;
  const Options options_;
  absl::Notification stop_;
  std::vector<std::thread> callers_;
  mutable absl::Mutex mu_;
  std::vector<CallOutcome> outcomes_ ABSL_GUARDED_BY(mu_);
};

// The access log entries of requests answered in [from, to).
std::vector<AccessLogEntry> EntriesIn(const AccessLog& log, absl::Time from, absl::Time to);

// The most connections nginx had in use at once according to `log`: a
// connection is in use from the start of its first request to the end of its
// last.
int PeakConnectionsInUse(const AccessLog& log);

// The most requests nginx's limit_req (leaky bucket, millisecond clock) held
// in excess at once while answering `entries` at `rate` per second: nginx
// refuses a request that would take it past its `burst`. The log's times are
// when nginx answered, so this approximates what limit_req saw: it shows
// how close a run came to a 429.
double PeakLimitReqExcess(const std::vector<AccessLogEntry>& entries, double rate);

// Scrapes `series` from the metrics page on `port` until its value
// satisfies `done`, or kRpcWaitTimeout passes; returns the last value.
absl::StatusOr<double> WaitForMetric(int port, absl::string_view series,
                                     absl::FunctionRef<bool(double)> done);

// Prints a measured figure of a test and records it in the test's XML
// properties, where tests/perf/bench_timing.sh reads it. Figures that
// depend on the wall clock (rates, shares in a time window, how soon
// something happened) are reported, never asserted: the benchmark holds
// them to their bounds.
void ReportFigure(const std::string& name, double value);

}  // namespace switchboard::testing
