#include "server/service/json_rpc_ws_session.h"

#include <event2/bufferevent.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/common/log.h"
#include "server/event/anchor.h"
#include "server/service/call_validation.h"
#include "server/service/json_rpc_calls.h"
#include "server/subscriptions/subscriptions.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::service {
namespace {

// The `method` label of the WebSocket side's refusals in
// switchboard_requests_rejected_total.
constexpr absl::string_view kMetricMethod = "JsonRpcWebSocket";

// RFC 6455 §7.4.1: the server met a condition that kept it from going on.
constexpr uint16_t kCloseInternalError = 1011;

// Past this many bytes waiting to be written, a subscription's next
// notification waits in the hub's buffer for the socket to drain (where the
// subscription's overflow policy applies), not in the connection's.
constexpr size_t kHoldNotificationsBytes = 64 * 1024;

bool IsUnsubscribeMethod(absl::string_view method) {
  return absl::EndsWith(method, "Unsubscribe") || absl::EndsWith(method, "_unsubscribe");
}

// The one param of an unsubscribe ("[7]", "[\"0x7\"]"), as raw text.
absl::string_view OnlyParam(absl::string_view params) {
  params = absl::StripAsciiWhitespace(params);
  if (params.size() < 2 || params.front() != '[' || params.back() != ']') return params;
  return absl::StripAsciiWhitespace(params.substr(1, params.size() - 2));
}

}  // namespace

// One WebSocket connection and the subscriptions it holds.
class JsonRpcWebSockets::Session final : public ws::WebSocketHandler {
 public:
  Session(JsonRpcWebSockets& owner, uint64_t id, std::string upstream, auth::ClientIdentity client)
      : owner_(owner),
        id_(id),
        upstream_(std::move(upstream)),
        client_(std::move(client)),
        anchor_(owner.dispatcher_, this) {}

  ~Session() override {
    anchor_.Clear();
    // Each handle leaves its subscription; no sink callback runs after.
    subscriptions_.clear();
  }

  absl::Status Open(bufferevent* bev) {
    absl::StatusOr<std::unique_ptr<ws::WebSocketConnection>> connection =
        ws::WebSocketConnection::Open(
            owner_.dispatcher_, bev, ws::WebSocketConnection::Role::kServer,
            absl::StrCat("front door WebSocket ", id_, " (", client_.id, ", ", upstream_, ")"),
            owner_.options_.connection, *this);
    if (!connection.ok()) return connection.status();
    connection_ = *std::move(connection);
    return absl::OkStatus();
  }

  void OnText(absl::string_view message) override {
    message = absl::StripAsciiWhitespace(message);
    if (!message.empty() && message.front() == '[') {
      Refuse("null", kInvalidRequest,
             "batches are not served over WebSocket: send one request per message");
      return;
    }
    absl::StatusOr<upstream::RequestParts> parts = upstream::SplitRequest(message);
    if (!parts.ok()) {
      const bool json = upstream::ValidateJson(message).ok();
      Refuse("null", json ? kInvalidRequest : kParseError, parts.status().message());
      return;
    }
    const std::string id = parts->id.has_value() ? std::string(*parts->id) : "null";
    const absl::string_view params = parts->params.value_or("");
    if (subscriptions::UnsubscribeMethodFor(parts->method).has_value()) {
      Subscribe(id, parts->method, params);
    } else if (IsUnsubscribeMethod(parts->method)) {
      Unsubscribe(id, parts->method, params);
    } else {
      Call(message);
    }
  }

  void OnClosed(absl::Status why) override {
    SB_LOG(kDebug, why.message());
    owner_.Release(id_);
  }

  // Closes with `code` and lets the owner free this session.
  void Close(uint16_t code) {
    connection_->Close(code);
    owner_.Release(id_);
  }

 private:
  // One subscription of this connection. Its sink callbacks come on the
  // upstream dispatcher and hop to the session's.
  struct Subscription final : subscriptions::NotificationSink {
    Subscription(event::Anchor<Session> session, uint64_t id)
        : session(std::move(session)), id(id) {}

