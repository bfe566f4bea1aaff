// jsonrpc_provider: a small, fast JSON-RPC provider on loopback for the
// benchmarks of tests/perf (bench_rpc.sh). Unlike nginx's `return 200`, it
// answers a batch: each JSON-RPC call gets a response carrying its own id.
//
// HTTP/1.1 over plain TCP, kept alive and safe to pipeline (answers go out in
// the order the requests came). A POST whose body is one JSON-RPC request gets
//   {"jsonrpc":"2.0","result":<--result>,"id":<the request's id>}
// with the id copied byte for byte; a POST whose body is a batch (a JSON
// array of requests) gets an array with one such response per request, in
// the batch's order. A request without an id is a notification and gets no
// response (a body of nothing but notifications: 204). A body that is not
// JSON gets JSON-RPC's -32700 error, an element that is not an object or an
// empty batch -32600, as the JSON-RPC 2.0 specification says. The method and
// params are not looked at. GET /stats answers the counts so far, as JSON:
// HTTP requests answered (besides /stats), calls answered and batches among
// the requests, so a benchmark can report calls per HTTP request; the same
// line goes to stderr on SIGINT or SIGTERM.
//
// Bounded: a header section over 64 KiB gets 431, a body over
// --max_body_bytes 413 (then the connection closes); Transfer-Encoding is not
// supported (501: every client here sends Content-Length). A connection is
// not read while more than 4 MiB of its answers wait to be sent.
//
// --threads event loops (epoll, level-triggered), each accepting from one
// shared listening socket (EPOLLEXCLUSIVE) and serving the connections it
// accepted. One thread is the fastest on a 2-core machine shared with the
// load generator and the proxy under test.
//
//   jsonrpc_provider [--port=0] [--threads=1] [--result=1234]
//                    [--max_body_bytes=16777216]
// Listens on 127.0.0.1; prints the port (the one picked, for --port=0) as
// the first line on stdout, then runs until SIGINT or SIGTERM.
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tests/perf/jsonrpc_answer.h"

ABSL_FLAG(int, port, 0, "loopback port to listen on; 0: pick one (printed on stdout)");
ABSL_FLAG(int, threads, 1, "event loop threads");
ABSL_FLAG(std::string, result, "1234", "each response's result, as raw JSON");
ABSL_FLAG(int64_t, max_body_bytes, 16 << 20, "a longer request body gets 413");

namespace switchboard::jsonrpc_provider {
namespace {

constexpr size_t kMaxHeaderBytes = 64 << 10;
constexpr size_t kMaxPendingOutput = 4 << 20;
constexpr size_t kReadChunk = 64 << 10;
// ---------------------------------------------------------------------------
// HTTP/1.1 over epoll.

struct alignas(64) Counters {
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> batches{0};
};

struct Connection {
  int fd = -1;
  std::string in;          // Received, from in_start on not yet handled.
  size_t in_start = 0;     // Where the request being read starts.
  size_t scanned = 0;      // Bytes of its header section searched for the end.
  bool continued = false;  // Sent 100 Continue for the request being read.
  std::string out;         // Answers not yet sent, from out_start on.
  size_t out_start = 0;
  bool closing = false;    // Close once `out` is sent; read nothing more.
  bool peer_done = false;  // The peer sent all it will: close once answered.
  bool want_write = false;
};

class Loop {
 public:
  Loop(int listen_fd, int stop_fd, std::vector<std::unique_ptr<Counters>>* all_counters,
       Counters* counters, std::string result, size_t max_body)
      : listen_fd_(listen_fd),
        stop_fd_(stop_fd),
        all_counters_(all_counters),
        counters_(counters),
        result_(std::move(result)),
        max_body_(max_body) {}

