#include "server/http/http_pool_impl.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/http/retry_after.h"
#include "server/http/url_mask.h"

namespace switchboard::http {
namespace {

// Idle easy handles a pool keeps: the requests in flight of a busy upstream.
constexpr size_t kMaxIdleEasyHandles = 64;

void InitializeCurlOnce() {
  // curl_global_init is not thread-safe in every libcurl build; a
  // function-local static is.
  static const CURLcode initialized = curl_global_init(CURL_GLOBAL_DEFAULT);
  (void)initialized;
}

std::string Describe(const Request& request) { return absl::StrCat("POST ", MaskUrl(request.url)); }

}  // namespace

bool CleartextHttp2Supported() {
  return curl_version_info(CURLVERSION_NOW)->version_num >= 0x080000;
}

struct HttpPoolImpl::Transfer {
  Transfer(RequestId id, Request request, ResponseCallback done, absl::Time start,
           HttpPoolImpl& pool)
      : id(id), request(std::move(request)), done(std::move(done)), start(start), pool(pool) {}
  // Marks the response complete once the final response's body has arrived
  // in full, by its Content-Length, and tells the pool.
  void NoteIfComplete() {
    if (complete) return;
    long status = 0;
    curl_off_t length = -1;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    if (status < 200 || length < 0 || response.body.size() != static_cast<size_t>(length)) return;
    complete = true;
    pool.completed_.push_back(id);
  }

  // The result once curl is done with the transfer, or holds a complete
  // response (CURLE_OK then).
  absl::StatusOr<Response> Result(CURLcode code) {
    if (too_large) {
      return absl::ResourceExhaustedError(
          absl::StrCat(Describe(request), ": the response exceeds the ",
                       pool.options_.max_response_bytes, "-byte limit"));
    }
    if (code == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      response.status = static_cast<int>(status);
      long version = 0;
      curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
      response.http_version = version == CURL_HTTP_VERSION_2_0 ? 2 : 1;
      return std::move(response);
    }
    // curl's detail names at most the host and port, never the path.
    const std::string message =
        absl::StrCat(Describe(request), ": ", error[0] != '\0' ? error : curl_easy_strerror(code));
    switch (code) {
      case CURLE_OPERATION_TIMEDOUT:
        return absl::DeadlineExceededError(message);
      case CURLE_URL_MALFORMAT:
      case CURLE_UNSUPPORTED_PROTOCOL:
        return absl::InvalidArgumentError(message);
      case CURLE_OUT_OF_MEMORY:
        return absl::ResourceExhaustedError(message);
      case CURLE_COULDNT_RESOLVE_PROXY:
      case CURLE_COULDNT_RESOLVE_HOST:
      case CURLE_COULDNT_CONNECT:
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_PEER_FAILED_VERIFICATION: {
        // No connection, so no byte of the request left.
        absl::Status never_sent = absl::UnavailableError(message);
        never_sent.SetPayload(kRequestNeverSentPayload, absl::Cord());
        return never_sent;
      }
      default:  // Refused, reset, DNS, TLS, HTTP/2 stream errors, empty reply.
        return absl::UnavailableError(message);
    }
  }

  const RequestId id;
  const Request request;  // curl reads the URL and the body from here.
  ResponseCallback done;
  const absl::Time start;
  HttpPoolImpl& pool;
  absl::Time deadline = absl::InfiniteFuture();
  // While the request is the pool's; null for a request that failed before
  // reaching curl.
  CURL* easy = nullptr;
  bool in_multi = false;
  // Bytes of request.body handed to curl so far.
  size_t body_sent = 0;
  Response response;
  bool complete = false;
  bool too_large = false;
  char error[CURL_ERROR_SIZE] = {};
};

// Static trampolines with the exact signatures curl and libevent call.
struct CurlCallbacks {
  static int OnSocketChange(CURL*, curl_socket_t socket, int what, void* pool, void*) noexcept {
    static_cast<HttpPoolImpl*>(pool)->WatchSocket(socket, what);
    return 0;
  }

