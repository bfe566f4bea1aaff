// The upstream client's unit-test fixture: a fake HTTP pool whose requests
// the test answers, an observer that counts, and a simulated clock.
// Shared by upstream_client_test.cc and upstream_batching_test.cc.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "server/http/http_pool.h"
#include "server/upstream/upstream_client.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::upstream {

// An HttpPool that records requests; the test answers them. Dispatcher
// thread only.
class FakeHttpPool final : public http::HttpPool {
 public:
  struct Sent {
    http::Request request;
    http::ResponseCallback done;
  };

  http::RequestId Send(http::Request request, http::ResponseCallback done) override {
    sent.push_back({std::move(request), std::move(done)});
    return sent.size();
  }
  bool Cancel(http::RequestId id) override {
    sent[id - 1].done = nullptr;
    return true;
  }
  int open_connections() const override { return 0; }

  // Answers request `index` (0-based).
  void Answer(size_t index, absl::StatusOr<http::Response> response) {
    http::ResponseCallback done = std::move(sent.at(index).done);
    ASSERT_TRUE(done != nullptr) << "request " << index << " was answered or cancelled";
    done(std::move(response));
  }

  std::vector<Sent> sent;
};

inline http::Response Http(int status, std::string body,
                           std::optional<absl::Duration> retry_after = std::nullopt) {
  return http::Response{status, std::move(body), retry_after};
}

inline http::Response Result(absl::string_view result) {
  return Http(200, absl::StrCat(R"({"jsonrpc":"2.0","id":1,"result":)", result, "}"));
}

class NullObserver final : public UpstreamObserver {
 public:
  void OnUpstreamRequest(absl::string_view, absl::string_view, absl::string_view,
                         absl::Duration) override {}
  void OnThrottled(absl::string_view) override { ++throttled; }
  void OnCacheHit(absl::string_view, absl::string_view) override { ++cache_hits; }
  void OnCoalesced(absl::string_view, absl::string_view) override { ++coalesced; }
  void OnAdmitted(absl::string_view, absl::Duration) override {}
  void OnRejected(absl::string_view, absl::string_view) override {}
  void OnRateChanged(absl::string_view, double) override {}
  void OnQueueDepth(absl::string_view, size_t) override {}
  void OnConnectionsChanged(absl::string_view, int) override {}
  void OnBatchSent(absl::string_view, size_t calls) override { batches.push_back(calls); }
  void OnBatchWaiting(absl::string_view, size_t calls) override { batch_waiting = calls; }

  int throttled = 0;
  int cache_hits = 0;
  int coalesced = 0;
  std::vector<size_t> batches;
  size_t batch_waiting = 0;
};

class UpstreamClientTest : public ::testing::Test {
 protected:
  UpstreamClientTest() : dispatcher_("upstream-client-test", clock_) { dispatcher_.Start(); }

  ~UpstreamClientTest() override {
    Run([&] { client_.reset(); });
  }

  void Run(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(dispatcher_, std::move(fn)); }

  // Lets everything due now run: timers at the current simulated time, and
  // what they post, a few steps deep.
  void Settle() {
    for (int step = 0; step < 3; ++step) {
      clock_.Advance(absl::ZeroDuration());
      Run([] {});
    }
  }

  // A client on URLs "http://primary" and "http://fallback", without a rate
  // limit unless the test sets one, and with the clients' `quotas` if any.
  void Create(UpstreamOptions options, ratelimit::ClientQuotas* quotas = nullptr) {
    options.name = "solana";
    if (options.urls.empty()) options.urls = {"http://primary", "http://fallback"};
    Run([&] {
      client_ = std::make_unique<UpstreamClient>(
          dispatcher_, std::move(options),
          [this](http::HttpPoolObserver&) {
            auto pool = std::make_unique<FakeHttpPool>();
            pool_ = pool.get();
            return pool;
          },
          observer_, quotas);
    });
  }

  static UpstreamOptions Unlimited() {
    UpstreamOptions options;
    options.rate_limited = false;
    return options;
  }

  // Starts a call with a deadline `timeout` from now; its answer lands in
  // answers_[index].
  size_t Start(std::string method, std::string params = "", std::string raw_body = "",
               absl::Duration timeout = absl::Seconds(30)) {
    const size_t index = answers_.size();
    answers_.emplace_back(absl::UnknownError("not answered"));
    UpstreamCall call;
    call.client_id = "worker";
    call.method = std::move(method);
    call.params_json = std::move(params);
    call.raw_body = std::move(raw_body);
    call.deadline = clock_.Now() + timeout;
    Run([&] {
      client_->Start(
          index + 1, std::move(call),
          [this, index](absl::StatusOr<upstream::Answer> answer) { answers_[index] = answer; });
    });
    return index;
  }

  size_t SentCount() {
    Settle();
    size_t count = 0;
    Run([&] { count = pool_->sent.size(); });
    return count;
  }

  void Respond(size_t index, absl::StatusOr<http::Response> response) {
    Settle();
    Run([&] { pool_->Answer(index, std::move(response)); });
  }

  std::string SentUrl(size_t index) {
    Settle();
    std::string url;
    Run([&] { url = pool_->sent.at(index).request.url; });
    return url;
  }

  std::string SentBody(size_t index) {
    Settle();
    std::string body;
    Run([&] { body = pool_->sent.at(index).request.body; });
    return body;
  }

  absl::StatusOr<upstream::Answer> AnswerOf(size_t index) {
    Settle();
    absl::StatusOr<upstream::Answer> answer = absl::UnknownError("");
    Run([&] { answer = answers_.at(index); });
    return answer;
  }

  common::SimulatedClock clock_{absl::FromUnixSeconds(1000)};
  event::DispatcherImpl dispatcher_;
  NullObserver observer_;
  std::unique_ptr<UpstreamClient> client_;
  FakeHttpPool* pool_ = nullptr;
  std::vector<absl::StatusOr<upstream::Answer>> answers_;
};

}  // namespace switchboard::upstream