    void OnSubscribed() override {
      session.Post([id = id](Session* s) {
        if (s != nullptr) s->OnSubscribed(id);
      });
    }
    void OnNotification(std::shared_ptr<const subscriptions::Notification> notification,
                        uint64_t /*dropped_since_last*/) override {
      session.Post([id = id, notification = std::move(notification)](Session* s) {
        if (s != nullptr) s->OnNotification(id, *notification);
      });
    }
    void OnEnded(absl::Status status) override {
      session.Post([id = id, status = std::move(status)](Session* s) {
        if (s != nullptr) s->OnSubscriptionEnded(id, status);
      });
    }

    const event::Anchor<Session> session;
    const uint64_t id;
    std::string request_id;  // Of the subscribe, answered once live.
    std::string id_json;     // The id as the client sees it: 7, or "0x7".
    std::string unsubscribe_method;
    bool answered = false;
    // Declared last: destroyed first, so no callback outlives the rest.
    std::unique_ptr<subscriptions::SubscriptionHandle> handle;
  };

  void Subscribe(const std::string& request_id, const std::string& method,
                 absl::string_view params) {
    if (subscriptions_.size() >= owner_.options_.max_subscriptions_per_websocket) {
      owner_.context_.metrics.CountRejected(kMetricMethod, "RESOURCE_EXHAUSTED");
      Refuse(request_id, kLimited,
             absl::StrCat("a WebSocket connection holds at most ",
                          owner_.options_.max_subscriptions_per_websocket,
                          " subscriptions (server.json_rpc_http.max_subscriptions_per_websocket)"));
      return;
    }
    v1::RpcSubscribeRequest request;
    request.set_upstream(upstream_);
    request.set_method(method);
    request.set_params_json(std::string(params));
    absl::StatusOr<subscriptions::SubscribeSpec> spec = ValidateSubscribeRequest(
        request, owner_.context_.upstreams, owner_.context_.subscriptions, owner_.context_.limits);
    if (!spec.ok()) {
      owner_.context_.metrics.CountRejected(kMetricMethod, "INVALID_ARGUMENT");
      // No ws_urls: the upstream serves no subscription method.
      Refuse(request_id,
             spec.status().code() == absl::StatusCode::kFailedPrecondition ? kMethodNotFound
                                                                           : kInvalidParams,
             JsonRpcMessage(spec.status()));
      return;
    }
    spec->client_id = client_.id;
    const uint64_t id = next_subscription_id_++;
    auto subscription = std::make_unique<Subscription>(anchor_, id);
    subscription->request_id = request_id;
    subscription->id_json = absl::EndsWith(method, "_subscribe")
                                ? absl::StrCat("\"0x", absl::Hex(id), "\"")
                                : absl::StrCat(id);
    subscription->unsubscribe_method = spec->unsubscribe_method;
    Subscription& added = *subscriptions_.emplace(id, std::move(subscription)).first->second;
    // Its callbacks are posted here: they run after this returns.
    added.handle = owner_.context_.subscriptions.Subscribe(upstream_, *std::move(spec), added);
  }

  void Unsubscribe(const std::string& request_id, const std::string& method,
                   absl::string_view params) {
    const absl::string_view wanted = OnlyParam(params);
    for (auto it = subscriptions_.begin(); it != subscriptions_.end(); ++it) {
      if (it->second->id_json == wanted && it->second->unsubscribe_method == method) {
        subscriptions_.erase(it);  // Its handle leaves the upstream subscription.
        Send(ResponseObject(request_id, "result", "true"));
        return;
      }
    }
    Send(ResponseObject(request_id, "result", "false"));
  }

  void Call(absl::string_view message) {
    StartJsonRpcCall(
        owner_.context_, kMetricMethod, upstream_, message, client_,
        absl::Now() + owner_.context_.upstreams.request_timeout(upstream_),
        [session = anchor_](std::string response, std::optional<absl::Duration> /*limited_for*/) {
          if (response.empty()) return;  // A notification.
          session.Post([response = std::move(response)](Session* s) {
            if (s != nullptr) s->Send(response);
          });
        });
  }

