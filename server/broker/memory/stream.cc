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

std::shared_ptr<const Message> StreamCursor::Next() {
  next_ = std::max(next_, stream_.begin());
  if (next_ == stream_.end()) return nullptr;
  return stream_.at(next_++);
}

}  // namespace switchboard::broker::memory
