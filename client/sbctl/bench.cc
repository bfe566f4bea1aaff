#include "bench.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "bench_tally.h"
#include "commands.h"
#include "switchboard/client/consume_stream.h"
#include "switchboard/client/publish_stream.h"
#include "switchboard/client/subscriber.h"

namespace switchboard::sbctl {
namespace {

// How long a consume stream may take to end after its half-close.
constexpr absl::Duration kCloseTimeout = absl::Seconds(5);

// The latency mode's warm-up: one unstamped message this often until one
// arrives, for this long at most.
constexpr absl::Duration kWarmUpInterval = absl::Milliseconds(100);
constexpr absl::Duration kWarmUpTimeout = absl::Seconds(10);

// How long the latency mode waits, after its last publish was answered, for
// the messages still on their way.
constexpr absl::Duration kStragglerTimeout = absl::Seconds(5);

// The attribute that carries a latency message's send time (Unix nanoseconds).
constexpr char kSentAtAttribute[] = "sbctl.sent_at_ns";

// Pre-published messages go in unary batches of at most this many bytes.
constexpr int64_t kPrepublishBatchBytes = 1 << 20;
constexpr int64_t kPrepublishBatchMessages = 1000;

// The JSON-RPC error answers of the call mode, among its errors.
constexpr char kJsonRpcError[] = "JSON_RPC_ERROR";

// Runs `send` `rate` times per second from `start` until `end`, open loop:
// send i is due at start + i / rate, and runs at once when the pacing is late.
void RunPaced(double rate, absl::Time start, absl::Time end, absl::FunctionRef<void()> send) {
  const absl::Duration interval = absl::Seconds(1) / rate;
  for (int64_t sent = 0;; ++sent) {
    const absl::Time due = start + sent * interval;
    if (due >= end) return;
    if (const absl::Time now = absl::Now(); now < due) absl::SleepFor(due - now);
    send();
  }
}

// Half-closes `stream` and waits for its end, cancelling it when the server
// takes longer than kCloseTimeout.
void CloseConsumeStream(client::ConsumeStream& stream) {
  stream.Close();
  if (!stream.WaitWithTimeout(kCloseTimeout)) stream.Cancel();
  stream.Wait().IgnoreError();
}

// One PublishStream that keeps `window` requests in flight until `end`.
class PublishLoad {
 public:
  PublishLoad(const client::Client& client, const PublishBenchOptions& options, absl::Time end,
              Tally& tally)
      : topic_(options.topic), end_(end), tally_(tally), stream_(client) {
    v1::OutgoingMessage message;
    message.set_payload(std::string(options.size, 'x'));
    batch_.assign(options.batch, message);
  }

  void Start(int window) {
    for (int i = 0; i < window; ++i) SendOne();
  }

  // Waits for the answers still in flight (after the measured interval).
  void Close() { stream_.Close().IgnoreError(); }

 private:
  void SendOne() {
    std::vector<v1::OutgoingMessage> messages = batch_;
    const absl::Time sent_at = absl::Now();
    // Refused only once the stream has ended (its requests already counted
    // the error) or is closing at the end of the run.
    stream_
        .Send(topic_, std::move(messages),
              [this, sent_at](absl::StatusOr<std::vector<std::string>> ids) {
                const absl::Time now = absl::Now();
                if (ids.ok()) {
                  tally_.AddMessages(static_cast<int64_t>(ids->size()));
                  tally_.AddLatency(now - sent_at);
                } else {
                  tally_.AddError(ids.status());
                }
                if (now < end_) SendOne();
              })
        .IgnoreError();
  }

  const std::string topic_;
  const absl::Time end_;
  Tally& tally_;
  std::vector<v1::OutgoingMessage> batch_;
  client::PublishStream stream_;
};

// One Consume stream that acks every delivery as soon as it arrives.
class ConsumeLoad {
 public:
  ConsumeLoad(const client::Client& client, const v1::ConsumeSubscription& subscription,
              Tally& tally)
      : tally_(tally),
        stream_(
            client, subscription, [this](v1::ConsumeResponse& response) { OnResponse(response); },
            [this](const absl::Status& status) {
              if (!status.ok()) tally_.AddError(status);
            }) {}

  void Close() { CloseConsumeStream(stream_); }

