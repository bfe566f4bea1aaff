// OverflowPolicy: what a full subscriber buffer does with the next item.
//
// Shared by the broker's ephemeral topics (topics[].overflow) and the
// provider subscriptions of the Rpc service (upstreams[].subscriptions
// .overflow), which name the same three policies in their configuration.
#pragma once

#include "absl/strings/string_view.h"

namespace switchboard::flow {

enum class OverflowPolicy {
  kDropOldest,  // Evict the oldest buffered item to make room.
  kDropNewest,  // Discard the incoming item.
  kDisconnect,  // End the subscriber's stream with RESOURCE_EXHAUSTED.
};

// "drop_oldest", "drop_newest", "disconnect": the configuration's names.
absl::string_view OverflowPolicyName(OverflowPolicy policy);

}  // namespace switchboard::flow
