#include "server/broker/redis/connection_set.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace switchboard::broker::redis {
namespace {

// How soon a CLIENT UNBLOCK that found the reader not blocked yet (its
// XREADGROUP still on the way) is retried.
constexpr absl::Duration kUnblockRetry = absl::Milliseconds(1);

}  // namespace

std::vector<const TopicDeclaration*> ExclusiveDeclarations(const TopicPolicies& policies) {
  std::vector<const TopicDeclaration*> exclusive;
  for (const TopicDeclaration& declaration : policies.declarations()) {
    if (declaration.policy.exclusive) exclusive.push_back(&declaration);
  }
  return exclusive;
}

ConnectionSet::ConnectionSet(event::DispatcherImpl& dispatcher, const ConnectionOptions& options,
                             absl::Duration maintenance_interval, absl::Duration reader_linger,
                             const TopicPolicies& policies, ConnectionObserver& observer)
    : dispatcher_(dispatcher),
      options_(options),
      maintenance_interval_(maintenance_interval),
      reader_linger_(reader_linger),
      observer_(observer),
      command_(dispatcher, options, "command", observer),
      subscriber_(dispatcher, options, "subscriber", observer),
      anchor_(dispatcher, this) {
  for (const TopicDeclaration* declaration : ExclusiveDeclarations(policies)) {
    exclusive_.push_back(std::make_unique<Connection>(
        dispatcher, options, absl::StrCat("exclusive:", declaration->pattern), observer));
  }
}

ConnectionSet::~ConnectionSet() { anchor_.Clear(); }

void ConnectionSet::Start(Events events) {
  events_ = std::move(events);
  command_.Start([this](bool ready) { events_.on_command_state(kSharedLane, ready); });
  for (size_t i = 0; i < exclusive_.size(); ++i) {
    exclusive_[i]->Start(
        [this, lane = i + 1](bool ready) { events_.on_command_state(lane, ready); });
  }
  subscriber_.Start([this](bool ready) { events_.on_subscriber_state(ready); },
                    [this](Reply push) { events_.on_push(std::move(push)); });
  maintenance_timer_ = dispatcher_.CreateTimer([this] {
    maintenance_timer_->Enable(maintenance_interval_);
    events_.on_maintenance_tick();
  });
  maintenance_timer_->Enable(maintenance_interval_);
}

void ConnectionSet::Send(size_t lane, std::vector<Command> commands, RepliesHandler done) {
  Connection& connection = lane == kSharedLane ? command_ : *exclusive_[lane - 1];
  struct Batch {
    Replies replies;
    size_t remaining;
    RepliesHandler done;
  };
  auto batch = std::make_shared<Batch>(Batch{
      Replies(commands.size(), absl::UnknownError("no reply")), commands.size(), std::move(done)});
  for (size_t i = 0; i < commands.size(); ++i) {
    connection.Send(commands[i], [batch, i](absl::StatusOr<Reply> reply) {
      batch->replies[i] = std::move(reply);
      if (--batch->remaining == 0) batch->done(std::move(batch->replies));
    });
  }
}

void ConnectionSet::SendPubSub(const Command& command) {
  subscriber_.SendPubSub(command).IgnoreError();
}

void ConnectionSet::BlockingRead(size_t index, const Command& command, absl::Duration timeout,
                                 Connection::ReplyCallback done) {
  Reader& reader = Open(index);
  reader.blocking = true;
  reader.connection->Send(
      command, timeout, [this, index, done = std::move(done)](absl::StatusOr<Reply> reply) mutable {
        Reader& reader = readers_[index];
        reader.blocking = false;
        reader.unblock_wanted = false;
        reader.retry->Disable();
        done(std::move(reply));
      });
}

void ConnectionSet::OpenReader(size_t index) { Open(index); }

void ConnectionSet::Unblock(size_t index) {
  if (index >= readers_.size() || !readers_[index].blocking) return;
  readers_[index].unblock_wanted = true;
  TryUnblock(index);
}

void ConnectionSet::ReleaseReader(size_t index) {
  if (index >= readers_.size() || readers_[index].connection == nullptr) return;
  readers_[index].linger->Enable(reader_linger_);
}

void ConnectionSet::CloseReader(size_t index) {
  Reader& reader = readers_[index];
  reader.linger->Disable();
  if (reader.connection == nullptr) return;
  reader.connection->Close();
  dispatcher_.Post([closed = std::move(reader.connection)] {});
}

void ConnectionSet::CloseAll() {
  if (maintenance_timer_ != nullptr) maintenance_timer_->Disable();
  for (size_t i = 0; i < readers_.size(); ++i) CloseReader(i);
  subscriber_.Close();
  for (std::unique_ptr<Connection>& exclusive : exclusive_) exclusive->Close();
  command_.Close();
}

ConnectionSet::Reader& ConnectionSet::Open(size_t index) {
  while (readers_.size() <= index) {
    Reader& added = readers_.emplace_back();
    const size_t added_index = readers_.size() - 1;
    added.retry = dispatcher_.CreateTimer([this, added_index] { TryUnblock(added_index); });
    added.linger = dispatcher_.CreateTimer([this, added_index] {
      CloseReader(added_index);
      events_.on_reader_state(added_index, false);
    });
  }
  Reader& reader = readers_[index];
  reader.linger->Disable();
  if (reader.connection == nullptr) {
    reader.connection = std::make_unique<Connection>(dispatcher_, options_, "reader", observer_);
    reader.connection->Start([this, index](bool ready) { events_.on_reader_state(index, ready); });
  }
  return reader;
}

void ConnectionSet::TryUnblock(size_t index) {
  Reader& reader = readers_[index];
  if (!reader.blocking || !reader.unblock_wanted || !reader.connection->ready() ||
      !command_.ready()) {
    return;
  }
  command_.Send(
      Command::Of({"CLIENT", "UNBLOCK", absl::StrCat(reader.connection->client_id())}),
      [this, index](absl::StatusOr<Reply> reply) {
        Reader& reader = readers_[index];
        if (reply.ok() && reply->integer == 0 && reader.blocking && reader.unblock_wanted) {
          reader.retry->Enable(kUnblockRetry);
        }
      });
}

}  // namespace switchboard::broker::redis