  static int OnTimerChange(CURLM*, long timeout_ms, void* pool) noexcept {
    event::Timer& timer = *static_cast<HttpPoolImpl*>(pool)->curl_timer_;
    // Never calls curl back inline: a zero delay fires on the next loop
    // iteration.
    if (timeout_ms < 0) {
      timer.Disable();
    } else {
      timer.Enable(absl::Milliseconds(timeout_ms));
    }
    return 0;
  }

  static void OnSocketReady(evutil_socket_t socket, short events, void* pool) noexcept {
    const int curl_events = ((events & EV_READ) != 0 ? CURL_CSELECT_IN : 0) |
                            ((events & EV_WRITE) != 0 ? CURL_CSELECT_OUT : 0);
    static_cast<HttpPoolImpl*>(pool)->Drive(socket, curl_events);
  }

  static curl_socket_t OpenSocket(void* pool, curlsocktype, curl_sockaddr* address) noexcept {
    // Close-on-exec, so processes the server starts never hold a connection.
    const int socket_fd =
        socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (socket_fd < 0) return CURL_SOCKET_BAD;
    static_cast<HttpPoolImpl*>(pool)->NoteOpened(socket_fd);
    return socket_fd;
  }

  static int CloseSocket(void* pool, curl_socket_t socket) noexcept {
    static_cast<HttpPoolImpl*>(pool)->NoteClosed(socket);
    return close(socket);
  }

  static size_t ReadRequestBody(char* buffer, size_t size, size_t count, void* data) noexcept {
    auto& transfer = *static_cast<HttpPoolImpl::Transfer*>(data);
    const std::string& body = transfer.request.body;
    const size_t length = std::min(size * count, body.size() - transfer.body_sent);
    std::memcpy(buffer, body.data() + transfer.body_sent, length);
    transfer.body_sent += length;
    return length;
  }

  // Only to where the body starts, and only before any of it was sent: no
  // byte of the request's body leaves twice.
  static int SeekRequestBody(void* data, curl_off_t offset, int origin) noexcept {
    auto& transfer = *static_cast<HttpPoolImpl::Transfer*>(data);
    if (origin != SEEK_SET || offset != 0 || transfer.body_sent != 0) {
      return CURL_SEEKFUNC_CANTSEEK;
    }
    return CURL_SEEKFUNC_OK;
  }

  static size_t OnBodyData(char* data, size_t size, size_t count, void* transfer) noexcept {
    auto& self = *static_cast<HttpPoolImpl::Transfer*>(transfer);
    const size_t bytes = size * count;
    if (bytes > self.pool.options_.max_response_bytes - self.response.body.size()) {
      self.too_large = true;
      return 0;  // Anything but `bytes` aborts the transfer.
    }
    self.response.body.append(data, bytes);
    self.NoteIfComplete();
    return bytes;
  }

  static size_t OnHeaderLine(char* data, size_t size, size_t count, void* transfer) noexcept {
    auto& self = *static_cast<HttpPoolImpl::Transfer*>(transfer);
    absl::string_view line(data, size * count);
    if (absl::StartsWith(line, "HTTP/")) {
      // A status line: a new response (the final one follows any 1xx).
      self.response.retry_after.reset();
    } else if (absl::StartsWithIgnoreCase(line, "retry-after:")) {
      line.remove_prefix(sizeof("retry-after:") - 1);
      self.response.retry_after = ParseRetryAfter(line, self.pool.io_.clock().Now());
    } else if (line == "\r\n" || line == "\n") {
      self.NoteIfComplete();  // The end of the headers: complete when empty.
    }
    return size * count;
  }
};

void HttpPoolImpl::EventDeleter::operator()(::event* socket_event) const {
  event_free(socket_event);
}

HttpPoolImpl::HttpPoolImpl(event::DispatcherImpl& io, HttpPoolOptions options,
                           HttpPoolObserver& observer)
    : io_(io), options_(std::move(options)), observer_(observer) {
  InitializeCurlOnce();
  // Large bodies go at once, without waiting for a 100 Continue.
  headers_ =
      curl_slist_append(curl_slist_append(nullptr, "Content-Type: application/json"), "Expect:");
  curl_timer_ = io_.CreateTimer([this] { Drive(CURL_SOCKET_TIMEOUT, 0); });
  deadline_timer_ = io_.CreateTimer([this] { ExpireDue(); });
  failure_timer_ = io_.CreateTimer([this] { RunDueFailures(); });
  multi_ = curl_multi_init();
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlCallbacks::OnSocketChange);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlCallbacks::OnTimerChange);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_MAX_HOST_CONNECTIONS,
                    static_cast<long>(options_.max_connections_per_host));
  curl_multi_setopt(multi_, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                    static_cast<long>(options_.max_total_connections));
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING,
                    options_.http2 ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
}