 private:
  // Responses come one at a time, so last_ack_at_ needs no lock.
  void OnResponse(v1::ConsumeResponse& response) {
    if (response.deliveries().empty()) return;
    const absl::Time now = absl::Now();
    if (last_ack_at_.has_value()) tally_.AddLatency(now - *last_ack_at_);
    tally_.AddMessages(response.deliveries_size());
    for (v1::Delivery& delivery : *response.mutable_deliveries()) {
      stream_.Ack(std::move(*delivery.mutable_ack_id()));
    }
    last_ack_at_ = now;
  }

  Tally& tally_;
  std::optional<absl::Time> last_ack_at_;
  client::ConsumeStream stream_;  // Last: its handlers use the members above.
};

absl::Status Prepublish(const client::Client& client, const ConsumeBenchOptions& options) {
  v1::OutgoingMessage message;
  message.set_payload(std::string(options.size, 'x'));
  const int64_t per_batch = std::clamp<int64_t>(kPrepublishBatchBytes / std::max(options.size, 1),
                                                1, kPrepublishBatchMessages);
  for (int64_t published = 0; published < options.messages;) {
    const int64_t count = std::min(per_batch, options.messages - published);
    std::vector<v1::OutgoingMessage> batch(count, message);
    if (options.keys > 0) {
      for (int64_t i = 0; i < count; ++i) {
        batch[i].set_ordering_key(absl::StrCat("k", (published + i) % options.keys));
      }
    }
    absl::StatusOr<std::vector<std::string>> ids = client.Publish(options.topic, std::move(batch));
    if (!ids.ok()) return ids.status();
    published += count;
  }
  std::cerr << "pre-published " << options.messages << " messages to " << options.topic << "\n";
  return absl::OkStatus();
}

// The latency mode's receiving end: tallies each stamped message with its
// latency, and notices the first warm-up message.
class LatencyProbe {
 public:
  explicit LatencyProbe(Tally& tally) : tally_(tally) {}

  // Called on gRPC callback threads.
  void OnReceived(const v1::ReceivedMessage& message) {
    const absl::Time now = absl::Now();
    const auto sent_at = message.attributes().find(kSentAtAttribute);
    int64_t sent_at_ns = 0;
    if (sent_at == message.attributes().end() || !absl::SimpleAtoi(sent_at->second, &sent_at_ns)) {
      if (!live_.HasBeenNotified()) live_.Notify();
      return;
    }
    tally_.AddMessages(1);
    tally_.AddLatency(now - absl::FromUnixNanos(sent_at_ns));
  }

  // Publishes an unstamped message on `stream` every kWarmUpInterval until
  // one arrives; DEADLINE_EXCEEDED after kWarmUpTimeout.
  absl::Status WarmUp(client::PublishStream& stream, const std::string& topic) {
    for (absl::Time give_up = absl::Now() + kWarmUpTimeout; absl::Now() < give_up;) {
      if (absl::Status queued = stream.Send(topic, {v1::OutgoingMessage()}, [](auto) {});
          !queued.ok()) {
        return queued;
      }
      if (live_.WaitForNotificationWithTimeout(kWarmUpInterval)) return absl::OkStatus();
    }
    return absl::DeadlineExceededError(absl::StrCat(
        "no warm-up message arrived on ", topic, " within ", absl::FormatDuration(kWarmUpTimeout)));
  }

 private:
  Tally& tally_;
  absl::Notification live_;
};

// The latency mode's Consume stream: hands each delivery to the probe and
// acks it at once.
class ProbedConsumeStream {
 public:
  ProbedConsumeStream(const client::Client& client, const v1::ConsumeSubscription& subscription,
                      LatencyProbe& probe, Tally& tally)
      : probe_(probe),
        stream_(
            client, subscription,
            [this](v1::ConsumeResponse& response) {
              for (v1::Delivery& delivery : *response.mutable_deliveries()) {
                probe_.OnReceived(delivery.message());
                stream_.Ack(std::move(*delivery.mutable_ack_id()));
              }
            },
            [&tally](const absl::Status& status) {
              if (!status.ok()) tally.AddError(status);
            }) {}

  void Close() { CloseConsumeStream(stream_); }

