// What the Publisher's two test files share: a message from its payload, and
// whether a publish future has its outcome yet.
#pragma once

#include <chrono>
#include <future>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "switchboard/v1/broker.pb.h"

namespace switchboard::client {

using IdFuture = std::future<absl::StatusOr<std::string>>;

inline v1::OutgoingMessage Message(std::string payload) {
  v1::OutgoingMessage message;
  message.set_payload(std::move(payload));
  return message;
}

// Without waiting.
inline bool IsReady(const IdFuture& future) {
  return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

}  // namespace switchboard::client
