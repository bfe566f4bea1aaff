#include "server/http/sharded_http_pool.h"

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/common/clock.h"
#include "server/event/dispatcher_impl.h"
#include "tests/testing/run_on_dispatcher.h"

namespace switchboard::http {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(ConnectionSharesTest, SplitsEvenlyLargerFirstNoneEmpty) {
  EXPECT_THAT(ConnectionShares(2, 2), ElementsAre(1, 1));
  EXPECT_THAT(ConnectionShares(5, 2), ElementsAre(3, 2));
  EXPECT_THAT(ConnectionShares(8, 3), ElementsAre(3, 3, 2));
  EXPECT_THAT(ConnectionShares(1, 4), ElementsAre(1));
  EXPECT_THAT(ConnectionShares(3, 1), ElementsAre(3));
  EXPECT_THAT(ConnectionShares(3, 0), ElementsAre());
}

TEST(OriginOfTest, KeepsSchemeAndAuthorityOnly) {
  EXPECT_EQ(OriginOf("https://user:pw@host:8443/v2/key?x=1#f"), "https://user:pw@host:8443");
  EXPECT_EQ(OriginOf("http://host"), "http://host");
  EXPECT_EQ(OriginOf("http://host?key=1"), "http://host");
  EXPECT_EQ(OriginOf("not a url"), "not a url");
}

// A pool that keeps its requests until the test answers them, on the
// shard's thread; what it saw is read after a RunOnDispatcher on it.
class FakePool final : public HttpPool {
 public:
  FakePool(event::Dispatcher& dispatcher, int connections_per_host, HttpPoolObserver& observer,
           std::atomic<int>& destroyed_on_own_thread)
      : dispatcher_(dispatcher),
        connections_per_host_(connections_per_host),
        observer_(observer),
        destroyed_on_own_thread_(destroyed_on_own_thread) {}
  ~FakePool() override {
    if (dispatcher_.IsDispatcherThread()) ++destroyed_on_own_thread_;
    for (auto& [id, request] : requests_) request.second(absl::UnavailableError("fake destroyed"));
  }

  RequestId Send(Request request, ResponseCallback done) override {
    on_own_thread_ = on_own_thread_ && dispatcher_.IsDispatcherThread();
    const RequestId id = next_id_++;
    sent_bodies_.push_back(request.body);
    requests_.emplace(id, std::make_pair(request.body, std::move(done)));
    observer_.OnConnectionOpened();
    return id;
  }
  bool Cancel(RequestId id) override {
    cancelled_bodies_.push_back(requests_.at(id).first);
    return requests_.erase(id) == 1;
  }
  int open_connections() const override { return 0; }

  // Answers the request whose body is `body` with `status`.
  void Answer(const std::string& body, int status) {
    for (auto it = requests_.begin(); it != requests_.end(); ++it) {
      if (it->second.first != body) continue;
      ResponseCallback done = std::move(it->second.second);
      requests_.erase(it);
      observer_.OnConnectionClosed();
      done(Response{status, "answer to " + body, std::nullopt});
      return;
    }
    ADD_FAILURE() << "no request " << body;
  }

  int connections_per_host() const { return connections_per_host_; }
  const std::vector<std::string>& sent_bodies() const { return sent_bodies_; }
  const std::vector<std::string>& cancelled_bodies() const { return cancelled_bodies_; }
  bool on_own_thread() const { return on_own_thread_; }

 private:
  event::Dispatcher& dispatcher_;
  const int connections_per_host_;
  HttpPoolObserver& observer_;
  RequestId next_id_ = 1;
  std::map<RequestId, std::pair<std::string, ResponseCallback>> requests_;
  std::vector<std::string> sent_bodies_;
  std::vector<std::string> cancelled_bodies_;
  bool on_own_thread_ = true;
  std::atomic<int>& destroyed_on_own_thread_;
};

class CountingObserver final : public HttpPoolObserver {
 public:
  explicit CountingObserver(event::Dispatcher& home) : home_(home) {}
  void OnConnectionOpened() override { Note(&opened); }
  void OnConnectionClosed() override { Note(&closed); }
  void OnRequestDone(const RequestOutcome& outcome) override {
    Note(nullptr);
    ++outcomes[outcome.code];
  }

  int opened = 0;
  int closed = 0;
  std::map<absl::StatusCode, int> outcomes;
  bool on_home = true;

 private:
  void Note(int* counter) {
    on_home = on_home && home_.IsDispatcherThread();
    if (counter != nullptr) ++*counter;
  }
  event::Dispatcher& home_;
};

class ShardedHttpPoolTest : public ::testing::Test {
 protected:
  ShardedHttpPoolTest() : home_("home", clock_), io1_("io-1", clock_), io2_("io-2", clock_) {
    home_.Start();
    io1_.Start();
    io2_.Start();
  }
  ~ShardedHttpPoolTest() override {
    OnHome([&] { pool_.reset(); });
    io1_.Shutdown();  // Runs the posted shard destructions.
    io2_.Shutdown();
    home_.Shutdown();
  }