 private:
  LatencyProbe& probe_;
  client::ConsumeStream stream_;  // Last: its handlers use the members above.
};

// Publishes one stamped message per request on `stream` at `options.rate`
// from `start` until `end` (RunPaced). Counts the publishes acknowledged in
// `acknowledged`, and the failed ones as errors of `tally`.
void PublishPaced(client::PublishStream& stream, const LatencyBenchOptions& options,
                  absl::Time start, absl::Time end, Tally& tally,
                  std::atomic<int64_t>& acknowledged) {
  v1::OutgoingMessage message;
  message.set_payload(std::string(options.size, 'x'));
  RunPaced(options.rate, start, end, [&] {
    (*message.mutable_attributes())[kSentAtAttribute] =
        absl::StrCat(absl::ToUnixNanos(absl::Now()));
    // Refused only once the stream has ended, whose requests counted the error.
    stream
        .Send(options.topic, {message},
              [&tally, &acknowledged](absl::StatusOr<std::vector<std::string>> ids) {
                if (ids.ok()) {
                  acknowledged.fetch_add(1, std::memory_order_relaxed);
                } else {
                  tally.AddError(ids.status());
                }
              })
        .IgnoreError();
  });
}

// The requests of the call mode: all alike, except that without fixed
// params call i sends `[i]`. Thread-safe.
class CallRequests {
 public:
  explicit CallRequests(const CallBenchOptions& options)
      : vary_params_(options.params_json.empty()) {
    prototype_.set_upstream(options.upstream);
    prototype_.set_method(options.method);
    prototype_.set_params_json(options.params_json);
  }

  v1::CallRequest Next() {
    v1::CallRequest request = prototype_;
    const uint64_t number = next_.fetch_add(1, std::memory_order_relaxed);
    request.set_request_id(number);
    if (vary_params_) request.set_params_json(absl::StrCat("[", number, "]"));
    return request;
  }

 private:
  const bool vary_params_;
  v1::CallRequest prototype_;
  std::atomic<uint64_t> next_{0};
};

// Tallies one call's answer: a call with its latency, or an error.
void TallyAnswer(Tally& tally, const grpc::Status& status, const v1::CallResponse& response,
                 absl::Time started) {
  const absl::Time now = absl::Now();
  if (!status.ok()) {
    tally.AddError(
        absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message()));
  } else if (response.has_status()) {
    tally.AddError(absl::Status(static_cast<absl::StatusCode>(response.status().code()),
                                response.status().message()));
  } else if (response.has_error_json()) {
    tally.AddError(kJsonRpcError, response.error_json());
  } else {
    tally.AddMessages(1);
    tally.AddLatency(now - started);
  }
}

// A way of making calls: closed loop (RunCallers) or open loop (StartOne).
class CallLoad {
 public:
  virtual ~CallLoad() = default;

  // Closed loop: starts `callers` calls, and each answer before `end` starts
  // the next one.
  virtual void RunCallers(int callers, absl::Time end) = 0;

  // Open loop: starts one call that no other follows.
  virtual void StartOne() = 0;

  // Blocks until every call started has been answered.
  virtual void WaitForAnswers() = 0;
};

// Unary Calls made with the Rpc stub's callback API, each tallied with its
// latency from start to answer, or as an error. Answers arrive on gRPC
// callback threads.
class UnaryCallLoad final : public CallLoad {
 public:
  UnaryCallLoad(const client::Client& client, const CallBenchOptions& options, Tally& tally)
      : client_(client), tally_(tally), requests_(options) {}

  void RunCallers(int callers, absl::Time end) override {
    for (int i = 0; i < callers; ++i) Start(end);
  }

  void StartOne() override { Start(absl::InfinitePast()); }

  void WaitForAnswers() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int64_t* in_flight) { return *in_flight == 0; }, &in_flight_));
  }

 private:
  // One call's state, from its start to its answer.
  struct InFlightCall {
    grpc::ClientContext context;
    v1::CallRequest request;
    v1::CallResponse response;
    absl::Time started;
  };

  void Start(absl::Time repeat_until) {
    {
      absl::MutexLock lock(&mu_);
      ++in_flight_;
    }
    auto* call = new InFlightCall;
    call->request = requests_.Next();
    client_.PrepareUnaryContext(call->context);
    call->started = absl::Now();
    client_.rpc().async()->Call(&call->context, &call->request, &call->response,
                                [this, call, repeat_until](grpc::Status status) {
                                  TallyAnswer(tally_, status, call->response, call->started);
                                  delete call;
                                  if (absl::Now() < repeat_until) Start(repeat_until);
                                  absl::MutexLock lock(&mu_);
                                  --in_flight_;
                                });
  }

  const client::Client& client_;
  Tally& tally_;
  CallRequests requests_;
  absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

