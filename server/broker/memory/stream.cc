#include "server/broker/memory/stream.h"

#include <algorithm>
#include <utility>

namespace switchboard::broker::memory {

void Stream::Append(std::shared_ptr<const Message> message) {
  entries_.push_back(std::move(message));
  while (entries_.size() > max_len_) {
    entries_.pop_front();
    ++begin_;
  }
}

std::optional<ConsumerGroup::Claim> ConsumerGroup::ClaimNext() {
  if (!redeliveries_.empty()) {
    Pending& pending = pending_.at(redeliveries_.front());
    redeliveries_.pop_front();
    return Claim{pending.message, ++pending.delivery_count};
  }
  // Entries trimmed before this group read them are gone for it too.
  next_position_ = std::max(next_position_, stream_.begin());
  if (next_position_ == stream_.end()) return std::nullopt;
  const std::shared_ptr<const Message>& message = stream_.at(next_position_++);
  pending_.emplace(message->id, Pending{message, 1});
  return Claim{message, 1};
}

std::shared_ptr<const Message> ConsumerGroup::Remove(const std::string& id) {
  auto it = pending_.find(id);
  std::shared_ptr<const Message> message = std::move(it->second.message);
  pending_.erase(it);
  return message;
}

void ConsumerGroup::Requeue(const std::string& id) { redeliveries_.push_back(id); }

}  // namespace switchboard::broker::memory
