#include "server/subscriptions/subscription_hub.h"

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/common/log.h"
#include "server/flow/sink_guard.h"
#include "server/flow/subscriber_buffer.h"
#include "server/http/url_mask.h"
#include "server/upstream/json_rpc.h"

namespace switchboard::subscriptions {
namespace {

// The most bytes of a provider's error quoted in a status.
constexpr size_t kMaxQuotedError = 512;

}  // namespace

std::optional<std::string> UnsubscribeMethodFor(absl::string_view method) {
  if (absl::ConsumeSuffix(&method, "_subscribe") && !method.empty()) {
    return absl::StrCat(method, "_unsubscribe");
  }
  if (absl::ConsumeSuffix(&method, "Subscribe") && !method.empty()) {
    return absl::StrCat(method, "Unsubscribe");
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// The hub's records
// ---------------------------------------------------------------------------

struct SubscriptionHub::Local {
  Local(uint64_t id, std::string key, std::shared_ptr<flow::SinkGuard<NotificationSink>> guard,
        const HubOptions& options)
      : id(id),
        key(std::move(key)),
        guard(std::move(guard)),
        buffer(options.subscriber_buffer, options.overflow) {}

  const uint64_t id;
  const std::string key;  // Of its Shared.
  std::shared_ptr<flow::SinkGuard<NotificationSink>> guard;
  flow::SubscriberBuffer<Notification> buffer;
  bool told_subscribed = false;
};

// One upstream subscription, shared by every local subscriber with its key.
struct SubscriptionHub::Shared {
  std::string key;
  SubscribeSpec spec;  // unsubscribe_method resolved.
  absl::flat_hash_set<uint64_t> locals;
  Connection* connection = nullptr;
  // The provider's subscription id (raw JSON text), while live.
  std::optional<std::string> provider_id;
  uint64_t pending_request = 0;  // The subscribe in flight, if any.
  // Waiting for the SubscribeAdmission (paced hubs).
  std::optional<SubscribeAdmission::Ticket> admission_ticket;
  uint64_t sequence = 0;
  bool was_live = false;      // Live once: a new subscribe is a resubscribe.
  bool resubscribed = false;  // Flag the next notification.
  std::unique_ptr<event::Timer> linger;
  std::unique_ptr<event::Timer> answer_timeout;  // Of the pending subscribe.
};

// A subscribe sent and not answered yet. Its Shared may be gone when the
// answer comes: the subscription it made is then unsubscribed at once.
struct PendingSubscribe {
  std::string key;
  std::string unsubscribe_method;
};

// ---------------------------------------------------------------------------
// Connection: one WebSocket connection and the subscriptions placed on it
// ---------------------------------------------------------------------------

class SubscriptionHub::Connection final : public ws::WebSocketObserver {
 public:
  enum class State { kIdle, kConnecting, kOpen, kWaiting };

  Connection(SubscriptionHub& hub, size_t index)
      : hub_(hub),
        index_(index),
        backoff_(hub.options_.reconnect),
        reconnect_timer_(hub.dispatcher_.CreateTimer([this] { Connect(); })) {}

  void Connect() {
    state_ = State::kConnecting;
    const std::string& url = hub_.options_.ws_urls[url_index_ % hub_.options_.ws_urls.size()];
    absl::StatusOr<std::unique_ptr<ws::WebSocketClient>> client =
        ws::WebSocketClient::Connect(hub_.dispatcher_, url, hub_.options_.client, *this);
    if (!client.ok()) {  // The URL was checked with the configuration.
      SB_LOG(kError, "upstream ", hub_.options_.upstream, ": ", client.status().message());
      Retry();
      return;
    }
    client_ = *std::move(client);
    hub_.Report();
  }

  // Waits by the backoff, then connects to the next URL.
  void Retry() {
    client_.reset();
    ++url_index_;
    state_ = State::kWaiting;
    reconnect_timer_->Enable(backoff_.Next(hub_.random_));
    hub_.Report();
  }

  void OnOpen() override {
    state_ = State::kOpen;
    backoff_.Reset();
    hub_.OnConnectionOpen(*this);
  }
  void OnText(absl::string_view message) override { hub_.OnConnectionMessage(*this, message); }
  void OnClosed(absl::Status why) override { hub_.OnConnectionClosed(*this, std::move(why)); }

  // Sends one request; a failure ends the connection (from the client).
  bool Send(const std::string& request) {
    if (state_ != State::kOpen) return false;
    absl::Status sent = client_->SendText(request);
    if (!sent.ok()) SB_LOG(kWarning, "upstream ", hub_.options_.upstream, ": ", sent.message());
    return sent.ok();
  }

  // Drops the connection (from inside OnClosed too) until Connect().
  void GoIdle() {
    client_.reset();
    state_ = State::kIdle;
    hub_.Report();
  }

  void Close() {
    reconnect_timer_->Disable();
    if (client_ != nullptr) client_->Close();
  }

  State state() const { return state_; }
  size_t index() const { return index_; }

  absl::flat_hash_set<Shared*> shared;
  // Requests in flight by id.
  absl::flat_hash_map<uint64_t, PendingSubscribe> subscribes;
  absl::flat_hash_set<uint64_t> unsubscribes;
  absl::flat_hash_map<std::string, Shared*> by_provider_id;

 private:
  SubscriptionHub& hub_;
  const size_t index_;
  common::Backoff backoff_;
  std::unique_ptr<event::Timer> reconnect_timer_;
  std::unique_ptr<ws::WebSocketClient> client_;
  size_t url_index_ = 0;
  State state_ = State::kIdle;
};

// ---------------------------------------------------------------------------
// SubscriptionHub
// ---------------------------------------------------------------------------

SubscriptionHub::SubscriptionHub(event::DispatcherImpl& dispatcher, HubOptions options,
                                 HubObserver& observer, SubscribeAdmission* admission)
    : dispatcher_(dispatcher),
      options_(std::move(options)),
      observer_(observer),
      admission_(options_.paced ? admission : nullptr),
      anchor_(dispatcher, this) {
  Report();
}

SubscriptionHub::~SubscriptionHub() {
  anchor_.Clear();
  const absl::Status shutdown = absl::UnavailableError(
      absl::StrCat("upstream ", options_.upstream, ": Switchboard is shutting down"));
  for (auto& [id, local] : locals_) {
    local->guard->Invoke([&](NotificationSink& sink) { sink.OnEnded(shutdown); });
  }
  for (auto& [key, shared] : shared_) {
    if (shared->admission_ticket.has_value()) {
      admission_->Cancel(options_.upstream, *shared->admission_ticket);
    }
  }
  for (auto& connection : connections_) connection->Close();
}

void SubscriptionHub::Subscribe(uint64_t id, SubscribeSpec spec,
                                std::shared_ptr<flow::SinkGuard<NotificationSink>> guard) {
  std::string key = upstream::SharingKey(spec.method, spec.params_json);
  auto local = std::make_unique<Local>(id, key, std::move(guard), options_);
  auto [it, created] = shared_.try_emplace(key);
  if (created) {
    it->second = std::make_unique<Shared>();
    it->second->key = key;
    it->second->spec = std::move(spec);
    it->second->linger = dispatcher_.CreateTimer([this, key] {
      auto found = shared_.find(key);
      if (found != shared_.end() && found->second->locals.empty()) Unsubscribe(*found->second);
    });
    it->second->answer_timeout = dispatcher_.CreateTimer([this, key] {
      auto found = shared_.find(key);
      if (found != shared_.end()) OnSubscribeTimeout(*found->second);
    });
  }
  Shared& shared = *it->second;
  shared.linger->Disable();
  shared.locals.insert(id);
  Local& added = *locals_.emplace(id, std::move(local)).first->second;
  if (created) {
    Place(shared);
  } else if (shared.provider_id.has_value()) {
    added.told_subscribed = true;
    added.guard->Invoke([](NotificationSink& s) { s.OnSubscribed(); });
  }
  Report();
}

void SubscriptionHub::Place(Shared& shared) {
  Connection* chosen = nullptr;
  // A connection in use with room first, then an idle one, then a new one.
  for (auto& connection : connections_) {
    if (connection->state() == Connection::State::kIdle ||
        connection->shared.size() >= options_.max_subscriptions_per_connection) {
      continue;
    }
    chosen = connection.get();
    break;
  }
  if (chosen == nullptr) {
    for (auto& connection : connections_) {
      if (connection->state() == Connection::State::kIdle) {
        chosen = connection.get();
        break;
      }
    }
  }
  if (chosen == nullptr && connections_.size() < options_.max_connections) {
    connections_.push_back(std::make_unique<Connection>(*this, connections_.size()));
    chosen = connections_.back().get();
  }
  if (chosen == nullptr) {
    EndShared(shared,
              absl::ResourceExhaustedError(absl::StrCat(
                  "upstream ", options_.upstream, ": all ", options_.max_connections,
                  " WebSocket connections carry ", options_.max_subscriptions_per_connection,
                  " subscriptions (subscriptions.max_connections, "
                  "subscriptions.max_subscriptions_per_connection)")));
    return;
  }
  shared.connection = chosen;
  chosen->shared.insert(&shared);
  switch (chosen->state()) {
    case Connection::State::kIdle:
      chosen->Connect();
      break;
    case Connection::State::kOpen:
      RequestSubscribe(shared);
      break;
    case Connection::State::kConnecting:
    case Connection::State::kWaiting:
      break;  // Subscribed once open.
  }
}

void SubscriptionHub::RequestSubscribe(Shared& shared) {
  if (admission_ == nullptr) {
    SendSubscribe(*shared.connection, shared);
    return;
  }
  if (shared.admission_ticket.has_value()) return;  // Sent once admitted.
  // A first subscribe waits no longer than its answer may take; a
  // resubscribe, whose streams stay open meanwhile, as long as it takes.
  const absl::Time deadline = shared.was_live
                                  ? absl::InfiniteFuture()
                                  : dispatcher_.clock().Now() + options_.subscribe_timeout;
  shared.admission_ticket = admission_->Admit(
      options_.upstream, shared.spec.client_id, shared.spec.method, deadline,
      [this, key = shared.key](absl::Status admitted) {
        // A Shared that goes cancels its ticket, but the upstreams may have
        // shut down first (a drain's cut-off) and refused without one.
        auto found = shared_.find(key);
        if (found == shared_.end()) return;
        Shared& shared = *found->second;
        shared.admission_ticket.reset();
        if (!admitted.ok()) {
          EndShared(shared, admitted);
          return;
        }
        Connection* connection = shared.connection;
        // A connection that dropped meanwhile asks again when it reopens.
        if (connection != nullptr && connection->state() == Connection::State::kOpen &&
            shared.pending_request == 0 && !shared.provider_id.has_value()) {
          SendSubscribe(*connection, shared);
        }
      });
}

void SubscriptionHub::SendSubscribe(Connection& connection, Shared& shared) {
  const uint64_t id = next_request_id_++;
  shared.pending_request = id;
  shared.answer_timeout->Enable(options_.subscribe_timeout);
  connection.subscribes.emplace(id, PendingSubscribe{shared.key, shared.spec.unsubscribe_method});
  connection.Send(upstream::BuildRequest(id, shared.spec.method, shared.spec.params_json));
}

void SubscriptionHub::OnSubscribeTimeout(Shared& shared) {
  if (shared.pending_request == 0) return;
  // Its answer, should it come, finds no Shared and is unsubscribed.
  EndShared(shared, absl::DeadlineExceededError(absl::StrCat(
                        "upstream ", options_.upstream, " did not answer ", shared.spec.method,
                        " within ", absl::FormatDuration(options_.subscribe_timeout),
                        " (subscriptions.subscribe_timeout_ms)")));
}

void SubscriptionHub::OnConnectionOpen(Connection& connection) {
  // Copied: a refused send may end subscriptions.
  std::vector<Shared*> placed(connection.shared.begin(), connection.shared.end());
  for (Shared* shared : placed) RequestSubscribe(*shared);
  Report();
}

void SubscriptionHub::OnConnectionMessage(Connection& connection, absl::string_view message) {
  absl::StatusOr<upstream::NotificationParts> notification = upstream::SplitNotification(message);
  if (notification.ok()) {
    observer_.OnNotificationIn(options_.upstream);
    auto it = connection.by_provider_id.find(notification->subscription);
    // A notification for a subscription already left is dropped.
    if (it != connection.by_provider_id.end()) Deliver(*it->second, *notification);
    return;
  }
  absl::StatusOr<upstream::ResponseParts> response = upstream::SplitResponse(message);
  if (!response.ok()) {
    SB_LOG(kWarning, "upstream ", options_.upstream,
           ": a WebSocket message that is neither a notification nor an answer: ",
           response.status().message());
    return;
  }
  std::optional<uint64_t> id = upstream::NumericId(*response);
  if (!id.has_value()) return;  // Not an answer to this hub.
  if (connection.unsubscribes.erase(*id) > 0) return;
  auto pending = connection.subscribes.find(*id);
  if (pending == connection.subscribes.end()) return;
  PendingSubscribe subscribe = std::move(pending->second);
  connection.subscribes.erase(pending);
  auto found = shared_.find(subscribe.key);
  Shared* shared = found == shared_.end() ? nullptr : found->second.get();
  if (shared == nullptr || shared->pending_request != *id) {
    // Left, timed out or superseded: nobody wants what it made.
    if (response->result.has_value()) {
      SendUnsubscribe(connection, subscribe.unsubscribe_method, *response->result);
    }
    return;
  }
  shared->pending_request = 0;
  shared->answer_timeout->Disable();
  if (response->error.has_value()) {
    absl::string_view error = *response->error;
    EndShared(*shared, absl::FailedPreconditionError(absl::StrCat(
                           "upstream ", options_.upstream, " refused ", shared->spec.method, ": ",
                           error.substr(0, kMaxQuotedError))));
    return;
  }
  shared->provider_id = std::string(*response->result);
  connection.by_provider_id[*shared->provider_id] = shared;
  if (shared->was_live) {
    shared->resubscribed = true;
    observer_.OnResubscribe(options_.upstream);
  }
  shared->was_live = true;
  if (shared->locals.empty()) {  // Everyone left while the subscribe was out.
    if (!shared->linger->Enabled()) Unsubscribe(*shared);
    return;
  }
  for (uint64_t local_id : shared->locals) {
    Local& local = *locals_.at(local_id);
    if (local.told_subscribed) continue;
    local.told_subscribed = true;
    local.guard->Invoke([](NotificationSink& sink) { sink.OnSubscribed(); });
  }
}

void SubscriptionHub::OnConnectionClosed(Connection& connection, absl::Status why) {
  SB_LOG(kWarning, "upstream ", options_.upstream, ": WebSocket connection ", connection.index(),
         " lost (", why.message(), "); ", connection.shared.size(),
         " subscriptions to resubscribe");
  connection.subscribes.clear();
  connection.unsubscribes.clear();
  connection.by_provider_id.clear();
  for (Shared* shared : connection.shared) {
    shared->provider_id.reset();
    shared->pending_request = 0;
    shared->answer_timeout->Disable();
  }
  if (connection.shared.empty()) {
    connection.GoIdle();  // Connects again when a subscription needs it.
  } else {
    connection.Retry();
  }
}

void SubscriptionHub::Deliver(Shared& shared, const upstream::NotificationParts& parts) {
  auto notification = std::make_shared<Notification>();
  notification->method = parts.method;
  notification->result = std::string(parts.result);
  notification->sequence = ++shared.sequence;
  notification->after_resubscribe = shared.resubscribed;
  shared.resubscribed = false;
  // Copied: an overflow under `disconnect` ends a local.
  std::vector<uint64_t> locals(shared.locals.begin(), shared.locals.end());
  for (uint64_t id : locals) {
    Local& local = *locals_.at(id);
    flow::SubscriberBuffer<Notification>::PushResult pushed = local.buffer.Push(notification);
    if (pushed.dropped > 0) observer_.OnDropped(options_.upstream, pushed.dropped);
    if (pushed.disconnect) {
      EndLocal(id,
               absl::ResourceExhaustedError(absl::StrCat(
                   "upstream ", options_.upstream, ": the stream fell ", options_.subscriber_buffer,
                   " notifications behind (subscriptions.overflow: disconnect)")));
      continue;
    }
    if (pushed.handoff.has_value()) {
      HandOver(local, pushed.handoff->message, pushed.handoff->dropped_since_last);
    }
  }
}

void SubscriptionHub::HandOver(Local& local,
                               const std::shared_ptr<const Notification>& notification,
                               uint64_t dropped) {
  observer_.OnNotificationsOut(options_.upstream, 1);
  local.guard->Invoke([&](NotificationSink& sink) { sink.OnNotification(notification, dropped); });
}

void SubscriptionHub::Ready(uint64_t local_id) {
  auto it = locals_.find(local_id);
  if (it == locals_.end()) return;
  std::optional<flow::SubscriberBuffer<Notification>::Handoff> next = it->second->buffer.Ready();
  if (next.has_value()) HandOver(*it->second, next->message, next->dropped_since_last);
}

void SubscriptionHub::Leave(uint64_t local_id) {
  auto it = locals_.find(local_id);
  if (it == locals_.end()) return;  // Ended already.
  const std::string key = it->second->key;
  locals_.erase(it);
  auto found = shared_.find(key);
  if (found != shared_.end()) {
    Shared& shared = *found->second;
    shared.locals.erase(local_id);
    if (shared.locals.empty()) shared.linger->Enable(options_.linger);
  }
  Report();
}

void SubscriptionHub::EndLocal(uint64_t local_id, const absl::Status& status) {
  auto it = locals_.find(local_id);
  if (it == locals_.end()) return;
  it->second->guard->Invoke([&](NotificationSink& sink) { sink.OnEnded(status); });
  Leave(local_id);
}

void SubscriptionHub::EndShared(Shared& shared, const absl::Status& status) {
  std::vector<uint64_t> locals(shared.locals.begin(), shared.locals.end());
  const std::string key = shared.key;
  for (uint64_t id : locals) {
    auto it = locals_.find(id);
    if (it == locals_.end()) continue;
    it->second->guard->Invoke([&](NotificationSink& sink) { sink.OnEnded(status); });
    locals_.erase(it);
  }
  if (shared.connection != nullptr) shared.connection->shared.erase(&shared);
  CancelAdmission(shared);
  shared_.erase(key);
  Report();
}

void SubscriptionHub::Unsubscribe(Shared& shared) {
  Connection* connection = shared.connection;
  if (connection != nullptr && shared.provider_id.has_value()) {
    connection->by_provider_id.erase(*shared.provider_id);
    SendUnsubscribe(*connection, shared.spec.unsubscribe_method, *shared.provider_id);
  }
  // A subscribe still in flight is unsubscribed when its answer comes.
  if (connection != nullptr) connection->shared.erase(&shared);
  CancelAdmission(shared);
  const std::string key = shared.key;  // `shared` dies with its entry.
  shared_.erase(key);
  Report();
}

void SubscriptionHub::SendUnsubscribe(Connection& connection, absl::string_view method,
                                      absl::string_view provider_id) {
  const uint64_t id = next_request_id_++;
  connection.unsubscribes.insert(id);
  connection.Send(upstream::BuildRequest(id, method, absl::StrCat("[", provider_id, "]")));
}

void SubscriptionHub::CancelAdmission(Shared& shared) {
  if (!shared.admission_ticket.has_value()) return;
  admission_->Cancel(options_.upstream, *shared.admission_ticket);
  shared.admission_ticket.reset();
}

void SubscriptionHub::Report() {
  size_t connecting = 0;
  size_t open = 0;
  size_t waiting = 0;
  for (const auto& connection : connections_) {
    switch (connection->state()) {
      case Connection::State::kConnecting:
        ++connecting;
        break;
      case Connection::State::kOpen:
        ++open;
        break;
      case Connection::State::kWaiting:
        ++waiting;
        break;
      case Connection::State::kIdle:
        break;
    }
  }
  observer_.OnConnections(options_.upstream, connecting, open, waiting);
  observer_.OnSubscriptions(options_.upstream, shared_.size(), locals_.size());
}

}  // namespace switchboard::subscriptions
