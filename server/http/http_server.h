// HttpServer: a small HTTP/1.1 server on one dispatcher, for Switchboard's
// own HTTP endpoints (the metrics endpoint, the JSON-RPC front door).
//
// Event-driven, so an idle or a slowloris connection costs a socket and a
// few kilobytes, never a thread. Bounded on purpose:
//   * at most `max_connections` open; beyond, a new one is closed at once
//     and reported (OnRefused);
//   * each request must arrive whole (head and body) within
//     `request_timeout` of the accept, or of the previous answer on a
//     kept-alive connection, whatever it sends meanwhile; then the
//     connection closes;
//   * at most `max_head_bytes` of request head (431) and `max_body_bytes` of
//     body, by Content-Length (413); chunked bodies are refused (411).
// One request at a time per connection: the next one is read only after the
// answer, so answers keep the order of requests (pipelining works) and a
// connection buffers at most one request. `Expect: 100-continue` is
// answered. With `keep_alive` false, or when the client asks for it
// (`Connection: close`, HTTP/1.0), the server half-closes after the answer
// and closes when the client does.
//
// Threading: Start() and the destructor from any thread but the
// dispatcher's (they wait for it); the handler runs on the dispatcher, which
// must outlive the server. A Responder may be used from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/event/anchor.h"
#include "server/event/dispatcher_impl.h"

struct bufferevent;

namespace switchboard::http {

struct HttpRequest {
  std::string method;  // As sent: "GET", "POST", ...
  std::string path;    // The target without its query.
  std::string query;   // After '?', without it; empty when none.
  // Header names in lower case, values trimmed, in arrival order.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header named `lowercase_name`, or nullptr.
  const std::string* Header(absl::string_view lowercase_name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::vector<std::pair<std::string, std::string>> headers;  // Beyond the standard ones.
  std::string body;
};

// Takes over a connection whose request was answered with an upgrade
// (Responder::Upgrade): its bufferevent, the 101 answer queued on it, any
// bytes the client sent after its request in its input. Runs on the
// dispatcher thread, and owns `bev` from then on.
using UpgradeHandler = absl::AnyInvocable<void(bufferevent* bev)>;

// Answers one request, once, from any thread. Destroyed without an answer,
// it answers 500, so a request is never left hanging. An answer for a
// connection that has closed meanwhile is dropped.
class Responder {
 public:
  Responder(Responder&& other) noexcept;
  Responder& operator=(Responder&&) = delete;
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  ~Responder();

  void Send(HttpResponse response);

  // Answers with `response` (status 101 and its headers; no body) and hands
  // the connection to `take`: it leaves this server, its count and its
  // timeouts. When the connection closed meanwhile, or the server is
  // draining (then it answers 503), `take` is dropped without running.
  void Upgrade(HttpResponse response, UpgradeHandler take);

 private:
  friend class HttpServer;
  class Connections;
  Responder(event::Anchor<Connections> connections, uint64_t connection);

  event::Anchor<Connections> connections_;
  uint64_t connection_;
  bool answered_ = false;
};

// What the server reports, on the dispatcher thread (metrics adapters).
class HttpServerObserver {
 public:
  virtual ~HttpServerObserver() = default;
  virtual void OnOpened() = 0;
  virtual void OnClosed() = 0;
  // A connection closed at once: max_connections were open.
  virtual void OnRefused() = 0;
};

class HttpServer {
 public:
  struct Options {
    std::string host;   // A name, IPv4, or IPv6 without brackets.
    uint16_t port = 0;  // 0 picks one.
    size_t max_connections = 512;
    absl::Duration request_timeout = absl::Seconds(5);
    size_t max_head_bytes = 8192;
    size_t max_body_bytes = 0;  // 0: requests carry no body.
    bool keep_alive = false;    // false: one request per connection.
  };
  // Runs on the dispatcher thread, once per request.
  using Handler = absl::AnyInvocable<void(HttpRequest request, Responder responder)>;

  // Listens on `options.host`:`options.port`. UNAVAILABLE when it cannot
  // resolve or listen. `observer` must outlive the server.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(event::DispatcherImpl& dispatcher,
                                                           Options options, Handler handler,
                                                           HttpServerObserver& observer);

  // Stops listening and closes every connection; answers still to come are
  // dropped.
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }

  // For a drain: stops accepting connections (new ones are refused by the
  // kernel), closes the idle ones, and answers the requests in progress with
  // `Connection: close`, closing each connection after its answer. Any
  // thread; returns at once.
  void StopAccepting();

 private:
  HttpServer(event::DispatcherImpl& dispatcher, std::unique_ptr<Responder::Connections> connections,
             int port);

  event::DispatcherImpl& dispatcher_;
  std::unique_ptr<Responder::Connections> connections_;  // Used and freed on the dispatcher.
  const int port_;
};

// "200 OK", "404 Not Found", ...: the status line's code and reason.
std::string StatusLine(int status);

}  // namespace switchboard::http