// Calls multiplexed on one CallStream, each answered by its request_id and
// tallied with its latency from being queued for writing to its answer. At
// most one write is in flight; a read is always pending. Reactions run on
// gRPC callback threads, never inline in a Start* call, so those are made
// with `mu_` held. The stream is opened by the constructor and ended by the
// destructor (after every call was answered), which waits for OnDone.
class StreamCallLoad final : public CallLoad,
                             public grpc::ClientBidiReactor<v1::CallRequest, v1::CallResponse> {
 public:
  StreamCallLoad(const client::Client& client, const CallBenchOptions& options, Tally& tally)
      : tally_(tally), requests_(options) {
    client.PrepareContext(context_);
    client.rpc().async()->CallStream(&context_, this);
    StartRead(&response_);
    StartCall();
  }

  ~StreamCallLoad() override {
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      MaybeWriteLocked();
    }
    done_.WaitForNotification();
  }

  void RunCallers(int callers, absl::Time end) override {
    absl::MutexLock lock(&mu_);
    repeat_until_ = end;
    for (int i = 0; i < callers; ++i) QueueLocked();
  }

  void StartOne() override {
    absl::MutexLock lock(&mu_);
    QueueLocked();
  }

  void WaitForAnswers() override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](StreamCallLoad* load) ABSL_EXCLUSIVE_LOCKS_REQUIRED(load->mu_) {
          return load->started_.empty() || load->ended_;
        },
        this));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok) MaybeWriteLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // The stream ended: OnDone follows.
    absl::MutexLock lock(&mu_);
    auto started = started_.find(response_.request_id());
    if (started != started_.end()) {
      TallyAnswer(tally_, grpc::Status::OK, response_, started->second);
      started_.erase(started);
    }
    if (absl::Now() < repeat_until_) QueueLocked();
    MaybeWriteLocked();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      ended_ = true;
      started_.clear();  // Never answered.
    }
    if (!status.ok()) {
      tally_.AddError(absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                                   absl::StrCat("the stream ended: ", status.error_message())));
    }
    done_.Notify();
  }

 private:
  void QueueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_ || closing_) return;
    v1::CallRequest request = requests_.Next();
    started_.emplace(request.request_id(), absl::Now());
    queued_.push_back(std::move(request));
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || ended_) return;
    if (!queued_.empty()) {
      writing_ = true;
      write_ = std::move(queued_.front());
      queued_.pop_front();
      StartWrite(&write_);
    } else if (closing_ && !writes_done_) {
      writes_done_ = true;
      StartWritesDone();
    }
  }

  Tally& tally_;
  CallRequests requests_;
  grpc::ClientContext context_;
  v1::CallResponse response_;  // Owned by the pending read.
  absl::Notification done_;

  absl::Mutex mu_;
  absl::Time repeat_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // By request_id: when each call not yet answered was queued.
  absl::flat_hash_map<uint64_t, absl::Time> started_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::CallRequest> queued_ ABSL_GUARDED_BY(mu_);
  v1::CallRequest write_ ABSL_GUARDED_BY(mu_);  // Owned by the write in flight.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_done_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

int BenchPublish(const client::Client& client, const PublishBenchOptions& options) {
  Tally tally(/*target=*/0);
  const absl::Time start = absl::Now();
  std::vector<std::unique_ptr<PublishLoad>> loads;
  for (int i = 0; i < options.streams; ++i) {
    loads.push_back(
        std::make_unique<PublishLoad>(client, options, start + options.duration, tally));
  }
  for (auto& load : loads) load->Start(options.window);
  RunClock(tally, start, options.duration);
  tally.Stop();
  const absl::Duration elapsed = absl::Now() - start;
  for (auto& load : loads) load->Close();
  std::cout << tally.Json(
                   absl::StrFormat("\"mode\":\"publish\",\"streams\":%d,\"window\":%d,"
                                   "\"batch\":%d,\"size\":%d",
                                   options.streams, options.window, options.batch, options.size),
                   elapsed)
            << std::endl;
  return 0;
}

int BenchConsume(const client::Client& client, const ConsumeBenchOptions& options) {
  if (absl::Status status = Prepublish(client, options); !status.ok()) {
    return ReportFailure(status);
  }
  v1::ConsumeSubscription subscription;
  subscription.set_topic(options.topic);
  subscription.set_group(options.group);
  subscription.set_max_in_flight(options.max_in_flight);
  Tally tally(/*target=*/options.messages);
  const absl::Time start = absl::Now();
  std::vector<std::unique_ptr<ConsumeLoad>> loads;
  for (int i = 0; i < options.streams; ++i) {
    loads.push_back(std::make_unique<ConsumeLoad>(client, subscription, tally));
  }
  RunClock(tally, start, options.duration);
  tally.Stop();
  const absl::Duration elapsed = absl::Now() - start;
  for (auto& load : loads) load->Close();
  std::cout << tally.Json(absl::StrFormat("\"mode\":\"consume\",\"streams\":%d,"
                                          "\"max_in_flight\":%d,\"prepublished\":%d,\"keys\":%d",
                                          options.streams, options.max_in_flight, options.messages,
                                          options.keys),
                          elapsed)
            << std::endl;
  return 0;
}