  void Run() {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    epoll_event listen_event{};
    listen_event.events = EPOLLIN | EPOLLEXCLUSIVE;
    listen_event.data.fd = listen_fd_;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, listen_fd_, &listen_event);
    epoll_event stop_event{};
    stop_event.events = EPOLLIN;
    stop_event.data.fd = stop_fd_;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, stop_fd_, &stop_event);
    epoll_event events[256];
    for (;;) {
      int n = epoll_wait(epoll_, events, 256, -1);
      if (n < 0 && errno != EINTR) break;
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == stop_fd_) {
          for (auto& [conn_fd, conn] : connections_) close(conn_fd);
          close(epoll_);
          return;
        }
        if (fd == listen_fd_) {
          Accept();
          continue;
        }
        auto it = connections_.find(fd);
        if (it == connections_.end()) continue;
        Connection& conn = *it->second;
        bool alive = true;
        if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) alive = OnReadable(conn);
        if (alive && (events[i].events & EPOLLOUT)) alive = Flush(conn);
        if (alive) alive = UpdateInterest(conn);
        if (!alive) Close(fd);
      }
    }
  }

 private:
  void Accept() {
    for (;;) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN: another loop took it, or none left.
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto conn = std::make_unique<Connection>();
      conn->fd = fd;
      epoll_event event{};
      event.events = EPOLLIN | EPOLLRDHUP;
      event.data.fd = fd;
      epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event);
      connections_[fd] = std::move(conn);
    }
  }

  void Close(int fd) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    connections_.erase(fd);
  }

  // Reads what is there, answers every complete request and sends what it
  // can; false when the connection is done.
  bool OnReadable(Connection& conn) {
    if (conn.closing) return true;
    bool eof = false;
    // Enough for any one request: Handle answers or refuses it.
    while (conn.in.size() - conn.in_start <= max_body_ + kMaxHeaderBytes) {
      ssize_t n = read(conn.fd, scratch_, kReadChunk);
      if (n > 0) {
        conn.in.append(scratch_, n);
        if (static_cast<size_t>(n) < kReadChunk) break;
        continue;
      }
      if (n == 0)
        eof = true;
      else if (errno == EINTR)
        continue;
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        return false;
      break;
    }
    if (eof) conn.peer_done = true;
    Handle(conn);
    return Flush(conn);
  }

  // Answers the complete requests in conn.in, in order, while the output
  // stays under kMaxPendingOutput.
  void Handle(Connection& conn) {
    while (!conn.closing && conn.out.size() - conn.out_start < kMaxPendingOutput) {
      absl::string_view pending(conn.in.data() + conn.in_start, conn.in.size() - conn.in_start);
      if (pending.empty()) break;
      size_t search_from = conn.scanned >= 3 ? conn.scanned - 3 : 0;
      size_t header_end = pending.find("\r\n\r\n", search_from);
      if (header_end == absl::string_view::npos) {
        conn.scanned = pending.size();
        if (pending.size() > kMaxHeaderBytes) Fail(conn, 431, "Request Header Fields Too Large");
        break;
      }
      if (header_end + 4 > kMaxHeaderBytes) {
        Fail(conn, 431, "Request Header Fields Too Large");
        break;
      }
      Request request;
      if (!ParseHead(pending.substr(0, header_end), &request)) {
        Fail(conn, 400, "Bad Request");
        break;
      }
      if (request.chunked) {
        Fail(conn, 501, "Not Implemented");
        break;
      }
      if (request.content_length > max_body_) {
        Fail(conn, 413, "Content Too Large");
        break;
      }
      size_t total = header_end + 4 + request.content_length;
      if (pending.size() < total) {
        conn.scanned = header_end;  // Found; stop searching.
        if (request.expect_continue && !conn.continued) {
          conn.out.append("HTTP/1.1 100 Continue\r\n\r\n");
          conn.continued = true;
        }
        break;
      }
      Respond(conn, request, pending.substr(header_end + 4, request.content_length));
      if (!request.keep_alive) conn.closing = true;
      conn.in_start += total;
      conn.scanned = 0;
      conn.continued = false;
    }
    // Drop what was handled; keep a partial request.
    if (conn.in_start == conn.in.size()) {
      conn.in.clear();
      conn.in_start = 0;
    } else if (conn.in_start > conn.in.size() / 2) {
      conn.in.erase(0, conn.in_start);
      conn.in_start = 0;
    }
  }

  struct Request {
    absl::string_view method;
    absl::string_view target;
    size_t content_length = 0;
    bool keep_alive = true;
    bool chunked = false;
    bool expect_continue = false;
  };

  // The request line and the headers that matter, from the header section
  // without its final CRLF CRLF.
  static bool ParseHead(absl::string_view head, Request* request) {
    size_t line_end = head.find("\r\n");
    absl::string_view line = head.substr(0, line_end);
    size_t space1 = line.find(' ');
    size_t space2 = space1 == absl::string_view::npos ? space1 : line.find(' ', space1 + 1);
    if (space2 == absl::string_view::npos ||
        line.find(' ', space2 + 1) != absl::string_view::npos) {
      return false;
    }
    absl::string_view version = line.substr(space2 + 1);
    if (!absl::StartsWith(version, "HTTP/1.")) return false;
    request->method = line.substr(0, space1);
    request->target = line.substr(space1 + 1, space2 - space1 - 1);
    request->keep_alive = version != "HTTP/1.0";
    bool has_length = false;
    while (line_end != absl::string_view::npos) {
      size_t start = line_end + 2;
      line_end = head.find("\r\n", start);
      line = head.substr(start, line_end == absl::string_view::npos ? line_end : line_end - start);
      size_t colon = line.find(':');
      if (colon == absl::string_view::npos || colon == 0) return false;
      absl::string_view name = line.substr(0, colon);
      absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
      if (absl::EqualsIgnoreCase(name, "content-length")) {
        uint64_t length = 0;
        if (value.empty() || value.find_first_not_of("0123456789") != absl::string_view::npos ||
            !absl::SimpleAtoi(value, &length) ||
            (has_length && length != request->content_length)) {
          return false;
        }
        request->content_length = length;
        has_length = true;
      } else if (absl::EqualsIgnoreCase(name, "transfer-encoding")) {
        request->chunked = true;
      } else if (absl::EqualsIgnoreCase(name, "connection")) {
        std::string tokens = absl::AsciiStrToLower(value);
        if (absl::StrContains(tokens, "close")) request->keep_alive = false;
        if (absl::StrContains(tokens, "keep-alive")) request->keep_alive = true;
      } else if (absl::EqualsIgnoreCase(name, "expect")) {
        request->expect_continue = absl::EqualsIgnoreCase(value, "100-continue");
      }
    }
    return true;
  }

  void Respond(Connection& conn, const Request& request, absl::string_view body) {
    absl::string_view path = request.target.substr(0, request.target.find('?'));
    if (request.method == "GET" && path == "/stats") {
      uint64_t http_requests = 0, calls = 0, batches = 0;
      for (const auto& counters : *all_counters_) {
        http_requests += counters->http_requests.load(std::memory_order_relaxed);
        calls += counters->calls.load(std::memory_order_relaxed);
        batches += counters->batches.load(std::memory_order_relaxed);
      }
      Reply(conn, 200, "OK",
            absl::StrCat(R"({"http_requests":)", http_requests, R"(,"calls":)", calls,
                         R"(,"batches":)", batches, "}"),
            request.keep_alive);
      return;
    }
    if (request.method != "POST") {
      Reply(conn, 405, "Method Not Allowed", "", request.keep_alive);
      return;
    }
    uint64_t calls = 0, batches = 0;
    std::string answer = Answer(body, result_, &calls, &batches);
    counters_->http_requests.fetch_add(1, std::memory_order_relaxed);
    if (calls) counters_->calls.fetch_add(calls, std::memory_order_relaxed);
    if (batches) counters_->batches.fetch_add(batches, std::memory_order_relaxed);
    if (answer.empty()) {
      Reply(conn, 204, "No Content", "", request.keep_alive);
    } else {
      Reply(conn, 200, "OK", answer, request.keep_alive);
    }
  }

  static void Reply(Connection& conn, int code, absl::string_view reason, absl::string_view body,
                    bool keep_alive) {
    absl::StrAppend(&conn.out, "HTTP/1.1 ", code, " ", reason, "\r\n");
    if (code != 204) {
      absl::StrAppend(&conn.out, "Content-Type: application/json\r\nContent-Length: ", body.size(),
                      "\r\n");
    }
    if (!keep_alive) conn.out.append("Connection: close\r\n");
    conn.out.append("\r\n");
    conn.out.append(body.data(), body.size());
  }

  // An error that ends the connection: nothing after it is read.
  static void Fail(Connection& conn, int code, absl::string_view reason) {
    Reply(conn, code, reason, "", false);
    conn.closing = true;
  }

  // Sends what it can of conn.out, answering the requests held back while
  // it was full; false when the connection is done.
  bool Flush(Connection& conn) {
    for (;;) {
      while (conn.out_start < conn.out.size()) {
        ssize_t n = send(conn.fd, conn.out.data() + conn.out_start,
                         conn.out.size() - conn.out_start, MSG_NOSIGNAL);
        if (n > 0) {
          conn.out_start += n;
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          return true;
        } else {
          return false;
        }
      }
      conn.out.clear();
      conn.out_start = 0;
      if (conn.closing || conn.in_start == conn.in.size()) break;
      Handle(conn);
      if (conn.out.empty()) break;  // Only a partial request left.
    }
    return !conn.closing;
  }

  // Waits for writability while answers are pending, and reads only while
  // they fit; false when the connection is done.
  bool UpdateInterest(Connection& conn) {
    bool pending = conn.out_start < conn.out.size();
    if ((conn.closing || conn.peer_done) && !pending) return false;
    if (pending == conn.want_write) return true;
    conn.want_write = pending;
    epoll_event event{};
    event.events = pending ? EPOLLOUT : (EPOLLIN | EPOLLRDHUP);
    event.data.fd = conn.fd;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, conn.fd, &event);
    return true;
  }

  const int listen_fd_;
  const int stop_fd_;
  std::vector<std::unique_ptr<Counters>>* const all_counters_;
  Counters* const counters_;
  const std::string result_;
  const size_t max_body_;
  int epoll_ = -1;
  char scratch_[kReadChunk];
  std::unordered_map<int, std::unique_ptr<Connection>> connections_;
};

