#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"

namespace switchboard::http {
namespace {

constexpr absl::string_view kHeadEnd = "\r\n\r\n";

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

// A request head, parsed; or the status that refuses it.
struct Head {
  HttpRequest request;
  size_t head_bytes = 0;
  size_t body_bytes = 0;
  bool keep_alive = true;
  bool expects_continue = false;
};

struct Refusal {
  int status;
  std::string why;
};

std::variant<Head, Refusal> ParseHead(absl::string_view head, size_t max_body_bytes) {
  Head parsed;
  parsed.head_bytes = head.size() + kHeadEnd.size();
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::vector<absl::string_view> request_line = absl::StrSplit(lines[0], ' ');
  if (request_line.size() != 3 || request_line[0].empty() || request_line[1].empty() ||
      request_line[1][0] != '/') {
    return Refusal{400, "malformed request line"};
  }
  if (request_line[2] == "HTTP/1.0") {
    parsed.keep_alive = false;
  } else if (request_line[2] != "HTTP/1.1") {
    return Refusal{505, "only HTTP/1.1 and HTTP/1.0"};
  }
  parsed.request.method = std::string(request_line[0]);
  const absl::string_view target = request_line[1];
  const size_t question = target.find('?');
  parsed.request.path = std::string(target.substr(0, question));
  if (question != absl::string_view::npos) {
    parsed.request.query = std::string(target.substr(question + 1));
  }
  std::optional<uint64_t> content_length;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == 0 || colon == absl::string_view::npos ||
        absl::ascii_isspace(static_cast<unsigned char>(lines[i][colon - 1]))) {
      return Refusal{400, "malformed header line"};
    }
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    const absl::string_view value = absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (name == "content-length") {
      uint64_t length = 0;
      if (!absl::SimpleAtoi(value, &length) || (content_length && *content_length != length)) {
        return Refusal{400, "bad Content-Length"};
      }
      content_length = length;
    } else if (name == "transfer-encoding") {
      return Refusal{411, "send the body with a Content-Length, not a transfer coding"};
    } else if (name == "connection") {
      if (absl::EqualsIgnoreCase(value, "close")) parsed.keep_alive = false;
      if (absl::EqualsIgnoreCase(value, "keep-alive")) parsed.keep_alive = true;
    } else if (name == "expect") {
      if (!absl::EqualsIgnoreCase(value, "100-continue")) return Refusal{417, "unknown Expect"};
      parsed.expects_continue = true;
    }
    parsed.request.headers.emplace_back(std::move(name), std::string(value));
  }
  if (content_length.value_or(0) > max_body_bytes) {
    return Refusal{413, absl::StrCat("the body may have at most ", max_body_bytes, " bytes")};
  }
  parsed.body_bytes = content_length.value_or(0);
  return parsed;
}

}  // namespace

const std::string* HttpRequest::Header(absl::string_view lowercase_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lowercase_name) return &value;
  }
  return nullptr;
}

