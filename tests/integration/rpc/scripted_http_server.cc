#include "tests/integration/rpc/scripted_http_server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
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

}  // namespace

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
      script = script_;
      mu_.Await(absl::Condition(this, &ScriptedHttpServer::MayAnswer));
      if (stopping_) break;
    }
    if (script.hang_up) break;
    const std::string answer =
        absl::StrCat("HTTP/1.1 ", script.status, " Scripted\r\nContent-Type: application/json\r\n",
                     "Content-Length: ", script.body.size(), "\r\n\r\n", script.body);
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
