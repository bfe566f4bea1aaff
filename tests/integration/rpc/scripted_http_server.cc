#include "tests/integration/rpc/scripted_http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {
namespace {

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t written = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (written <= 0) return false;
    data.remove_prefix(static_cast<size_t>(written));
  }
  return true;
}

// The Content-Length of a request head; 0 when it has none.
size_t ContentLength(absl::string_view head) {
  for (absl::string_view line : absl::StrSplit(head, "\r\n")) {
    std::pair<absl::string_view, absl::string_view> field = absl::StrSplit(line, ':');
    size_t length = 0;
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(field.first), "content-length") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(field.second), &length)) {
      return length;
    }
  }
  return 0;
}

// The params of one request Switchboard wrote ("null" without any).
absl::string_view ParamsOf(absl::string_view request) {
  const size_t at = request.find(R"("params":)");
  if (at == absl::string_view::npos) return "null";
  return request.substr(at + 9, request.size() - 1 - (at + 9));
}

// The id of one request Switchboard wrote.
absl::string_view IdOf(absl::string_view request) {
  const size_t at = request.find(R"("id":)") + 5;
  return request.substr(at, request.find(',', at) - at);
}

// The method of one request Switchboard wrote.
absl::string_view MethodOf(absl::string_view request) {
  const size_t at = request.find(R"("method":")") + 10;
  return request.substr(at, request.find('"', at) - at);
}

// The answer of a script with echo_params to `body`.
std::string EchoAnswer(const ScriptedHttpServer::Script& script, absl::string_view body) {
  std::vector<std::string> responses;
  for (const std::string& request : SwitchboardRequestsOf(body)) {
    const absl::string_view params = ParamsOf(request);
    if (!script.drop_params.empty() && absl::StrContains(params, script.drop_params)) continue;
    auto fixed = script.results.find(std::string(MethodOf(request)));
    responses.push_back(absl::StrCat(R"({"jsonrpc":"2.0","id":)", IdOf(request), R"(,"result":)",
                                     fixed == script.results.end() ? params : fixed->second, "}"));
  }
  if (body.empty() || body.front() != '[') return responses.empty() ? "" : responses.front();
  if (script.reverse_batches) std::reverse(responses.begin(), responses.end());
  return absl::StrCat("[", absl::StrJoin(responses, ","), "]");
}

}  // namespace

// The requests of a body Switchboard wrote: its one request, or each of its
// batch's (the params of its calls hold no "},{").
std::vector<std::string> SwitchboardRequestsOf(absl::string_view body) {
  if (body.empty() || body.front() != '[') return {std::string(body)};
  std::vector<std::string> requests = absl::StrSplit(body.substr(1, body.size() - 2), "},{");
  for (size_t i = 0; i < requests.size(); ++i) {
    if (i > 0) requests[i].insert(0, "{");
    if (i + 1 < requests.size()) requests[i].push_back('}');
  }
  return requests;
}

absl::StatusOr<std::unique_ptr<ScriptedHttpServer>> ScriptedHttpServer::Start(Script script) {
  absl::StatusOr<LoopbackSocket> listener = ListenOnLoopback(512);
  if (!listener.ok()) return listener.status();
  std::unique_ptr<ScriptedHttpServer> server(
      new ScriptedHttpServer(listener->fd, listener->port, std::move(script)));
  server->acceptor_ = std::thread([server = server.get()] { server->AcceptLoop(); });
  return server;
}

ScriptedHttpServer::~ScriptedHttpServer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;  // Wakes held answers.
  }
  shutdown(listen_fd_, SHUT_RDWR);  // Wakes accept().
  acceptor_.join();
  close(listen_fd_);
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : connection_fds_) {
      if (fd >= 0) shutdown(fd, SHUT_RDWR);  // Wakes read().
    }
    threads.swap(connection_threads_);
  }
  for (std::thread& thread : threads) thread.join();
}

void ScriptedHttpServer::SetScript(Script script) {
  absl::MutexLock lock(&mu_);
  script_ = std::move(script);
}

void ScriptedHttpServer::HoldAnswers() {
  absl::MutexLock lock(&mu_);
  held_ = true;
}

void ScriptedHttpServer::ReleaseAnswers() {
  absl::MutexLock lock(&mu_);
  held_ = false;
}

std::string ScriptedHttpServer::url() const {
  return absl::StrCat("http://127.0.0.1:", port_, "/");
}

std::vector<std::string> ScriptedHttpServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

bool ScriptedHttpServer::WaitForRequests(size_t count, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const auto enough = [&]()
                          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requests_.size() >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

std::vector<absl::Time> ScriptedHttpServer::request_times() const {
  absl::MutexLock lock(&mu_);
  return request_times_;
}

int ScriptedHttpServer::calls() const {
  absl::MutexLock lock(&mu_);
  int calls = 0;
  for (const std::string& body : requests_)
    calls += static_cast<int>(SwitchboardRequestsOf(body).size());
  return calls;
}

int ScriptedHttpServer::connections() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(connection_fds_.size());
}

void ScriptedHttpServer::AcceptLoop() {
  while (true) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      if (fd >= 0) close(fd);
      return;
    }
    if (fd < 0) continue;  // A transient error.
    connection_fds_.push_back(fd);
    connection_threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

void ScriptedHttpServer::Serve(int fd) {
  std::string buffered;
  std::string body;
  while (ReadRequest(fd, buffered, body)) {
    Script script;
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(body);
      request_times_.push_back(absl::Now());
      script = script_;
      mu_.Await(absl::Condition(this, &ScriptedHttpServer::MayAnswer));
      if (stopping_) break;
    }
    if (script.hang_up) break;
    absl::SleepFor(script.delay);
    const std::string answer_body = script.echo_params ? EchoAnswer(script, body) : script.body;
    const std::string answer =
        absl::StrCat("HTTP/1.1 ", script.status, " Scripted\r\nContent-Type: application/json\r\n",
                     "Content-Length: ", answer_body.size(), "\r\n\r\n", answer_body);
    if (script.cut_answer) {
      WriteAll(fd, absl::string_view(answer).substr(0, answer.size() / 2));
      break;
    }
    if (!WriteAll(fd, answer)) break;
  }
  // Forget the descriptor before closing it, so the destructor never shuts
  // down a number reused by another socket.
  {
    absl::MutexLock lock(&mu_);
    for (int& known : connection_fds_) {
      if (known == fd) known = -1;
    }
  }
  close(fd);
}

bool ScriptedHttpServer::ReadRequest(int fd, std::string& buffered, std::string& body) {
  char chunk[16384];
  size_t head_end;
  while ((head_end = buffered.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffered.append(chunk, static_cast<size_t>(n));
  }
  const size_t body_start = head_end + 4;
  const size_t length = ContentLength(absl::string_view(buffered).substr(0, head_end));
  while (buffered.size() < body_start + length) {
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return false;
    buffered.append(chunk, static_cast<size_t>(n));
  }
  body = buffered.substr(body_start, length);
  buffered.erase(0, body_start + length);
  return true;
}

}  // namespace switchboard::testing
