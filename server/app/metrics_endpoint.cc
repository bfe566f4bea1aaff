#include "server/app/metrics_endpoint.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"
#include "server/config/listen_address.h"

namespace switchboard::app {
namespace {

constexpr absl::string_view kHeadEnd = "\r\n\r\n";

std::string Response(absl::string_view status, absl::string_view content_type,
                     absl::string_view body) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
}

// The numeric address of `host` (a name, IPv4, or IPv6 without brackets)
// and `port`.
absl::StatusOr<std::pair<sockaddr_storage, socklen_t>> Resolve(const std::string& host,
                                                               uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = absl::StrCat(port);
  if (int error = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); error != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host, ": ", gai_strerror(error)));
  }
  std::pair<sockaddr_storage, socklen_t> address{};
  std::memcpy(&address.first, found->ai_addr, found->ai_addrlen);
  address.second = found->ai_addrlen;
  freeaddrinfo(found);
  return address;
}

}  // namespace

// The listener and the open connections, on the dispatcher thread.
class MetricsEndpoint::Server {
 public:
  Server(event::DispatcherImpl& dispatcher, Options options,
         std::shared_ptr<prometheus::Registry> registry)
      : base_(dispatcher.base()),
        options_(std::move(options)),
        registry_(std::move(registry)),
        open_(prometheus::BuildGauge()
                  .Name("switchboard_metrics_connections")
                  .Help("Open connections to the metrics endpoint.")
                  .Register(*registry_)
                  .Add({})),
        refused_(prometheus::BuildCounter()
                     .Name("switchboard_metrics_connections_refused_total")
                     .Help("Connections to the metrics endpoint closed at once because "
                           "max_connections were open.")
                     .Register(*registry_)
                     .Add({})) {}

  ~Server() {
    if (listener_ != nullptr) evconnlistener_free(listener_);
    for (auto& [bev, connection] : connections_) Free(connection);
  }

  // Binds; returns the port.
  absl::StatusOr<int> Listen(const std::string& host, uint16_t port) {
    absl::StatusOr<std::pair<sockaddr_storage, socklen_t>> address = Resolve(host, port);
    if (!address.ok()) return address.status();
    listener_ = evconnlistener_new_bind(
        base_, &Server::OnAccept, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
        reinterpret_cast<const sockaddr*>(&address->first), static_cast<int>(address->second));
    if (listener_ == nullptr) {
      return absl::UnavailableError(absl::StrCat("cannot listen: ", std::strerror(errno)));
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(evconnlistener_get_fd(listener_), reinterpret_cast<sockaddr*>(&bound), &length);
    return ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(bound).sin6_port
                                             : reinterpret_cast<sockaddr_in&>(bound).sin_port);
  }

