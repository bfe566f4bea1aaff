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

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
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
  // idle timeout does: without a `Connection: close` header.
  void CloseIdleConnection() { close_requested_ = true; }

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
      close(connection);
    }
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
  std::thread thread_;
};

}  // namespace switchboard::http
