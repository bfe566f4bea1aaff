// EchoServer: a minimal HTTP/1.1 server on a loopback port picked at run
// time that answers every request with the request's own body, for the HTTP
// pool's tests that need to see what reached the server (nginx cannot echo a
// POST body), and that closes kept-alive connections when told to, as a
// provider's idle timeout does.
//
// One connection at a time, on a thread of its own: enough for requests sent
// one after another. Not a general HTTP server: it reads a request line,
// headers and a Content-Length body, nothing else.
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace switchboard::http {

class EchoServer {
 public:
  EchoServer() : EchoServer(testing::ListenOnLoopback(16).value()) {}

  ~EchoServer() {
    stopping_ = true;
    thread_.join();
    close(listener_);
  }

  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/"); }

  // Closes the connection being served, once idle (after its answer), as an
  // idle timeout does: without a `Connection: close` header. Returns once the
  // client's side has acknowledged the close, so its socket reads the end of
  // the stream and the client's next use of the connection finds it closed;
  // false when that did not happen within `timeout`.
  bool CloseIdleConnection(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    const int closed_before = closed_on_request_;
    close_requested_ = true;
    const auto closed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return closed_on_request_ > closed_before;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&closed), timeout);
  }

  // Connections accepted so far.
  int accepted() const { return accepted_; }

 private:
  // Waits up to 10 ms for `fd` to be readable; false when it is not.
  static bool Readable(int fd) {
    pollfd ready{fd, POLLIN, 0};
    return poll(&ready, 1, 10) == 1;
  }

  void Serve() {
    while (!stopping_) {
      if (!Readable(listener_)) continue;
      const int connection = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (connection < 0) continue;
      ++accepted_;
      close_requested_ = false;
      ServeConnection(connection);
      if (close_requested_) {
        CloseAcknowledged(connection);
        absl::MutexLock lock(&mu_);
        ++closed_on_request_;
        continue;
      }
      close(connection);
    }
  }

  // Sends the end of the stream and closes `connection` once the peer's
  // kernel has acknowledged it (TCP's FIN_WAIT2; CLOSE or TIME_WAIT if the
  // peer closed too). Loopback acknowledges within microseconds: this
  // waits on the socket's state, not on time passing.
  static void CloseAcknowledged(int connection) {
    shutdown(connection, SHUT_WR);
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    while (absl::Now() < give_up) {
      tcp_info info{};
      socklen_t length = sizeof(info);
      if (getsockopt(connection, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) break;
      if (info.tcpi_state == TCP_FIN_WAIT2 || info.tcpi_state == TCP_TIME_WAIT ||
          info.tcpi_state == TCP_CLOSE) {
        break;
      }
      std::this_thread::yield();
    }
    close(connection);
  }

  // Answers requests on `connection` until the client closes it, the test
  // asks for it to close, or the server stops.
  void ServeConnection(int connection) {
    std::string received;
    while (!stopping_ && !close_requested_) {
      const size_t headers_end = received.find("\r\n\r\n");
      if (headers_end != std::string::npos) {
        const size_t body_length = ContentLength(received.substr(0, headers_end));
        const size_t request_length = headers_end + 4 + body_length;
        if (received.size() >= request_length) {
          const std::string body = received.substr(headers_end + 4, body_length);
          received.erase(0, request_length);
          const std::string answer = absl::StrCat(
              "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
              "\r\n\r\n", body);
          if (send(connection, answer.data(), answer.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(answer.size())) {
            return;
          }
          continue;
        }
      }
      if (!Readable(connection)) continue;
      char buffer[64 * 1024];
      const ssize_t n = recv(connection, buffer, sizeof(buffer), 0);
      if (n <= 0) return;
      received.append(buffer, n);
    }
  }

  static size_t ContentLength(absl::string_view headers) {
    for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
      if (!absl::StartsWithIgnoreCase(line, "content-length:")) continue;
      size_t length = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &length)) return length;
    }
    return 0;
  }

  explicit EchoServer(testing::LoopbackSocket listener)
      : listener_(listener.fd), port_(listener.port) {
    thread_ = std::thread([this] { Serve(); });
  }

  const int listener_;
  const int port_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> close_requested_{false};
  std::atomic<int> accepted_{0};
  absl::Mutex mu_;
  // Connections closed because CloseIdleConnection() asked.
  int closed_on_request_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace switchboard::http
