#include "server/broker/consumer_groups.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace switchboard::broker {

OutgoingMessage DeadLetterOf(const Message& message, uint32_t attempts) {
  OutgoingMessage dead_letter{message.payload, message.attributes};
  dead_letter.attributes[kDeadLetterAttemptsAttribute] = absl::StrCat(attempts);
  dead_letter.attributes[kDeadLetterOriginalIdAttribute] = message.id;
  dead_letter.attributes[kDeadLetterOriginalTopicAttribute] = message.topic;
  return dead_letter;
}

// -- ConsumerGroup ------------------------------------------------------------

ConsumerGroup::ConsumerGroup(ConsumerGroups& core, std::string topic, std::string name,
                             const TopicPolicy& policy)
    : core_(core), topic_(std::move(topic)), name_(std::move(name)), policy_(policy) {}

uint32_t ConsumerGroup::credits() const {
  uint64_t credits = 0;
  for (const Session* session : sessions_) credits += session->max_in_flight;
  return static_cast<uint32_t>(std::min<uint64_t>(credits, UINT32_MAX));
}

uint32_t ConsumerGroup::FreeCredits() const {
  int64_t free = 0;
  for (const Session* session : sessions_) {
    free += int64_t{session->max_in_flight} - int64_t(core_.leases_.HeldBy(session->id));
  }
  free -=
      int64_t(redelivered_.size() + fresh_.size()) + int64_t{redelivering_} + int64_t{reserved_};
  return free > 0 ? static_cast<uint32_t>(free) : 0;
}

void ConsumerGroup::Arrive(std::shared_ptr<const Message> message, uint32_t attempt,
                           absl::Duration delay) {
  if (attempt > policy_.max_delivery_attempts) {
    // Its attempts were used up elsewhere (a replica that died).
    source_->DeadLetter(*this, std::move(message), attempt - 1);
    return;
  }
  std::string id = message->id;
  held_[id] = std::move(message);
  ++arrived_;
  if (delay > absl::ZeroDuration()) {
    // Still in progress (nacked with a delay elsewhere): the later messages
    // of its key wait for it.
    const std::string& key = held_[id]->ordering_key;
    if (!key.empty()) key_in_progress_.try_emplace(key, id);
    Delay(Delayed{std::move(id), attempt, /*taken_back=*/true}, delay);
    return;
  }
  (attempt > 1 ? redelivered_ : fresh_).push_back(Waiting{std::move(id), attempt});
}

std::vector<DueDelivery> ConsumerGroup::TakeDue(size_t count) {
  count = std::min(count, due_.size());
  std::vector<DueDelivery> taken(due_.begin(), due_.begin() + count);
  due_.erase(due_.begin(), due_.begin() + count);
  redelivering_ += count;
  return taken;
}

void ConsumerGroup::Redelivered(const DueDelivery& due, bool present) {
  --redelivering_;
  if (present) {
    ++arrived_;
    redelivered_.push_back(Waiting{due.id, due.attempt});
  } else {
    Forget(due.id);
  }
}

void ConsumerGroup::Requeue(const std::vector<DueDelivery>& due) {
  redelivering_ -= due.size();
  due_.insert(due_.begin(), due.begin(), due.end());
}

std::vector<std::string> ConsumerGroup::TakeWaiting() {
  return TakeWaiting([](absl::string_view) { return true; });
}

