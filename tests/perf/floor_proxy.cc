// floor_proxy: the least a JSON-RPC proxy built from this project's stack
// (gRPC's callback API in front, a libcurl multi handle behind) can cost, for
// the benchmark's "stack floor" rows (bench_rpc.sh).
//
// It serves switchboard.v1.Rpc (Call and CallStream, so `sbctl bench call`
// drives it exactly as it drives Switchboard) and does nothing but the two
// hops: each call's JSON-RPC body is built by string concatenation and
// handed to one libcurl thread (a curl_multi_poll loop over kept-alive
// connections, at most --max_connections to the host), and the provider's
// whole answer goes back as result_json. No validation, admission, rate
// limit, cache, coalescing, failover, deadline or metrics: whatever
// Switchboard costs above this floor is its own; whatever this floor costs,
// any proxy on gRPC and libcurl pays on this machine. Calls to
// --inline_method are answered in the gRPC handler itself, without the curl
// thread: the cost of gRPC alone.
//
// With --batch_max_calls=N (N > 1), the floor of auto-batching: a call
// that finds a connection free goes alone; calls that find every connection
// busy wait, and leave in JSON-RPC batches of at most N calls, shared evenly
// over the connections free when the curl thread next looks (as fast as
// Switchboard's one-batch-per-freed-connection policy here, or faster). Each
// call gets its own item of the answer, found by id (switchboard::json_rpc's
// scanner, the least any batching proxy must do).
//
//   floor_proxy --listen=127.0.0.1:PORT --upstream_url=http://127.0.0.1:PORT/
//               [--max_connections=8] [--inline_method=getGenesisHash]
//               [--batch_max_calls=0]
// Runs until SIGINT or SIGTERM.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/upstream/json_rpc.h"
#include "switchboard/v1/rpc.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "gRPC listen address");
ABSL_FLAG(std::string, upstream_url, "", "the provider's URL");
ABSL_FLAG(int, max_connections, 8, "kept-alive connections to the provider");
ABSL_FLAG(std::string, inline_method, "getGenesisHash",
          "calls to this method are answered at once, in the gRPC handler");
ABSL_FLAG(int, batch_max_calls, 0,
          "above 1: calls waiting for a connection leave as one JSON-RPC batch of at most this "
          "many");

namespace switchboard::floor_proxy {
namespace {

// The provider's whole answer, or empty when the transfer failed.
using Answered = absl::AnyInvocable<void(std::string answer)>;

// One JSON-RPC call for the curl thread: its request object without the
// id (`"method":...,"params":...}`), and what to do with its answer.
struct QueuedCall {
  std::string tail;
  Answered answered;
};

// One libcurl multi handle on its own thread: POSTs calls handed over by any
// thread and calls back on the curl thread.
class CurlThread {
 public:
  CurlThread(std::string url, int max_connections, int batch_max_calls)
      : url_(std::move(url)),
        max_connections_(static_cast<size_t>(std::max(max_connections, 1))),
        batch_max_calls_(static_cast<size_t>(std::max(batch_max_calls, 1))) {
    multi_ = curl_multi_init();
    curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS, static_cast<long>(max_connections));
    headers_ = curl_slist_append(nullptr, "Content-Type: application/json");
    thread_ = std::thread([this] { Run(); });
  }