  void OnSubscribed(uint64_t id) {
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end() || it->second->answered) return;
    it->second->answered = true;
    Send(ResponseObject(it->second->request_id, "result", it->second->id_json));
  }

  void OnNotification(uint64_t id, const subscriptions::Notification& notification) {
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end()) return;
    Subscription& subscription = *it->second;
    if (!Send(absl::StrCat(R"({"jsonrpc":"2.0","method":)",
                           upstream::JsonString(notification.method), R"(,"params":{"result":)",
                           notification.result, R"(,"subscription":)", subscription.id_json,
                           "}}"))) {
      return;  // Closed: too slow.
    }
    if (connection_->queued_bytes() < kHoldNotificationsBytes) {
      subscription.handle->Ready();
    } else {
      held_.push_back(id);  // Ready once the socket drains.
    }
  }

  void OnDrained() override {
    std::vector<uint64_t> held;
    held.swap(held_);
    for (uint64_t id : held) {
      auto it = subscriptions_.find(id);
      if (it != subscriptions_.end()) it->second->handle->Ready();
    }
  }

  void OnSubscriptionEnded(uint64_t id, const absl::Status& status) {
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end()) return;
    if (!it->second->answered) {
      const std::string request_id = it->second->request_id;
      subscriptions_.erase(it);
      Refuse(request_id,
             status.code() == absl::StatusCode::kResourceExhausted ? kLimited : kUpstreamFailure,
             status.message());
      return;
    }
    // A live subscription ended (a drain, an overflow under `disconnect`):
    // JSON-RPC has no message for that, so the client reconnects.
    SB_LOG(kInfo, "front door WebSocket ", id_, ": a subscription ended (", status.message(),
           "); closing the connection");
    Close(status.code() == absl::StatusCode::kUnavailable ? ws::kCloseGoingAway
                                                          : kCloseInternalError);
  }

  void Refuse(absl::string_view request_id, int code, absl::string_view message) {
    Send(ResponseObject(request_id, "error", ErrorObject(code, message)));
  }

  // Sends one message; a client that lets more than max_queued_bytes wait
  // is closed (1008). False when the message did not go.
  bool Send(const std::string& message) {
    if (closed_) return false;
    absl::Status sent = connection_->SendText(message);
    if (sent.ok()) return true;
    SB_LOG(kWarning, sent.message(), "; closing it");
    closed_ = true;
    Close(ws::kClosePolicyViolation);
    return false;
  }

  JsonRpcWebSockets& owner_;
  const uint64_t id_;
  const std::string upstream_;
  const auth::ClientIdentity client_;
  std::unique_ptr<ws::WebSocketConnection> connection_;
  uint64_t next_subscription_id_ = 1;
  bool closed_ = false;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Subscription>> subscriptions_;
  // Subscriptions whose next notification waits for the socket to drain.
  std::vector<uint64_t> held_;
  event::Anchor<Session> anchor_;
};

JsonRpcWebSockets::JsonRpcWebSockets(event::DispatcherImpl& dispatcher, ServiceContext& context,
                                     Options options, http::HttpServerObserver& observer)
    : dispatcher_(dispatcher),
      context_(context),
      options_(options),
      observer_(observer),
      anchor_(dispatcher, this) {}

JsonRpcWebSockets::~JsonRpcWebSockets() {
  anchor_.Clear();
  for (size_t i = 0; i < sessions_.size(); ++i) observer_.OnClosed();
  sessions_.clear();
}

bool JsonRpcWebSockets::Admit() {
  if (sessions_.size() < options_.max_websockets) return true;
  observer_.OnRefused();
  return false;
}

void JsonRpcWebSockets::Accept(bufferevent* bev, std::string upstream,
                               auth::ClientIdentity client) {
  if (sessions_.size() >= options_.max_websockets) {  // Filled up since the upgrade.
    observer_.OnRefused();
    bufferevent_free(bev);
    return;
  }
  const uint64_t id = next_id_++;
  auto session = std::make_unique<Session>(*this, id, std::move(upstream), std::move(client));
  if (absl::Status opened = session->Open(bev); !opened.ok()) {
    SB_LOG(kWarning, "front door WebSocket: ", opened.message());
    return;
  }
  sessions_.emplace(id, std::move(session));
  observer_.OnOpened();
}

void JsonRpcWebSockets::CloseAll() {
  std::vector<uint64_t> ids;
  ids.reserve(sessions_.size());
  for (const auto& [id, session] : sessions_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = sessions_.find(id);
    if (it != sessions_.end()) it->second->Close(ws::kCloseGoingAway);
  }
}

void JsonRpcWebSockets::Release(uint64_t id) {
  anchor_.Post([id](JsonRpcWebSockets* websockets) {
    if (websockets != nullptr && websockets->sessions_.erase(id) > 0) {
      websockets->observer_.OnClosed();
    }
  });
}

}  // namespace switchboard::service