 private:
  struct Connection {
    Server* server;
    bufferevent* bev;
    ::event* deadline;
    bool answered = false;
  };

  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
    static_cast<Server*>(arg)->Accept(fd);
  }

  void Accept(evutil_socket_t fd) {
    if (connections_.size() >= options_.max_connections) {
      refused_.Increment();
      evutil_closesocket(fd);
      return;
    }
    bufferevent* bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
      evutil_closesocket(fd);
      return;
    }
    Connection& connection = connections_[bev];
    connection = Connection{this, bev, nullptr};
    connection.deadline = evtimer_new(base_, &Server::OnDeadline, &connection);
    const timeval timeout{
        static_cast<time_t>(absl::ToInt64Seconds(options_.request_timeout)),
        static_cast<suseconds_t>(absl::ToInt64Microseconds(options_.request_timeout) % 1000000)};
    evtimer_add(connection.deadline, &timeout);
    bufferevent_setcb(bev, &Server::OnRead, &Server::OnWritten, &Server::OnEvent, &connection);
    bufferevent_enable(bev, EV_READ);
    open_.Increment();
  }

  static void OnRead(bufferevent* bev, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    connection.server->Read(connection, bev);
  }

  void Read(Connection& connection, bufferevent* bev) {
    evbuffer* input = bufferevent_get_input(bev);
    if (connection.answered) {
      // Whatever the client still sends after the answer is dropped.
      evbuffer_drain(input, evbuffer_get_length(input));
      return;
    }
    const size_t length = evbuffer_get_length(input);
    const size_t scanned = std::min(length, options_.max_request_bytes);
    const absl::string_view head(
        reinterpret_cast<const char*>(evbuffer_pullup(input, static_cast<ev_ssize_t>(scanned))),
        scanned);
    const size_t end = head.find(kHeadEnd);
    if (end == absl::string_view::npos) {
      if (length >= options_.max_request_bytes) {
        Answer(connection, Response("431 Request Header Fields Too Large", "text/plain",
                                    "request head too large\n"));
      }
      return;
    }
    const absl::string_view request_line = head.substr(0, head.find("\r\n"));
    if (absl::StartsWith(request_line, "GET /metrics ") ||
        absl::StartsWith(request_line, "GET /metrics?")) {
      Answer(connection, Response("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                                  prometheus::TextSerializer().Serialize(Collect())));
    } else if (absl::StartsWith(request_line, "GET ")) {
      Answer(connection, Response("404 Not Found", "text/plain", "only /metrics is served\n"));
    } else {
      Answer(connection, Response("405 Method Not Allowed", "text/plain", "only GET\n"));
    }
  }

  // The registry's families, then the collectables'.
  std::vector<prometheus::MetricFamily> Collect() const {
    std::vector<prometheus::MetricFamily> families = registry_->Collect();
    for (const std::shared_ptr<prometheus::Collectable>& collectable : options_.collectables) {
      std::vector<prometheus::MetricFamily> more = collectable->Collect();
      families.insert(families.end(), std::make_move_iterator(more.begin()),
                      std::make_move_iterator(more.end()));
    }
    return families;
  }

  // Writes `response`. Once it is sent the server shuts its side down and
  // closes when the client does (or at the deadline): closing with request
  // bytes still unread would reset the connection before the client read the
  // answer.
  void Answer(Connection& connection, const std::string& response) {
    connection.answered = true;
    bufferevent_write(connection.bev, response.data(), response.size());
  }

  static void OnWritten(bufferevent* bev, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    if (connection.answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
      shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
  }

  static void OnEvent(bufferevent*, short events, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) connection.server->Close(connection);
  }

  static void OnDeadline(evutil_socket_t, short, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    connection.server->Close(connection);
  }

  void Close(Connection& connection) {
    bufferevent* bev = connection.bev;
    Free(connection);
    connections_.erase(bev);
    open_.Decrement();
  }

  static void Free(Connection& connection) {
    event_free(connection.deadline);
    bufferevent_free(connection.bev);
  }

  event_base* const base_;
  const Options options_;
  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& open_;
  prometheus::Counter& refused_;
  evconnlistener* listener_ = nullptr;
  // By bufferevent; std::map keeps the Connection the callbacks point at
  // in place.
  std::map<bufferevent*, Connection> connections_;
};

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    event::DispatcherImpl& dispatcher, Options options,
    std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<config::HostPort> address = config::ParseHostPort(options.listen);
  if (!address.ok()) return address.status();
  const std::string host = address->host;
  const uint16_t port = address->port;
  std::unique_ptr<Server> server;
  absl::StatusOr<int> bound = absl::UnknownError("not run");
  absl::Notification started;
  dispatcher.Post([&] {
    server = std::make_unique<Server>(dispatcher, std::move(options), std::move(registry));
    bound = server->Listen(host, port);
    if (!bound.ok()) server.reset();
    started.Notify();
  });
  started.WaitForNotification();
  if (!bound.ok()) return bound.status();
  return std::unique_ptr<MetricsEndpoint>(
      new MetricsEndpoint(dispatcher, std::move(server), *bound));
}

MetricsEndpoint::MetricsEndpoint(event::DispatcherImpl& dispatcher, std::unique_ptr<Server> server,
                                 int port)
    : dispatcher_(dispatcher), server_(std::move(server)), port_(port) {}

MetricsEndpoint::~MetricsEndpoint() {
  absl::Notification stopped;
  dispatcher_.Post([this, &stopped] {
    server_.reset();
    stopped.Notify();
  });
  stopped.WaitForNotification();
}

}  // namespace switchboard::app