  ~CurlThread() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_);
    thread_.join();
    for (CURL* easy : idle_) curl_easy_cleanup(easy);
    curl_multi_cleanup(multi_);
    curl_slist_free_all(headers_);
  }

  void Post(QueuedCall call) {
    {
      absl::MutexLock lock(&mu_);
      incoming_.push_back(std::move(call));
    }
    curl_multi_wakeup(multi_);
  }

 private:
  // One HTTP request: one call, or a batch of them with ids 1, 2, ...
  struct Transfer {
    std::vector<QueuedCall> calls;
    std::string body;
    std::string answer;
    CURL* easy = nullptr;
  };

  static size_t Append(char* data, size_t size, size_t count, void* transfer) {
    static_cast<Transfer*>(transfer)->answer.append(data, size * count);
    return size * count;
  }

  void Start(std::vector<QueuedCall> calls) {
    auto transfer = std::make_unique<Transfer>();
    if (calls.size() == 1) {
      transfer->body = absl::StrCat(R"({"jsonrpc":"2.0","id":1,)", calls[0].tail);
    } else {
      transfer->body = "[";
      for (size_t i = 0; i < calls.size(); ++i) {
        absl::StrAppend(&transfer->body, i == 0 ? "" : ",", R"({"jsonrpc":"2.0","id":)", i + 1, ",",
                        calls[i].tail);
      }
      transfer->body += "]";
    }
    transfer->calls = std::move(calls);
    CURL* easy;
    if (idle_.empty()) {
      easy = curl_easy_init();
      curl_easy_setopt(easy, CURLOPT_URL, url_.c_str());
      curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
      curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Append);
      curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    } else {
      easy = idle_.back();
      idle_.pop_back();
    }
    transfer->easy = easy;
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, transfer->body.c_str());
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, transfer.get());
    curl_easy_setopt(easy, CURLOPT_PRIVATE, transfer.get());
    curl_multi_add_handle(multi_, easy);
    ++active_;
    transfer.release();  // Owned through CURLOPT_PRIVATE until done.
  }

  // Starts what waits: everything at once without batching (libcurl queues
  // the requests beyond its connections); with batching, one request per
  // free connection, the waiting calls shared evenly over them, so a call
  // that finds a connection free goes alone.
  void StartWaiting() {
    if (batch_max_calls_ <= 1) {
      for (QueuedCall& call : waiting_) {
        std::vector<QueuedCall> alone;
        alone.push_back(std::move(call));
        Start(std::move(alone));
      }
      waiting_.clear();
      return;
    }
    while (!waiting_.empty() && active_ < max_connections_) {
      const size_t free = max_connections_ - active_;
      const size_t take = std::min((waiting_.size() + free - 1) / free, batch_max_calls_);
      std::vector<QueuedCall> calls;
      for (size_t i = 0; i < take; ++i) {
        calls.push_back(std::move(waiting_.front()));
        waiting_.pop_front();
      }
      Start(std::move(calls));
    }
  }

  // Each call's answer: the whole body for one call, its item found by id
  // for a batch; empty when the transfer failed or the item is missing.
  static void Answer(Transfer& transfer, bool ok) {
    std::vector<QueuedCall>& calls = transfer.calls;
    if (calls.size() == 1) {
      calls[0].answered(ok ? std::move(transfer.answer) : std::string());
      return;
    }
    std::vector<absl::string_view> by_id(calls.size());
    absl::StatusOr<std::vector<absl::string_view>> items =
        ok ? upstream::SplitBatchItems(transfer.answer)
           : absl::StatusOr<std::vector<absl::string_view>>(absl::UnavailableError("failed"));
    if (items.ok()) {
      for (absl::string_view item : *items) {
        absl::StatusOr<upstream::ResponseParts> parts = upstream::SplitResponse(item);
        if (!parts.ok()) continue;
        const std::optional<uint64_t> id = upstream::NumericId(*parts);
        if (id.has_value() && *id >= 1 && *id <= calls.size()) by_id[*id - 1] = item;
      }
    }
    for (size_t i = 0; i < calls.size(); ++i) calls[i].answered(std::string(by_id[i]));
  }

  void Run() {
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) break;
        for (QueuedCall& call : incoming_) waiting_.push_back(std::move(call));
        incoming_.clear();
      }
      StartWaiting();
      int running = 0;
      curl_multi_perform(multi_, &running);
      int queued = 0;
      while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
        if (message->msg != CURLMSG_DONE) continue;
        Transfer* raw = nullptr;
        curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &raw);
        std::unique_ptr<Transfer> transfer(raw);
        const bool ok = message->data.result == CURLE_OK;
        curl_multi_remove_handle(multi_, transfer->easy);
        idle_.push_back(transfer->easy);
        --active_;
        Answer(*transfer, ok);
      }
      // Calls left waiting go now on the connections just freed.
      if (!waiting_.empty() && active_ < max_connections_) continue;
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
  }

  const std::string url_;
  const size_t max_connections_;
  const size_t batch_max_calls_;
  CURLM* multi_;
  curl_slist* headers_;
  // Curl thread only:
  std::vector<CURL*> idle_;
  std::deque<QueuedCall> waiting_;
  size_t active_ = 0;  // Requests added to the multi handle, not yet done.

  std::thread thread_;
  absl::Mutex mu_;
  std::vector<QueuedCall> incoming_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