HttpPoolImpl::~HttpPoolImpl() {
  std::vector<std::unique_ptr<Transfer>> cut_short;
  while (!transfers_.empty()) cut_short.push_back(Release(transfers_.begin()->first));
  curl_multi_cleanup(multi_);  // Closes the connections.
  NoteConnectingSocketsClosedUnseen();
  socket_events_.clear();
  for (CURL* easy : idle_easy_handles_) curl_easy_cleanup(easy);
  curl_slist_free_all(headers_);
  for (std::unique_ptr<Transfer>& transfer : cut_short) {
    absl::Status destroyed =
        absl::UnavailableError(absl::StrCat(Describe(transfer->request), ": the pool was closed"));
    Report(std::move(transfer), std::move(destroyed));
  }
}

RequestId HttpPoolImpl::Send(Request request, ResponseCallback done) {
  const RequestId id = next_id_++;
  auto owned =
      std::make_unique<Transfer>(id, std::move(request), std::move(done), io_.clock().Now(), *this);
  Transfer& transfer = *owned;
  transfers_.emplace_hint(transfers_.end(), id, std::move(owned));
  if (transfers_.size() > options_.max_requests_in_flight) {
    FailSoon(id, absl::ResourceExhaustedError(absl::StrCat(Describe(transfer.request), ": ",
                                                           options_.max_requests_in_flight,
                                                           " requests in flight already")));
    return id;
  }
  absl::Status started = Start(transfer);
  if (!started.ok()) {
    FailSoon(id, std::move(started));
    return id;
  }
  transfer.deadline = transfer.start + transfer.request.timeout;
  deadlines_.emplace(transfer.deadline, id);
  ArmDeadlineTimer();
  return id;
}

absl::Status HttpPoolImpl::Start(Transfer& transfer) {
  transfer.easy = TakeEasyHandle();
  if (transfer.easy == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat(Describe(transfer.request), ": out of memory for a curl transfer"));
  }
  // Every option that differs between requests is set here, each time.
  CURL* easy = transfer.easy;
  const Request& request = transfer.request;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, &transfer);
  curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
  // Unless the request may repeat, the body goes through a read callback
  // that cannot rewind, not as CURLOPT_POSTFIELDS: libcurl silently sends a
  // request again on a new connection when a reused one dies before any byte
  // of the answer, which only rewinding the body allows. Such a request
  // reaches the provider at most once: retries belong to the layer above,
  // which knows which methods are safe to repeat. Without the rewind the
  // transfer fails (CURLE_SEND_FAIL_REWIND) instead. CURLOPT_POSTFIELDS
  // (null: the read callback) sends the body with the headers, in one write.
  curl_easy_setopt(easy, CURLOPT_POST, 1L);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.may_repeat ? request.body.data() : nullptr);
  curl_easy_setopt(easy, CURLOPT_READDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_SEEKDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error);
  long http_version = CURL_HTTP_VERSION_1_1;
  if (options_.http2 && absl::StartsWithIgnoreCase(request.url, "https://")) {
    http_version = CURL_HTTP_VERSION_2TLS;
  } else if (options_.http2 && CleartextHttp2Supported()) {
    http_version = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
  }
  curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, http_version);
  // Wait for a connection that can multiplex rather than open another.
  curl_easy_setopt(easy, CURLOPT_PIPEWAIT, http_version != CURL_HTTP_VERSION_1_1 ? 1L : 0L);
  const CURLMcode added = curl_multi_add_handle(multi_, easy);
  if (added != CURLM_OK) {
    return absl::InternalError(
        absl::StrCat(Describe(request), ": curl_multi_add_handle: ", curl_multi_strerror(added)));
  }
  transfer.in_multi = true;
  return absl::OkStatus();
}