std::vector<std::string> ConsumerGroup::TakeWaiting(
    absl::FunctionRef<bool(absl::string_view id)> which) {
  std::vector<std::string> ids;
  auto take = [&](std::string& id) {
    if (!which(id)) return false;
    ids.push_back(std::move(id));
    return true;
  };
  auto take_from = [&](auto& queue) {
    queue.erase(
        std::remove_if(queue.begin(), queue.end(), [&](auto& entry) { return take(entry.id); }),
        queue.end());
  };
  take_from(redelivered_);
  take_from(fresh_);
  take_from(due_);
  for (auto entry = delayed_.begin(); entry != delayed_.end();) {
    entry = take(entry->second.id) ? delayed_.erase(entry) : std::next(entry);
  }
  if (delay_timer_ != nullptr) {
    if (delayed_.empty()) {
      delay_timer_->Disable();
    } else {
      delay_timer_->EnableAt(delayed_.begin()->first);
    }
  }
  for (auto& [key, waiting] : blocked_) take_from(waiting);
  absl::erase_if(blocked_, [](const auto& entry) { return entry.second.empty(); });
  blocked_count_ = 0;
  for (const auto& [key, waiting] : blocked_) blocked_count_ += waiting.size();
  for (const std::string& id : ids) held_.erase(id);
  // What is still held is leased: its keys stay in progress.
  absl::erase_if(key_in_progress_, [this](const auto& entry) { return !holds(entry.second); });
  return ids;
}

bool ConsumerGroup::HoldsAny(absl::FunctionRef<bool(absl::string_view id)> which) const {
  for (const auto& [id, message] : held_) {
    if (which(id)) return true;
  }
  return false;
}

size_t ConsumerGroup::leases_in_flight() const { return core_.leases_.HeldByAll(sessions_); }

void ConsumerGroup::HandOut() {
  const size_t members = sessions_.size();
  std::vector<std::vector<Delivery>> batches(members);
  const absl::Time now = core_.clock_.Now();
  for (size_t without_credit = 0;
       without_credit < members && (!redelivered_.empty() || !fresh_.empty());) {
    const size_t turn = next_turn_;
    next_turn_ = (turn + 1) % members;
    const Session& session = *sessions_[turn];
    if (core_.leases_.HeldBy(session.id) >= session.max_in_flight) {
      ++without_credit;
      continue;
    }
    std::deque<Waiting>& queue = redelivered_.empty() ? fresh_ : redelivered_;
    Waiting next = std::move(queue.front());
    queue.pop_front();
    const Message& message = *held_.at(next.id);
    if (!message.ordering_key.empty()) {
      auto [in_progress, free] = key_in_progress_.try_emplace(message.ordering_key, next.id);
      if (!free && in_progress->second != next.id) {
        // Behind the key's message in progress; the turn is not used.
        blocked_[message.ordering_key].push_back(std::move(next));
        ++blocked_count_;
        next_turn_ = turn;
        continue;
      }
    }
    without_credit = 0;
    if (next.attempt > 1) core_.observer_.OnRedelivered(topic_, name_);
    Delivery& delivery = batches[turn].emplace_back();
    delivery.message = message;
    delivery.delivery_attempt = next.attempt;
    delivery.ack_id = core_.leases_.Grant(
        Lease{session.id, std::move(next.id), next.attempt, now + session.ack_deadline});
  }
  for (size_t i = 0; i < members; ++i) {
    if (batches[i].empty()) continue;
    sessions_[i]->sink->Invoke(
        [&](ConsumerSink& sink) { sink.OnDeliveries(std::move(batches[i])); });
  }
}

void ConsumerGroup::Fail(const Lease& lease, absl::Duration delay) {
  if (lease.delivery_attempt < policy_.max_delivery_attempts) {
    if (delay > absl::ZeroDuration()) {
      source_->RecordDelay(*this, lease.message_id, delay);
      Delay(Delayed{lease.message_id, lease.delivery_attempt + 1, /*taken_back=*/false}, delay);
      return;
    }
    due_.push_back(DueDelivery{lease.message_id, lease.delivery_attempt + 1});
    return;
  }
  auto held = held_.find(lease.message_id);
  if (held == held_.end()) return;
  std::shared_ptr<const Message> message = held->second;
  Forget(lease.message_id);
  source_->DeadLetter(*this, std::move(message), lease.delivery_attempt);
}