// The request object of `request` after its id.
std::string JsonRpcTail(const v1::CallRequest& request) {
  return absl::StrCat(R"("method":")", request.method(), R"(","params":)",
                      request.params_json().empty() ? "[]" : request.params_json(), "}");
}

void SetAnswer(std::string answer, v1::CallResponse& response) {
  if (answer.empty()) {
    response.mutable_status()->set_code(grpc::StatusCode::UNAVAILABLE);
  } else {
    response.set_result_json(std::move(answer));
  }
}

// Where calls go: to the curl thread, or for --inline_method, answered at
// once on the calling thread.
class Backend {
 public:
  Backend(CurlThread& curl, std::string inline_method)
      : curl_(curl), inline_method_(std::move(inline_method)) {}

  void Call(const v1::CallRequest& request, Answered answered) {
    if (request.method() == inline_method_) {
      answered(R"({"jsonrpc":"2.0","result":"inline","id":1})");
      return;
    }
    curl_.Post(QueuedCall{JsonRpcTail(request), std::move(answered)});
  }

 private:
  CurlThread& curl_;
  const std::string inline_method_;
};

// CallStream: every request read is sent at once; answers are written one
// at a time in the order they come back.
class StreamReactor final : public grpc::ServerBidiReactor<v1::CallRequest, v1::CallResponse> {
 public:
  explicit StreamReactor(Backend& backend) : backend_(backend) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mu_);
      reads_done_ = true;
      MaybeWriteLocked();
      return;
    }
    const uint64_t id = request_.request_id();
    {
      absl::MutexLock lock(&mu_);
      ++outstanding_;
    }
    backend_.Call(request_, [this, id](std::string answer) {
      v1::CallResponse response;
      response.set_request_id(id);
      SetAnswer(std::move(answer), response);
      bool last = false;
      {
        absl::MutexLock lock(&mu_);
        --outstanding_;
        if (done_) {
          last = outstanding_ == 0;
        } else {
          queued_.push_back(std::move(response));
          MaybeWriteLocked();
        }
      }
      if (last) delete this;  // The stream ended before this answer came.
    });
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) write_failed_ = true;
    MaybeWriteLocked();
  }

  void OnDone() override {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      last = outstanding_ == 0;
    }
    if (last) delete this;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (!queued_.empty() && !write_failed_) {
      writing_ = true;
      write_ = std::move(queued_.front());
      queued_.pop_front();
      StartWrite(&write_);
    } else if (reads_done_ && outstanding_ == 0) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  Backend& backend_;
  v1::CallRequest request_;  // Owned by the pending read.
  absl::Mutex mu_;
  v1::CallResponse write_ ABSL_GUARDED_BY(mu_);  // Owned by the write in flight.
  std::deque<v1::CallResponse> queued_ ABSL_GUARDED_BY(mu_);
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

class FloorRpc final : public v1::Rpc::CallbackService {
 public:
  explicit FloorRpc(Backend& backend) : backend_(backend) {}

  grpc::ServerUnaryReactor* Call(grpc::CallbackServerContext* context,
                                 const v1::CallRequest* request,
                                 v1::CallResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    response->set_request_id(request->request_id());
    backend_.Call(*request, [reactor, response](std::string answer) {
      SetAnswer(std::move(answer), *response);
      reactor->Finish(grpc::Status::OK);
    });
    return reactor;
  }

  grpc::ServerBidiReactor<v1::CallRequest, v1::CallResponse>* CallStream(
      grpc::CallbackServerContext*) override {
    return new StreamReactor(backend_);
  }

 private:
  Backend& backend_;
};

int Run() {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // Before any thread starts.

  grpc::EnableDefaultHealthCheckService(true);  // For `sbctl health`.
  CurlThread curl(absl::GetFlag(FLAGS_upstream_url), absl::GetFlag(FLAGS_max_connections),
                  absl::GetFlag(FLAGS_batch_max_calls));
  Backend backend(curl, absl::GetFlag(FLAGS_inline_method));
  FloorRpc service(backend);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::cerr << "floor_proxy: cannot listen on " << absl::GetFlag(FLAGS_listen) << "\n";
    return 1;
  }
  int signal = 0;
  sigwait(&stop_signals, &signal);
  server->Shutdown();
  return 0;
}

}  // namespace
}  // namespace switchboard::floor_proxy

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return switchboard::floor_proxy::Run();
}