CURL* HttpPoolImpl::TakeEasyHandle() {
  if (!idle_easy_handles_.empty()) {
    CURL* easy = idle_easy_handles_.back();
    idle_easy_handles_.pop_back();
    return easy;
  }
  if (headers_ == nullptr) return nullptr;
  CURL* easy = curl_easy_init();
  if (easy == nullptr) return nullptr;
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
  curl_easy_setopt(easy, CURLOPT_READFUNCTION, &CurlCallbacks::ReadRequestBody);
  curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, &CurlCallbacks::SeekRequestBody);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &CurlCallbacks::OnBodyData);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &CurlCallbacks::OnHeaderLine);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, &CurlCallbacks::OpenSocket);
  curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, this);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, &CurlCallbacks::CloseSocket);
  curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, this);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, options_.verify_tls ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, options_.verify_tls ? 2L : 0L);
  if (!options_.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, options_.ca_file.c_str());
  return easy;
}

void HttpPoolImpl::RecycleEasyHandle(CURL* easy) {
  if (idle_easy_handles_.size() < kMaxIdleEasyHandles) {
    idle_easy_handles_.push_back(easy);
  } else {
    curl_easy_cleanup(easy);
  }
}

bool HttpPoolImpl::Cancel(RequestId id) {
  std::unique_ptr<Transfer> transfer = Release(id);
  if (transfer == nullptr) return false;
  observer_.OnRequestDone({absl::StatusCode::kCancelled, 0, io_.clock().Now() - transfer->start});
  return true;
}

void HttpPoolImpl::WatchSocket(int socket, int what) {
  if (what == CURL_POLL_REMOVE) {
    socket_events_.erase(socket);
    return;
  }
  const short events = EV_PERSIST | ((what & CURL_POLL_IN) != 0 ? EV_READ : 0) |
                       ((what & CURL_POLL_OUT) != 0 ? EV_WRITE : 0);
  auto& watch = socket_events_[socket];
  if (watch == nullptr) {
    watch.reset(event_new(io_.base(), socket, events, &CurlCallbacks::OnSocketReady, this));
    // Out of memory: the transfers on this socket end at their deadline.
    if (watch == nullptr) {
      socket_events_.erase(socket);
      return;
    }
  } else {
    event_del(watch.get());
    event_assign(watch.get(), io_.base(), socket, events, &CurlCallbacks::OnSocketReady, this);
  }
  event_add(watch.get(), nullptr);
}

void HttpPoolImpl::Drive(int socket, int curl_events) {
  int running = 0;
  curl_multi_socket_action(multi_, socket, curl_events, &running);
  int queued = 0;
  while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
    if (message->msg != CURLMSG_DONE) continue;
    Transfer* transfer = nullptr;
    curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &transfer);
    // `message` dies with the handle's removal: read it first. A complete
    // HTTP/2 response is the answer whatever curl says of the stream after
    // it: a server that answers before reading the request body may close
    // the stream before the body is sent, and libcurl 7.88 then fails the
    // transfer with CURLE_HTTP2_STREAM.
    long http_version = 0;
    curl_easy_getinfo(message->easy_handle, CURLINFO_HTTP_VERSION, &http_version);
    const bool answered = transfer->complete && http_version == CURL_HTTP_VERSION_2_0;
    absl::StatusOr<Response> result = transfer->Result(answered ? CURLE_OK : message->data.result);
    NoteEstablished(message->easy_handle);
    Finish(transfer->id, std::move(result));
  }
  // libcurl 7.88 holds an HTTP/2 transfer whose server answered before
  // reading a request body larger than the stream window (RFC 9113 §8.1
  // allows it) until it times out; a complete response is the answer now.
  // (HTTP/1.1 transfers finish by themselves, and cutting one short would
  // close its connection.)
  std::vector<RequestId> completed;
  completed.swap(completed_);
  for (RequestId id : completed) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) continue;  // Finished or cancelled already.
    long http_version = 0;
    curl_easy_getinfo(it->second->easy, CURLINFO_HTTP_VERSION, &http_version);
    if (http_version == CURL_HTTP_VERSION_2_0) Finish(id, it->second->Result(CURLE_OK));
  }
  NoteConnectingSocketsClosedUnseen();
}

