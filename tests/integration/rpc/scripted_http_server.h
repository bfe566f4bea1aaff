// ScriptedHttpServer: a loopback HTTP/1.1 server whose answers the test
// scripts, for the provider behaviours that stock nginx-light (NginxServer)
// cannot play: answering 5xx, reading a request and hanging up without an
// answer, holding every answer until the test releases them.
//
// Used by the Rpc service's acceptance tests (this folder). It records every
// request it has read in full (its body), which is what those tests count:
// nginx logs a request only once it has answered it, and never one whose
// connection it merely dropped.
//
// One thread accepts; each connection gets a thread that reads its requests
// one after another (keep-alive) and answers each by the script in force
// when the request arrived. The destructor wakes every thread (held answers
// are dropped) and joins them. Thread-safe.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace switchboard::testing {

// The JSON-RPC requests of a body Switchboard wrote: its one request, or
// each of its batch's (whose params hold no "},{").
std::vector<std::string> SwitchboardRequestsOf(absl::string_view body);

class ScriptedHttpServer {
 public:
  // How the server answers a request.
  struct Script {
    int status = 200;
    std::string body = R"({"jsonrpc":"2.0","result":0,"id":1})";
    // Closes the connection after reading the request, without answering.
    bool hang_up = false;
    // Answers each JSON-RPC request, alone or in a batch, with its own id
    // and its params as the result (`body` unused). Relies on the request
    // shape Switchboard writes: {"jsonrpc":"2.0","id":N,"method":M[,"params":P]}.
    bool echo_params = false;
    // With echo_params, a batch's answer lists the responses in reverse
    // order, and leaves out the one whose params contain `drop_params`
    // (when set).
    bool reverse_batches = false;
    std::string drop_params;
    // With echo_params, calls of these methods are answered with this result
    // (JSON text) instead of their params, as a real provider would.
    std::map<std::string, std::string> results;
    // Sends the first half of the answer, then closes the connection.
    bool cut_answer = false;
    // Waits this long before answering (a slow provider).
    absl::Duration delay = absl::ZeroDuration();
  };

  static absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> Start(Script script);
  ~ScriptedHttpServer();

  ScriptedHttpServer(const ScriptedHttpServer&) = delete;
  ScriptedHttpServer& operator=(const ScriptedHttpServer&) = delete;

  // Applies to requests read from now on.
  void SetScript(Script script);

  // While answers are held, requests are read and recorded, and their
  // answers wait until ReleaseAnswers().
  void HoldAnswers();
  void ReleaseAnswers();

  // "http://127.0.0.1:<port>/".
  std::string url() const;

  // The bodies of the requests read so far, in arrival order.
  std::vector<std::string> requests() const;

  // Blocks until `count` requests have been read in all, or `timeout`
  // passes: whether they were.
  bool WaitForRequests(size_t count, absl::Duration timeout) const;

  // When each of requests() was read in full, in the same order.
  std::vector<absl::Time> request_times() const;

  // JSON-RPC calls in the requests read so far (a batch counts each).
  int calls() const;

  // Connections accepted so far.
  int connections() const;

 private:
  ScriptedHttpServer(int listen_fd, int port, Script script)
      : listen_fd_(listen_fd), port_(port), script_(std::move(script)) {}

  void AcceptLoop();
  void Serve(int fd);
  bool MayAnswer() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !held_ || stopping_; }
  // Reads one request's body from `fd`, `buffered` holding bytes read
  // before; false at the end of the connection.
  bool ReadRequest(int fd, std::string& buffered, std::string& body);

  const int listen_fd_;
  const int port_;
  std::thread acceptor_;

  mutable absl::Mutex mu_;
  Script script_ ABSL_GUARDED_BY(mu_);
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> request_times_ ABSL_GUARDED_BY(mu_);
  std::vector<int> connection_fds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> connection_threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace switchboard::testing