int Main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  int threads = std::max(1, absl::GetFlag(FLAGS_threads));
  int64_t max_body = absl::GetFlag(FLAGS_max_body_bytes);
  if (max_body < 0) max_body = 0;

  int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(absl::GetFlag(FLAGS_port)));
  if (bind(listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      listen(listen_fd, 4096) != 0) {
    std::fprintf(stderr, "jsonrpc_provider: cannot listen: %s\n", std::strerror(errno));
    return 1;
  }
  socklen_t length = sizeof(address);
  getsockname(listen_fd, reinterpret_cast<sockaddr*>(&address), &length);
  std::printf("%d\n", ntohs(address.sin_port));
  std::fflush(stdout);

  // Signals wait for sigwait here; the loops never see them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::vector<std::unique_ptr<Counters>> counters;
  for (int i = 0; i < threads; ++i) counters.push_back(std::make_unique<Counters>());
  std::vector<std::unique_ptr<Loop>> loops;
  std::vector<std::thread> workers;
  for (int i = 0; i < threads; ++i) {
    loops.push_back(std::make_unique<Loop>(listen_fd, stop_fd, &counters, counters[i].get(),
                                           absl::GetFlag(FLAGS_result), max_body));
    workers.emplace_back([loop = loops.back().get()] { loop->Run(); });
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  uint64_t value = 1;
  if (write(stop_fd, &value, sizeof(value)) < 0) std::perror("jsonrpc_provider: eventfd");
  for (auto& worker : workers) worker.join();
  uint64_t http_requests = 0, calls = 0, batches = 0;
  for (const auto& c : counters) {
    http_requests += c->http_requests.load();
    calls += c->calls.load();
    batches += c->batches.load();
  }
  std::fprintf(stderr, "{\"http_requests\":%llu,\"calls\":%llu,\"batches\":%llu}\n",
               static_cast<unsigned long long>(http_requests),
               static_cast<unsigned long long>(calls), static_cast<unsigned long long>(batches));
  close(stop_fd);
  close(listen_fd);
  return 0;
}

}  // namespace
}  // namespace switchboard::jsonrpc_provider

int main(int argc, char** argv) { return switchboard::jsonrpc_provider::Main(argc, argv); }