void ConsumerGroup::Forget(const std::string& id) {
  auto held = held_.find(id);
  if (held == held_.end()) return;
  const std::string& key = held->second->ordering_key;
  auto in_progress = key.empty() ? key_in_progress_.end() : key_in_progress_.find(key);
  if (in_progress != key_in_progress_.end() && in_progress->second == id) {
    key_in_progress_.erase(in_progress);
    auto blocked = blocked_.find(key);
    if (blocked != blocked_.end()) {
      // The next of the key goes before anything that arrived after it.
      Waiting next = std::move(blocked->second.front());
      blocked->second.pop_front();
      --blocked_count_;
      if (blocked->second.empty()) blocked_.erase(blocked);
      (next.attempt > 1 ? redelivered_ : fresh_).push_front(std::move(next));
    }
  }
  held_.erase(held);
}

void ConsumerGroup::Delay(Delayed entry, absl::Duration delay) {
  const absl::Time end = core_.clock_.Now() + delay;
  delayed_.emplace(end, std::move(entry));
  if (delay_timer_ == nullptr) {
    delay_timer_ = core_.dispatcher_.CreateTimer([this] { EndDelays(); });
  }
  if (delayed_.begin()->first == end) delay_timer_->EnableAt(end);
}

void ConsumerGroup::EndDelays() {
  const absl::Time now = core_.clock_.Now();
  while (!delayed_.empty() && delayed_.begin()->first <= now) {
    Delayed& entry = delayed_.begin()->second;
    if (entry.taken_back) {
      redelivered_.push_back(Waiting{std::move(entry.id), entry.attempt});
    } else {
      due_.push_back(DueDelivery{std::move(entry.id), entry.attempt});
    }
    delayed_.erase(delayed_.begin());
  }
  if (!delayed_.empty()) delay_timer_->EnableAt(delayed_.begin()->first);
  core_.Pump(*this);
}

// -- ConsumerGroups -----------------------------------------------------------

ConsumerGroups::ConsumerGroups(event::Dispatcher& dispatcher, const TopicPolicies& policies,
                               BrokerObserver& observer, SourceFactory make_source)
    : dispatcher_(dispatcher),
      clock_(dispatcher.clock()),
      policies_(policies),
      observer_(observer),
      make_source_(std::move(make_source)),
      leases_(dispatcher, [this](Lease lease) { OnLeaseExpired(std::move(lease)); }) {}

ConsumerGroup& ConsumerGroups::GetGroup(const std::string& topic, const std::string& name) {
  auto key = std::make_pair(topic, name);
  auto it = groups_.find(key);
  if (it != groups_.end()) return it->second;
  ConsumerGroup& group =
      groups_
          .emplace(std::piecewise_construct, std::forward_as_tuple(key),
                   std::forward_as_tuple(*this, topic, name, policies_.Resolve(topic)))
          .first->second;
  group.source_ = make_source_(group);
  return group;
}

void ConsumerGroups::AddSession(uint64_t id, ConsumeOptions options,
                                std::shared_ptr<flow::SinkGuard<ConsumerSink>> sink) {
  ConsumerGroup& group = GetGroup(options.topic, options.group);
  const absl::Duration ack_deadline = options.ack_deadline > absl::ZeroDuration()
                                          ? options.ack_deadline
                                          : group.policy().ack_deadline;
  ConsumerGroup::Session& session =
      sessions_
          .try_emplace(id, ConsumerGroup::Session{id, &group, options.max_in_flight, ack_deadline,
                                                  std::move(sink)})
          .first->second;
  group.sessions_.push_back(&session);
  Pump(group);
}

void ConsumerGroups::RemoveSession(uint64_t id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  ConsumerGroup& group = *it->second.group;
  std::vector<ConsumerGroup::Session*>& members = group.sessions_;
  const size_t index = std::find(members.begin(), members.end(), &it->second) - members.begin();
  members.erase(members.begin() + index);
  if (index < group.next_turn_) --group.next_turn_;
  if (group.next_turn_ >= members.size()) group.next_turn_ = 0;
  for (const Lease& lease : leases_.ReleaseSession(id)) group.Fail(lease, absl::ZeroDuration());
  sessions_.erase(it);
  Pump(group);
}

