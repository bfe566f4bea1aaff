#include "server/broker/memory/stream.h"

#include <algorithm>
#include <utility>

namespace switchboard::broker::memory {

uint64_t RetainedBytes(const Message& message) {
  uint64_t bytes = kMessageOverheadBytes + message.payload.size() + message.ordering_key.size() +
                   message.id.size();
  for (const auto& [name, value] : message.attributes) bytes += name.size() + value.size();
  return bytes;
}

void Stream::Append(std::shared_ptr<const Message> message, uint64_t bytes) {
  entries_.push_back(Entry{std::move(message), bytes});
  bytes_ += bytes;
  while (OverBounds(entries_.size(), bytes_) && entries_.size() > 1) {
    bytes_ -= entries_.front().bytes;
    entries_.pop_front();
    ++begin_;
  }
}

uint64_t Stream::BytesAfterAppending(const std::vector<uint64_t>& sizes) const {
  uint64_t count = entries_.size();
  uint64_t bytes = bytes_;
  size_t oldest = 0;  // In entries_ first, then in `sizes`.
  for (uint64_t size : sizes) {
    ++count;
    bytes += size;
    while (OverBounds(count, bytes) && count > 1) {
      bytes -= oldest < entries_.size() ? entries_[oldest].bytes : sizes[oldest - entries_.size()];
      ++oldest;
      --count;
    }
  }
  return bytes;
}

std::shared_ptr<const Message> StreamCursor::Next() {
  next_ = std::max(next_, stream_.begin());
  if (next_ == stream_.end()) return nullptr;
  return stream_.at(next_++);
}

}  // namespace switchboard::broker::memory