std::string StatusLine(int status) {
  static const std::map<int, absl::string_view> kReasons = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {204, "No Content"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {411, "Length Required"},
      {413, "Content Too Large"},
      {415, "Unsupported Media Type"},
      {417, "Expectation Failed"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
  };
  auto it = kReasons.find(status);
  return absl::StrCat(status, " ", it == kReasons.end() ? "Status" : it->second);
}

// The listener and the open connections, on the dispatcher thread.
class Responder::Connections {
 public:
  Connections(event::DispatcherImpl& dispatcher, HttpServer::Options options,
              HttpServer::Handler handler, HttpServerObserver& observer)
      : base_(dispatcher.base()),
        options_(std::move(options)),
        handler_(std::move(handler)),
        observer_(observer),
        self_(dispatcher, this) {}

  ~Connections() {
    self_.Clear();
    if (listener_ != nullptr) evconnlistener_free(listener_);
    for (auto& [id, connection] : connections_) {
      Free(*connection);
      observer_.OnClosed();
    }
  }

  // Binds; returns the port.
  absl::StatusOr<int> Listen(const std::string& host, uint16_t port) {
    absl::StatusOr<std::pair<sockaddr_storage, socklen_t>> address = Resolve(host, port);
    if (!address.ok()) return address.status();
    listener_ = evconnlistener_new_bind(
        base_, &Connections::OnAccept, this, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1,
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

  void StopAccepting() {
    draining_ = true;
    if (listener_ != nullptr) {
      evconnlistener_free(listener_);  // Closes the socket: connects are refused.
      listener_ = nullptr;
    }
    std::vector<uint64_t> idle;
    for (auto& [id, connection] : connections_) {
      connection->keep_alive = false;
      if (!connection->handling && !connection->closing) idle.push_back(id);
    }
    for (uint64_t id : idle) Close(id);
  }

  // Writes the answer to request of connection `id`, if it is still open.
  void Answer(uint64_t id, HttpResponse response) {
    auto it = connections_.find(id);
    if (it == connections_.end() || !it->second->handling) return;
    Connection& connection = *it->second;
    connection.handling = false;
    std::string out = absl::StrCat("HTTP/1.1 ", StatusLine(response.status),
                                   "\r\nContent-Type: ", response.content_type,
                                   "\r\nContent-Length: ", response.body.size(), "\r\n");
    for (const auto& [name, value] : response.headers)
      absl::StrAppend(&out, name, ": ", value, "\r\n");
    absl::StrAppend(&out, connection.keep_alive ? "Connection: keep-alive\r\n\r\n"
                                                : "Connection: close\r\n\r\n");
    out += response.body;
    bufferevent_write(connection.bev, out.data(), out.size());
    // Kept alive, the next request is due within the timeout; closing, the
    // client has that long to read the answer and close.
    ArmDeadline(connection);
    if (connection.keep_alive) {
      Parse(connection);
    } else {
      connection.closing = true;
    }
  }

  // Writes the upgrade answer of connection `id` and hands it to `take`.
  void Upgrade(uint64_t id, HttpResponse response, UpgradeHandler take) {
    auto it = connections_.find(id);
    if (it == connections_.end() || !it->second->handling) return;
    if (draining_) {
      response = HttpResponse();
      response.status = 503;
      response.body = "the server is draining\n";
      Answer(id, std::move(response));
      return;
    }
    std::unique_ptr<Connection> connection = std::move(it->second);
    connections_.erase(it);
    std::string out = absl::StrCat("HTTP/1.1 ", StatusLine(response.status), "\r\n");
    for (const auto& [name, value] : response.headers)
      absl::StrAppend(&out, name, ": ", value, "\r\n");
    out += "\r\n";
    bufferevent* bev = connection->bev;
    bufferevent_write(bev, out.data(), out.size());
    event_free(connection->deadline);
    bufferevent_setcb(bev, nullptr, nullptr, nullptr, nullptr);
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    observer_.OnClosed();
    take(bev);
  }

 private:
  struct Connection {
    Connections* owner = nullptr;
    uint64_t id = 0;
    bufferevent* bev = nullptr;
    ::event* deadline = nullptr;
    std::optional<Head> head;  // Of the request whose body is arriving.
    bool handling = false;     // The handler has the request; its answer is due.
    bool keep_alive = true;    // False: the connection closes after its next answer.
    bool closing = false;      // Its last answer is written.
    bool continued = false;    // 100 Continue sent for the current request.
    bool peer_closed = false;  // The client closed its side while we handled.
  };

  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
    static_cast<Connections*>(arg)->Accept(fd);
  }

  void Accept(evutil_socket_t fd) {
    if (draining_ || connections_.size() >= options_.max_connections) {
      observer_.OnRefused();
      evutil_closesocket(fd);
      return;
    }
    bufferevent* bev = bufferevent_socket_new(base_, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
      evutil_closesocket(fd);
      return;
    }
    const uint64_t id = next_id_++;
    auto connection = std::make_unique<Connection>();
    connection->owner = this;
    connection->id = id;
    connection->bev = bev;
    connection->keep_alive = options_.keep_alive;
    connection->deadline = evtimer_new(base_, &Connections::OnDeadline, connection.get());
    // A connection buffers one request at most: reading pauses beyond it.
    bufferevent_setwatermark(bev, EV_READ, 0, options_.max_head_bytes + options_.max_body_bytes);
    bufferevent_setcb(bev, &Connections::OnRead, &Connections::OnWritten, &Connections::OnEvent,
                      connection.get());
    bufferevent_enable(bev, EV_READ);
    ArmDeadline(*connection);
    connections_.emplace(id, std::move(connection));
    observer_.OnOpened();
  }

  void ArmDeadline(Connection& connection) {
    const timeval timeout = absl::ToTimeval(options_.request_timeout);
    evtimer_add(connection.deadline, &timeout);
  }

  static void OnRead(bufferevent*, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    connection.owner->Parse(connection);
  }

  // Takes the next whole request off the input, if any, and hands it over.
  void Parse(Connection& connection) {
    evbuffer* input = bufferevent_get_input(connection.bev);
    if (connection.closing) {
      // Whatever the client still sends after the last answer is dropped.
      evbuffer_drain(input, evbuffer_get_length(input));
      return;
    }
    if (connection.handling) return;  // The next request waits for this answer.
    const size_t length = evbuffer_get_length(input);
    if (!connection.head.has_value()) {
      const size_t scanned = std::min(length, options_.max_head_bytes);
      const absl::string_view bytes(
          reinterpret_cast<const char*>(evbuffer_pullup(input, static_cast<ev_ssize_t>(scanned))),
          scanned);
      const size_t end = bytes.find(kHeadEnd);
      if (end == absl::string_view::npos) {
        if (length >= options_.max_head_bytes) {
          Refuse(connection, Refusal{431, "request head too large"});
        }
        return;
      }
      std::variant<Head, Refusal> parsed = ParseHead(bytes.substr(0, end), options_.max_body_bytes);
      if (auto* refusal = std::get_if<Refusal>(&parsed)) {
        Refuse(connection, std::move(*refusal));
        return;
      }
      connection.head = std::get<Head>(std::move(parsed));
      connection.continued = false;
    }
    Head& head = *connection.head;
    if (length < head.head_bytes + head.body_bytes) {
      if (head.expects_continue && !connection.continued && length == head.head_bytes) {
        connection.continued = true;
        const std::string go_on = absl::StrCat("HTTP/1.1 ", StatusLine(100), "\r\n\r\n");
        bufferevent_write(connection.bev, go_on.data(), go_on.size());
      }
      return;
    }
    evbuffer_drain(input, head.head_bytes);
    head.request.body.resize(head.body_bytes);
    evbuffer_remove(input, head.request.body.data(), head.body_bytes);
    if (!head.keep_alive) connection.keep_alive = false;
    HttpRequest request = std::move(head.request);
    connection.head.reset();
    connection.handling = true;
    evtimer_del(connection.deadline);
    handler_(std::move(request), Responder(self_, connection.id));
  }

  // Answers a request the server itself refuses, then closes.
  void Refuse(Connection& connection, Refusal refusal) {
    connection.keep_alive = false;
    connection.handling = true;
    connection.head.reset();
    HttpResponse response;
    response.status = refusal.status;
    response.body = absl::StrCat(refusal.why, "\n");
    Answer(connection.id, std::move(response));
  }

  static void OnWritten(bufferevent* bev, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    // Once the last answer is out the server shuts its side down and closes
    // when the client does (or at the deadline): closing with request bytes
    // still unread would reset the connection before the client read it.
    if (connection.closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
      // A client that has closed its side already gets nothing more to wait for.
      if (connection.peer_closed) {
        connection.owner->Close(connection.id);
        return;
      }
      shutdown(bufferevent_getfd(bev), SHUT_WR);
    }
  }

  static void OnEvent(bufferevent*, short events, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    // A client may close its side once it has sent its request (HTTP/1.0
    // style): the request in progress is still answered, then it closes.
    if ((events & BEV_EVENT_EOF) && !(events & BEV_EVENT_ERROR) && connection.handling) {
      connection.peer_closed = true;
      connection.keep_alive = false;
      return;
    }
    if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) connection.owner->Close(connection.id);
  }

  static void OnDeadline(evutil_socket_t, short, void* arg) {
    auto& connection = *static_cast<Connection*>(arg);
    connection.owner->Close(connection.id);
  }

  void Close(uint64_t id) {
    auto it = connections_.find(id);
    if (it == connections_.end()) return;
    Free(*it->second);
    connections_.erase(it);
    observer_.OnClosed();
  }

  static void Free(Connection& connection) {
    event_free(connection.deadline);
    bufferevent_free(connection.bev);
  }

  event_base* const base_;
  const HttpServer::Options options_;
  HttpServer::Handler handler_;
  HttpServerObserver& observer_;
  evconnlistener* listener_ = nullptr;
  bool draining_ = false;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  event::Anchor<Connections> self_;
};

Responder::Responder(event::Anchor<Connections> connections, uint64_t connection)
    : connections_(std::move(connections)), connection_(connection) {}

Responder::Responder(Responder&& other) noexcept
    : connections_(other.connections_), connection_(other.connection_), answered_(other.answered_) {
  other.answered_ = true;
}

Responder::~Responder() {
  if (answered_) return;
  HttpResponse response;
  response.status = 500;
  response.body = "the request was dropped without an answer\n";
  Send(std::move(response));
}

void Responder::Send(HttpResponse response) {
  if (answered_) return;
  answered_ = true;
  // Always posted: an answer given inside the handler is written after it
  // returns, never re-entering the connection's read.
  connections_.Post(
      [id = connection_, response = std::move(response)](Connections* connections) mutable {
        if (connections != nullptr) connections->Answer(id, std::move(response));
      });
}

void Responder::Upgrade(HttpResponse response, UpgradeHandler take) {
  if (answered_) return;
  answered_ = true;
  connections_.Post([id = connection_, response = std::move(response),
                     take = std::move(take)](Connections* connections) mutable {
    if (connections != nullptr) connections->Upgrade(id, std::move(response), std::move(take));
  });
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(event::DispatcherImpl& dispatcher,
                                                              Options options, Handler handler,
                                                              HttpServerObserver& observer) {
  const std::string host = options.host;
  const uint16_t port = options.port;
  std::unique_ptr<Responder::Connections> connections;
  absl::StatusOr<int> bound = absl::UnknownError("not run");
  absl::Notification started;
  dispatcher.Post([&] {
    connections = std::make_unique<Responder::Connections>(dispatcher, std::move(options),
                                                           std::move(handler), observer);
    bound = connections->Listen(host, port);
    if (!bound.ok()) connections.reset();
    started.Notify();
  });
  started.WaitForNotification();
  if (!bound.ok()) return bound.status();
  return std::unique_ptr<HttpServer>(new HttpServer(dispatcher, std::move(connections), *bound));
}

HttpServer::HttpServer(event::DispatcherImpl& dispatcher,
                       std::unique_ptr<Responder::Connections> connections, int port)
    : dispatcher_(dispatcher), connections_(std::move(connections)), port_(port) {}

void HttpServer::StopAccepting() {
  dispatcher_.Post([connections = connections_.get()] { connections->StopAccepting(); });
}

HttpServer::~HttpServer() {
  absl::Notification stopped;
  dispatcher_.Post([this, &stopped] {
    connections_.reset();
    stopped.Notify();
  });
  stopped.WaitForNotification();
}

}  // namespace switchboard::http
