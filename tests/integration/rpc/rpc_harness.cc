#include "tests/integration/rpc/rpc_harness.h"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/substitute.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/in_process_server.h"

namespace switchboard::testing {

std::string LoadTestConfigYaml(absl::string_view name, absl::string_view url, double rate,
                               double burst, int max_connections, absl::string_view batch) {
  return absl::Substitute(R"(
upstreams:
  - name: $0
    urls: ["$1"]
    max_connections: $2
    rate_limit: {requests_per_second: $3, burst: $4}
    coalescing: {enabled: false}
$5)",
                          name, url, max_connections, rate, burst,
                          batch.empty() ? "" : absl::StrCat("    batch: ", batch, "\n"));
}

absl::StatusOr<BatchingProvider> StartBatchingProvider(NginxServer::Options options,
                                                       absl::Duration delay) {
  ScriptedHttpServer::Script echo;
  echo.echo_params = true;
  echo.delay = delay;
  absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> provider = ScriptedHttpServer::Start(echo);
  if (!provider.ok()) return provider.status();
  // "http://127.0.0.1:<port>/" -> "127.0.0.1:<port>".
  options.proxy_to =
      std::string(absl::StripSuffix(absl::StripPrefix((*provider)->url(), "http://"), "/"));
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start(options);
  if (!nginx.ok()) return nginx.status();
  return BatchingProvider{*std::move(provider), *std::move(nginx)};
}

absl::StatusOr<BatchingProvider> StartLoadTestUpstream(bool batching, absl::Duration delay) {
  if (batching) return StartBatchingProvider(NginxServer::Options(), delay);
  absl::StatusOr<std::unique_ptr<NginxServer>> nginx = NginxServer::Start();
  if (!nginx.ok()) return nginx.status();
  BatchingProvider upstream;
  upstream.nginx = *std::move(nginx);
  return upstream;
}

std::vector<AccessLogEntry> CallEntries(const ScriptedHttpServer& provider) {
  const std::vector<std::string> bodies = provider.requests();
  const std::vector<absl::Time> times = provider.request_times();
  std::vector<AccessLogEntry> entries;
  for (size_t i = 0; i < bodies.size() && i < times.size(); ++i) {
    for (size_t call = 0; call < SwitchboardRequestsOf(bodies[i]).size(); ++call) {
      AccessLogEntry entry;
      entry.time = times[i];
      entry.status = 200;
      entries.push_back(entry);
    }
  }
  return entries;
}

v1::CallRequest RpcRequest(absl::string_view upstream, absl::string_view method,
                           absl::string_view params_json) {
  v1::CallRequest request;
  request.set_upstream(std::string(upstream));
  request.set_method(std::string(method));
  request.set_params_json(std::string(params_json));
  return request;
}

std::unique_ptr<client::Client> MakeRpcClient(const std::string& target, absl::Duration deadline,
                                              const std::string& token) {
  client::ClientOptions options;
  options.target = target;
  options.rpc_timeout = deadline;
  options.bearer_token = token;
  return std::make_unique<client::Client>(options);
}

void PrintTo(const CallOutcome& outcome, std::ostream* os) {
  *os << outcome.status << " after " << (outcome.end - outcome.start);
  if (outcome.status.ok()) *os << ": " << outcome.response.ShortDebugString();
  if (outcome.retry_after.has_value()) *os << ", retry after " << *outcome.retry_after;
}

void PrintTo(const AccessLogEntry& entry, std::ostream* os) {
  *os << entry.status << " " << entry.uri << " on connection " << entry.connection << " at "
      << absl::FormatTime(entry.time);
}

CallOutcome TimedCall(const client::Client& client, const v1::CallRequest& request) {
  CallOutcome outcome;
  absl::Duration retry_after = absl::ZeroDuration();
  outcome.start = absl::Now();
  absl::StatusOr<v1::CallResponse> response = client.Call(request, &retry_after);
  outcome.end = absl::Now();
  outcome.status = response.status();
  if (response.ok()) outcome.response = *std::move(response);
  // The server never sends a zero delay (at least 1 ms).
  if (retry_after > absl::ZeroDuration()) outcome.retry_after = retry_after;
  return outcome;
}

