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
//   floor_proxy --listen=127.0.0.1:PORT --upstream_url=http://127.0.0.1:PORT/
//               [--max_connections=8] [--inline_method=getGenesisHash]
// Runs until SIGINT or SIGTERM.
#include <curl/curl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdint>
#include <deque>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/functional/any_invocable.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "switchboard/v1/rpc.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "gRPC listen address");
ABSL_FLAG(std::string, upstream_url, "", "the provider's URL");
ABSL_FLAG(int, max_connections, 8, "kept-alive connections to the provider");
ABSL_FLAG(std::string, inline_method, "getGenesisHash",
          "calls to this method are answered at once, in the gRPC handler");

namespace switchboard::floor_proxy {
namespace {

// The provider's whole answer, or empty when the transfer failed.
using Answered = absl::AnyInvocable<void(std::string answer)>;

// One libcurl multi handle on its own thread: POSTs bodies handed over by
// any thread and calls back on the curl thread.
class CurlThread {
 public:
  CurlThread(std::string url, int max_connections) : url_(std::move(url)) {
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

  void Post(std::string body, Answered answered) {
    {
      absl::MutexLock lock(&mu_);
      incoming_.push_back(std::make_unique<Transfer>(std::move(body), std::move(answered)));
    }
    curl_multi_wakeup(multi_);
  }

 private:
  struct Transfer {
    Transfer(std::string body, Answered answered)
        : body(std::move(body)), answered(std::move(answered)) {}
    std::string body;
    std::string answer;
    Answered answered;
    CURL* easy = nullptr;
  };

  static size_t Append(char* data, size_t size, size_t count, void* transfer) {
    static_cast<Transfer*>(transfer)->answer.append(data, size * count);
    return size * count;
  }

  void Start(std::unique_ptr<Transfer> transfer) {
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
    transfer.release();  // Owned through CURLOPT_PRIVATE until done.
  }

  void Run() {
    for (;;) {
      std::vector<std::unique_ptr<Transfer>> started;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) break;
        started.swap(incoming_);
      }
      for (auto& transfer : started) Start(std::move(transfer));
      int running = 0;
      curl_multi_perform(multi_, &running);
      int queued = 0;
      while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
        if (message->msg != CURLMSG_DONE) continue;
        Transfer* raw = nullptr;
        curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &raw);
        std::unique_ptr<Transfer> transfer(raw);
        if (message->data.result != CURLE_OK) transfer->answer.clear();
        curl_multi_remove_handle(multi_, transfer->easy);
        idle_.push_back(transfer->easy);
        transfer->answered(std::move(transfer->answer));
      }
      curl_multi_poll(multi_, nullptr, 0, 1000, nullptr);
    }
  }

  const std::string url_;
  CURLM* multi_;
  curl_slist* headers_;
  std::vector<CURL*> idle_;  // Curl thread only.
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<Transfer>> incoming_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

std::string JsonRpcBody(const v1::CallRequest& request) {
  return absl::StrCat(R"({"jsonrpc":"2.0","id":1,"method":")", request.method(), R"(","params":)",
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
    curl_.Post(JsonRpcBody(request), std::move(answered));
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
  CurlThread curl(absl::GetFlag(FLAGS_upstream_url), absl::GetFlag(FLAGS_max_connections));
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