  // Builds the pool on home with shards on `shards` (home first).
  void Build(std::vector<event::DispatcherImpl*> shards, int max_connections) {
    ShardedHttpPoolOptions options;
    options.max_connections_per_host = max_connections;
    OnHome([&] {
      pool_ = std::make_unique<ShardedHttpPool>(
          home_, std::vector<event::Dispatcher*>(shards.begin(), shards.end()), options,
          [this, shards](size_t index, int connections, HttpPoolObserver& observer) {
            auto pool = std::make_unique<FakePool>(*shards[index], connections, observer,
                                                   destroyed_on_own_thread_);
            absl::MutexLock lock(&mu_);
            made_.emplace_back(index, shards[index]->IsDispatcherThread());
            fakes_[index] = pool.get();
            return pool;
          },
          observer_);
    });
    shards_ = shards;
    for (event::DispatcherImpl* shard : shards) testing::RunOnDispatcher(*shard, [] {});
  }

  void OnHome(absl::AnyInvocable<void()> fn) { testing::RunOnDispatcher(home_, std::move(fn)); }

  // Sends a request with body `body` to `url`; its result lands in results_.
  RequestId Send(const std::string& body, const std::string& url = "http://a:1/key") {
    RequestId id = 0;
    OnHome([&] {
      id = pool_->Send(
          Request{url, body, absl::Seconds(10)}, [this, body](absl::StatusOr<Response> response) {
            on_home_ = on_home_ && home_.IsDispatcherThread();
            results_[body].push_back(response.ok() ? response->body : response.status().ToString());
          });
    });
    return id;
  }

  // Runs `fn` with shard `index`'s fake, on its thread.
  void OnShard(size_t index, absl::AnyInvocable<void(FakePool&)> fn) {
    FakePool* fake;
    {
      absl::MutexLock lock(&mu_);
      fake = fakes_.at(index);
    }
    testing::RunOnDispatcher(*shards_[index], [&] { fn(*fake); });
  }

  std::vector<std::string> SentOn(size_t index) {
    std::vector<std::string> sent;
    OnShard(index, [&](FakePool& fake) { sent = fake.sent_bodies(); });
    return sent;
  }

  // Waits until every shard's result has come home.
  void Settle() {
    for (event::DispatcherImpl* shard : shards_) testing::RunOnDispatcher(*shard, [] {});
    OnHome([] {});
  }