int BenchLatency(const client::Client& client, const LatencyBenchOptions& options) {
  Tally tally(/*target=*/0);
  LatencyProbe probe(tally);
  // Exactly one of the two receives.
  std::unique_ptr<ProbedConsumeStream> consume_stream;
  std::unique_ptr<client::Subscriber> subscriber;
  if (!options.group.empty()) {
    v1::ConsumeSubscription subscription;
    subscription.set_topic(options.topic);
    subscription.set_group(options.group);
    subscription.set_max_in_flight(options.max_in_flight);
    consume_stream = std::make_unique<ProbedConsumeStream>(client, subscription, probe, tally);
  } else {
    subscriber = std::make_unique<client::Subscriber>(
        client, options.topic,
        [&probe](const v1::SubscribeResponse& response) { probe.OnReceived(response.message()); });
    if (absl::Status live = subscriber->WaitUntilLive(kWarmUpTimeout); !live.ok()) {
      return ReportFailure(live);
    }
  }
  std::atomic<int64_t> acknowledged{0};
  client::PublishStream publish_stream(client);
  if (absl::Status live = probe.WarmUp(publish_stream, options.topic); !live.ok()) {
    return ReportFailure(live);
  }

  const absl::Time start = absl::Now();
  const absl::Time end = start + options.duration;
  std::thread publisher(
      [&] { PublishPaced(publish_stream, options, start, end, tally, acknowledged); });
  RunClock(tally, start, options.duration);
  publisher.join();
  const absl::Duration elapsed = absl::Now() - start;
  publish_stream.Close().IgnoreError();  // Every answer is in.
  const int64_t published = acknowledged.load();
  for (const absl::Time give_up = absl::Now() + kStragglerTimeout;
       tally.messages() < published && absl::Now() < give_up;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  tally.Stop();
  if (consume_stream != nullptr) consume_stream->Close();
  if (subscriber != nullptr) subscriber->Stop();
  std::cout << tally.Json(absl::StrFormat("\"mode\":\"latency\",\"receiver\":\"%s\","
                                          "\"rate\":%.1f,\"size\":%d,\"published\":%d",
                                          consume_stream != nullptr ? "consume" : "subscribe",
                                          options.rate, options.size, published),
                          elapsed)
            << std::endl;
  return 0;
}

int BenchCall(const client::Client& client, const CallBenchOptions& options) {
  Tally tally(/*target=*/0, "calls");
  std::unique_ptr<CallLoad> load;
  if (options.stream) {
    load = std::make_unique<StreamCallLoad>(client, options, tally);
  } else {
    load = std::make_unique<UnaryCallLoad>(client, options, tally);
  }
  const absl::Time start = absl::Now();
  const absl::Time end = start + options.duration;
  absl::Duration elapsed;
  if (options.rate > 0) {
    std::thread pacer([&] { RunPaced(options.rate, start, end, [&] { load->StartOne(); }); });
    RunClock(tally, start, options.duration);
    pacer.join();
    elapsed = absl::Now() - start;
    load->WaitForAnswers();  // Every call started is measured.
    tally.Stop();
  } else {
    load->RunCallers(options.concurrency, end);
    RunClock(tally, start, options.duration);
    tally.Stop();
    elapsed = absl::Now() - start;
    load->WaitForAnswers();
  }
  load.reset();
  std::cout << tally.Json(absl::StrFormat("\"mode\":\"call\",\"upstream\":\"%s\",\"method\":\"%s\","
                                          "\"params\":\"%s\",\"transport\":\"%s\","
                                          "\"concurrency\":%d,\"rate\":%.1f",
                                          options.upstream, options.method,
                                          options.params_json.empty() ? "counter" : "fixed",
                                          options.stream ? "stream" : "unary",
                                          options.rate > 0 ? 0 : options.concurrency, options.rate),
                          elapsed)
            << std::endl;
  return 0;
}

}  // namespace switchboard::sbctl