void ConsumerGroups::Settle(uint64_t id, const LeaseUpdate& update,
                            absl::AnyInvocable<void(LeaseUpdateResult)> done) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  ConsumerGroup::Session& session = it->second;
  ConsumerGroup& group = *session.group;
  LeaseUpdateResult result;
  std::vector<std::string> acked;
  for (const std::string& ack_id : update.acks) {
    result.acks.push_back(EndLease(session, ack_id, /*acked=*/true, absl::ZeroDuration(), acked));
  }
  for (const LeaseUpdate::Nack& nack : update.nacks) {
    result.nacks.push_back(EndLease(session, nack.ack_id, /*acked=*/false, nack.delay, acked));
  }
  for (const LeaseUpdate::Extension& extension : update.extensions) {
    result.extensions.push_back(
        extension.deadline > absl::ZeroDuration()
            ? leases_.Extend(extension.ack_id, id, clock_.Now() + extension.deadline)
            : EndLease(session, extension.ack_id, /*acked=*/false, absl::ZeroDuration(), acked));
  }
  if (!acked.empty()) group.source().Acknowledge(group, std::move(acked));
  session.sink->Invoke([&](ConsumerSink&) { done(std::move(result)); });
  Pump(group);
}

absl::Status ConsumerGroups::EndLease(ConsumerGroup::Session& session, absl::string_view ack_id,
                                      bool acked, absl::Duration delay,
                                      std::vector<std::string>& acked_ids) {
  absl::StatusOr<Lease> lease = leases_.Release(ack_id, session.id);
  if (!lease.ok()) return lease.status();
  ConsumerGroup& group = *session.group;
  if (acked) {
    group.Forget(lease->message_id);
    acked_ids.push_back(std::move(lease->message_id));
  } else {
    group.Fail(*lease, delay > absl::ZeroDuration()
                           ? delay
                           : NackDelay(group.policy(), lease->delivery_attempt));
  }
  return absl::OkStatus();
}

void ConsumerGroups::CloseAll(const absl::Status& status) {
  for (auto& [id, session] : sessions_) {
    session.sink->Invoke([&](ConsumerSink& sink) { sink.OnClosed(status); });
  }
}

void ConsumerGroups::CloseSessions(ConsumerGroup& group, const absl::Status& status) {
  // A copy: a sink may end its session from OnClosed().
  const std::vector<ConsumerGroup::Session*> sessions = group.sessions_;
  for (ConsumerGroup::Session* session : sessions) {
    session->sink->Invoke([&](ConsumerSink& sink) { sink.OnClosed(status); });
  }
}

void ConsumerGroups::Pump(ConsumerGroup& group) {
  if (stopped_) return;
  if (!group.has_sessions()) {
    group.source().Idle(group);
    return;
  }
  group.HandOut();
  // A source that answers inline (memory) may bring messages that wait
  // behind their ordering key without using a credit: ask it again while it
  // brings some and credits are left.
  while (group.FreeCredits() > 0 && group.blocked() < kMaxBlockedMessages) {
    const uint64_t arrived = group.arrived_;
    group.source().Fill(group);
    group.HandOut();
    if (group.arrived_ == arrived) break;
  }
}

void ConsumerGroups::ReportLeasesInFlight() {
  for (const auto& [key, group] : groups_) {
    observer_.OnLeasesInFlight(group.topic(), group.name(), group.leases_in_flight());
  }
}

void ConsumerGroups::OnLeaseExpired(Lease lease) {
  ConsumerGroup& group = *sessions_.at(lease.session).group;
  observer_.OnLeaseExpired(group.topic(), group.name());
  group.Fail(lease, absl::ZeroDuration());
  Pump(group);
}

}  // namespace switchboard::broker