  common::RealClock clock_;
  event::DispatcherImpl home_;
  event::DispatcherImpl io1_;
  event::DispatcherImpl io2_;
  CountingObserver observer_{home_};
  std::unique_ptr<ShardedHttpPool> pool_;
  std::vector<event::DispatcherImpl*> shards_;
  std::atomic<int> destroyed_on_own_thread_{0};
  absl::Mutex mu_;
  std::vector<std::pair<size_t, bool>> made_ ABSL_GUARDED_BY(mu_);
  std::map<size_t, FakePool*> fakes_ ABSL_GUARDED_BY(mu_);
  // Home thread only.
  std::map<std::string, std::vector<std::string>> results_;
  bool on_home_ = true;
};

TEST_F(ShardedHttpPoolTest, EachShardGetsAShareOfTheConnectionsMadeOnItsOwnThread) {
  Build({&home_, &io1_, &io2_}, 5);
  OnHome([&] { EXPECT_EQ(pool_->shard_count(), 3u); });
  absl::MutexLock lock(&mu_);
  EXPECT_THAT(made_, ::testing::UnorderedElementsAre(Pair(0, true), Pair(1, true), Pair(2, true)));
  std::vector<int> shares;
  for (auto& [index, fake] : fakes_) shares.push_back(fake->connections_per_host());
  EXPECT_THAT(shares, ElementsAre(2, 2, 1));
}

TEST_F(ShardedHttpPoolTest, NoMoreShardsThanConnections) {
  Build({&home_, &io1_, &io2_}, 1);
  OnHome([&] { EXPECT_EQ(pool_->shard_count(), 1u); });
  Send("a");
  Send("b");
  EXPECT_THAT(SentOn(0), ElementsAre("a", "b"));
}

TEST_F(ShardedHttpPoolTest, EachRequestGoesToTheLeastLoadedShardForItsHost) {
  Build({&home_, &io1_}, 4);  // 2 + 2 connections.
  for (const char* body : {"r1", "r2", "r3", "r4", "r5"}) Send(body);
  Send("other-host", "http://b:2/");  // Counted apart: goes to the first shard.
  EXPECT_THAT(SentOn(0), ElementsAre("r1", "r3", "r5", "other-host"));
  EXPECT_THAT(SentOn(1), ElementsAre("r2", "r4"));
  // A request that ends frees room on its shard: the next goes there.
  OnShard(1, [](FakePool& fake) { fake.Answer("r2", 200); });
  Settle();
  Send("r6");
  EXPECT_THAT(SentOn(1), ElementsAre("r2", "r4", "r6"));
  OnHome([&] { EXPECT_THAT(results_["r2"], ElementsAre("answer to r2")); });
}

TEST_F(ShardedHttpPoolTest, UnequalSharesLoadInProportionToTheirConnections) {
  Build({&home_, &io1_}, 5);  // 3 + 2 connections.
  for (int i = 0; i < 10; ++i) Send(absl::StrCat("r", i));
  EXPECT_THAT(SentOn(0), ElementsAre("r0", "r2", "r3", "r5", "r7", "r8"));
  EXPECT_THAT(SentOn(1), ElementsAre("r1", "r4", "r6", "r9"));
}

TEST_F(ShardedHttpPoolTest, ResultsAndConnectionEventsComeHomeOnce) {
  Build({&home_, &io1_}, 2);
  Send("local");
  Send("remote");
  OnShard(0, [](FakePool& fake) { fake.Answer("local", 200); });
  OnShard(1, [](FakePool& fake) { fake.Answer("remote", 503); });
  Settle();
  OnHome([&] {
    EXPECT_THAT(results_["local"], ElementsAre("answer to local"));
    EXPECT_THAT(results_["remote"], ElementsAre("answer to remote"));
    EXPECT_TRUE(on_home_);
    EXPECT_TRUE(observer_.on_home);
    EXPECT_EQ(observer_.opened, 2);
    EXPECT_EQ(observer_.closed, 2);
    EXPECT_EQ(pool_->open_connections(), 0);
    EXPECT_THAT(observer_.outcomes, ElementsAre(Pair(absl::StatusCode::kOk, 2)));
  });
}

TEST_F(ShardedHttpPoolTest, CancelledRequestNeverAnswersEvenWhenItsResultWasOnItsWay) {
  Build({&home_, &io1_}, 2);
  Send("a");
  const RequestId remote = Send("b");
  // Cancelled before the shard answers: the shard's pool cancels it.
  OnHome([&] { EXPECT_TRUE(pool_->Cancel(remote)); });
  OnShard(1, [](FakePool& fake) { EXPECT_THAT(fake.cancelled_bodies(), ElementsAre("b")); });
  OnHome([&] { EXPECT_FALSE(pool_->Cancel(remote)); });

  // Cancelled while its answer is posted home: the answer is dropped.
  const RequestId racing = Send("c");  // Shard 1 again: the most free room.
  absl::Notification answered;
  absl::Notification cancelled;
  home_.Post([&] {
    answered.WaitForNotification();  // The shard's answer queues behind this.
    EXPECT_TRUE(pool_->Cancel(racing));
    cancelled.Notify();
  });
  OnShard(1, [](FakePool& fake) { fake.Answer("c", 200); });
  answered.Notify();
  cancelled.WaitForNotification();
  Settle();
  OnHome([&] {
    EXPECT_EQ(results_.count("b"), 0u);
    EXPECT_EQ(results_.count("c"), 0u);
    EXPECT_EQ(observer_.outcomes[absl::StatusCode::kCancelled], 2);
    EXPECT_EQ(observer_.outcomes[absl::StatusCode::kOk], 0);
  });
}

TEST_F(ShardedHttpPoolTest, DestructionAnswersOpenRequestsAndFreesShardsOnTheirThreads) {
  Build({&home_, &io1_, &io2_}, 3);
  for (const char* body : {"a", "b", "c"}) Send(body);
  for (size_t shard = 0; shard < 3; ++shard) {
    OnShard(shard, [](FakePool& fake) { EXPECT_TRUE(fake.on_own_thread()); });
  }
  OnHome([&] {
    pool_.reset();
    for (const char* body : {"a", "b", "c"}) {
      EXPECT_THAT(results_[body], ElementsAre(::testing::HasSubstr("UNAVAILABLE")));
    }
    EXPECT_EQ(observer_.outcomes[absl::StatusCode::kUnavailable], 3);
  });
  Settle();  // The remote shards' destruction, and their late results.
  EXPECT_EQ(destroyed_on_own_thread_.load(), 3);
  OnHome([&] {
    for (const char* body : {"a", "b", "c"}) EXPECT_EQ(results_[body].size(), 1u);
  });
}

}  // namespace
}  // namespace switchboard::http