void HttpPoolImpl::NoteOpened(int socket) {
  struct stat status;
  if (fstat(socket, &status) != 0) return;
  // A descriptor still on the books was closed unseen and is reused now.
  NoteClosed(socket);
  connecting_sockets_.emplace(socket, status.st_ino);
  observer_.OnConnectionOpened();
}

void HttpPoolImpl::NoteEstablished(CURL* easy) {
  // The socket of the connection the transfer leaves in curl's cache; none
  // when curl closed it.
  curl_socket_t socket = CURL_SOCKET_BAD;
  if (curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &socket) != CURLE_OK ||
      socket == CURL_SOCKET_BAD) {
    return;
  }
  if (connecting_sockets_.erase(socket) > 0) established_sockets_.insert(socket);
}

void HttpPoolImpl::NoteClosed(int socket) {
  if (connecting_sockets_.erase(socket) > 0 || established_sockets_.erase(socket) > 0) {
    observer_.OnConnectionClosed();
  }
}

void HttpPoolImpl::NoteConnectingSocketsClosedUnseen() {
  std::vector<int> closed;
  for (const auto& [socket, inode] : connecting_sockets_) {
    struct stat status;
    if (fstat(socket, &status) != 0 || status.st_ino != inode) closed.push_back(socket);
  }
  for (int socket : closed) NoteClosed(socket);
}

void HttpPoolImpl::Finish(RequestId id, absl::StatusOr<Response> result) {
  std::unique_ptr<Transfer> transfer = Release(id);
  if (transfer != nullptr) Report(std::move(transfer), std::move(result));
}

void HttpPoolImpl::Report(std::unique_ptr<Transfer> transfer, absl::StatusOr<Response> result) {
  observer_.OnRequestDone({result.ok() ? absl::StatusCode::kOk : result.status().code(),
                           result.ok() ? result->status : 0, io_.clock().Now() - transfer->start});
  ResponseCallback done = std::move(transfer->done);
  transfer.reset();  // Frees the request before the callback sends more.
  done(std::move(result));
}

void HttpPoolImpl::FailSoon(RequestId id, absl::Status status) {
  due_failures_.emplace_back(id, std::move(status));
  failure_timer_->Enable(absl::ZeroDuration());
}

void HttpPoolImpl::RunDueFailures() {
  std::vector<std::pair<RequestId, absl::Status>> due;
  due.swap(due_failures_);
  for (auto& [id, status] : due) Finish(id, std::move(status));  // Unless cancelled.
}

std::unique_ptr<HttpPoolImpl::Transfer> HttpPoolImpl::Release(RequestId id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return nullptr;
  std::unique_ptr<Transfer> transfer = std::move(it->second);
  transfers_.erase(it);
  if (deadlines_.erase({transfer->deadline, id}) > 0) ArmDeadlineTimer();
  if (transfer->in_multi) {
    curl_multi_remove_handle(multi_, transfer->easy);
    transfer->in_multi = false;
    NoteConnectingSocketsClosedUnseen();
  }
  if (transfer->easy != nullptr) {
    RecycleEasyHandle(transfer->easy);
    transfer->easy = nullptr;
  }
  return transfer;
}

void HttpPoolImpl::ExpireDue() {
  const absl::Time now = io_.clock().Now();
  // One at a time: a callback may cancel or add requests.
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    const RequestId id = deadlines_.begin()->second;
    const Request& request = transfers_.at(id)->request;
    Finish(id, absl::DeadlineExceededError(absl::StrCat(Describe(request), ": no response within ",
                                                        absl::FormatDuration(request.timeout))));
  }
  ArmDeadlineTimer();
}

void HttpPoolImpl::ArmDeadlineTimer() {
  if (deadlines_.empty()) {
    deadline_timer_->Disable();
  } else {
    deadline_timer_->EnableAt(deadlines_.begin()->first);
  }
}

}  // namespace switchboard::http
