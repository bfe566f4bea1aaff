#include "server/broker/message_id.h"

#include "absl/strings/str_cat.h"

namespace switchboard::broker {

std::string MessageIdGenerator::Next(absl::Time now) {
  const int64_t ms = absl::ToUnixMillis(now);
  if (ms > last_ms_) {
    last_ms_ = ms;
    sequence_ = 0;
  } else {
    ++sequence_;
  }
  return absl::StrCat(last_ms_, "-", sequence_base_ + sequence_);
}

}  // namespace switchboard::broker