std::map<absl::StatusCode, int> CountByCode(const std::vector<CallOutcome>& outcomes) {
  std::map<absl::StatusCode, int> counts;
  for (const CallOutcome& outcome : outcomes) ++counts[outcome.status.code()];
  return counts;
}

int CountOkEndedIn(const std::vector<CallOutcome>& outcomes, absl::Time from, absl::Time to) {
  return static_cast<int>(std::count_if(outcomes.begin(), outcomes.end(), [&](const auto& outcome) {
    return outcome.status.ok() && outcome.end >= from && outcome.end < to;
  }));
}

CallLoad::CallLoad(const client::Client& client, Options options)
    : client_(client), options_(std::move(options)) {
  for (int i = 0; i < options_.callers; ++i) callers_.emplace_back([this, i] { RunCaller(i); });
}

CallLoad::~CallLoad() { Stop(); }

void CallLoad::Stop() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  for (std::thread& caller : callers_) {
    if (caller.joinable()) caller.join();
  }
}

std::vector<CallOutcome> CallLoad::outcomes() const {
  absl::MutexLock lock(&mu_);
  return outcomes_;
}

void CallLoad::RunCaller(int index) {
  // Each caller's turns are `period` apart; the callers' turns interleave
  // evenly, so together they demand calls_per_second at a steady pace.
  const absl::Duration period = absl::Seconds(options_.callers / options_.calls_per_second);
  absl::Time turn = absl::Now() + period * index / options_.callers;
  while (!stop_.WaitForNotificationWithTimeout(turn - absl::Now())) {
    CallOutcome outcome = TimedCall(client_, options_.request);
    {
      absl::MutexLock lock(&mu_);
      outcomes_.push_back(std::move(outcome));
    }
    turn = std::max(turn + period, absl::Now());
  }
}

std::vector<AccessLogEntry> EntriesIn(const AccessLog& log, absl::Time from, absl::Time to) {
  std::vector<AccessLogEntry> entries;
  for (const AccessLogEntry& entry : log.entries) {
    if (entry.time >= from && entry.time < to) entries.push_back(entry);
  }
  return entries;
}

int PeakConnectionsInUse(const AccessLog& log) {
  std::map<int64_t, std::pair<absl::Time, absl::Time>> in_use;  // By connection.
  for (const AccessLogEntry& entry : log.entries) {
    const absl::Time start = entry.time - entry.request_time;
    auto [it, first] = in_use.try_emplace(entry.connection, start, entry.time);
    if (first) continue;
    it->second.first = std::min(it->second.first, start);
    it->second.second = std::max(it->second.second, entry.time);
  }
  // +1 when a connection's use starts, -1 when it ends; at equal times the
  // end comes first (a connection replacing another is not a second one).
  std::vector<std::pair<absl::Time, int>> changes;
  for (const auto& [connection, span] : in_use) {
    changes.emplace_back(span.first, 1);
    changes.emplace_back(span.second, -1);
  }
  std::sort(changes.begin(), changes.end());
  int open = 0;
  int peak = 0;
  for (const auto& [time, change] : changes) {
    open += change;
    peak = std::max(peak, open);
  }
  return peak;
}

double PeakLimitReqExcess(const std::vector<AccessLogEntry>& entries, double rate) {
  double excess = 0;
  double peak = 0;
  absl::Time last = absl::InfinitePast();
  for (const AccessLogEntry& entry : entries) {
    const double drained =
        last == absl::InfinitePast() ? 0 : rate * absl::ToDoubleSeconds(entry.time - last);
    excess = std::max(0.0, excess - drained) + 1;
    last = entry.time;
    peak = std::max(peak, excess);
  }
  return peak;
}

absl::StatusOr<double> WaitForMetric(int port, absl::string_view series,
                                     absl::FunctionRef<bool(double)> done) {
  const absl::Time deadline = absl::Now() + kRpcWaitTimeout;
  absl::StatusOr<double> value = ScrapeMetric(port, series);
  while (!(value.ok() && done(*value)) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    value = ScrapeMetric(port, series);
  }
  return value;
}

void ReportFigure(const std::string& name, double value) {
  std::cout << "[ measured ] " << name << " = " << value << std::endl;
  ::testing::Test::RecordProperty(name, absl::StrCat(value));
}

}  // namespace switchboard::testing
