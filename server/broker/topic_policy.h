// Per-topic behaviour: which kind a topic is and the knobs of that kind.
//
// Declarations come from configuration (`topics:`), by exact name or by a
// prefix ending in '*'. Exact names win over prefixes, and longer prefixes
// over shorter ones. A topic that matches no declaration is durable with the
// defaults below. Immutable after construction, so any thread may read it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/flow/overflow_policy.h"

namespace switchboard::broker {

enum class TopicKind { kDurable, kEphemeral };

// What an ephemeral subscriber's full buffer does with the next message.
using flow::OverflowPolicy;
using flow::OverflowPolicyName;

absl::string_view TopicKindName(TopicKind kind);  // "durable" / "ephemeral"

// The redelivery delay of a nack that names none: `min` after the first
// attempt, doubling per attempt, at most `max`.
struct RetryBackoff {
  absl::Duration min;
  absl::Duration max;
};

struct TopicPolicy {
  TopicKind kind = TopicKind::kDurable;

  // Ephemeral topics.
  uint32_t subscriber_buffer = 1000;  // Messages buffered per subscriber stream.
  OverflowPolicy overflow = OverflowPolicy::kDropOldest;

  // Durable topics.
  uint64_t max_len = 1000000;  // Retention: entries kept in the stream.
  uint64_t max_bytes = 0;      // Retention in bytes too (RetainedBytes()); 0: none.
  absl::Duration ack_deadline = absl::Seconds(30);
  uint32_t max_delivery_attempts = 5;
  std::string dead_letter_suffix = ":dlq";    // Dead letters go to topic + suffix.
  bool exclusive = false;                     // Give this topic its own backend connection.
  std::optional<RetryBackoff> retry_backoff;  // Absent: a nack redelivers at once.
  // Redis: streams for messages with an ordering key, shared out among the
  // replicas (0: keyed messages refused). The memory backend orders keys
  // without them.
  uint32_t ordering_partitions = 0;
  // How long a message's dedup_id is remembered.
  absl::Duration dedup_window = absl::Minutes(2);
  // Consumer groups that exist from startup, on a declaration of an exact
  // topic name. RabbitMQ keeps messages only for groups whose queue exists,
  // so a group declared here misses nothing published before its first
  // consumer joins; the memory and Redis backends keep history and need no
  // declaration.
  std::vector<std::string> groups;
};

// How long a message nacked on `attempt` (counted from 1) without a delay
// waits before its next delivery: zero without a retry_backoff.
absl::Duration NackDelay(const TopicPolicy& policy, uint32_t attempt);

// The retention in entries of a backend that trims by count only (Redis
// MAXLEN): max_len, lowered to max_bytes / `average_entry_bytes` when the
// topic has a max_bytes and an average is known; at least 1.
uint64_t MaxLenWithinBytes(const TopicPolicy& policy, double average_entry_bytes);

struct TopicDeclaration {
  std::string pattern;  // Exact name, or a prefix ending in '*'.
  TopicPolicy policy;
};

class TopicPolicies {
 public:
  TopicPolicies() = default;
  explicit TopicPolicies(std::vector<TopicDeclaration> declarations);

  // The policy for a concrete topic name.
  const TopicPolicy& Resolve(absl::string_view topic) const;

  // The policy of a Subscribe to `topic`, an exact name or a prefix pattern
  // ("news.*" has the policy of "news."). FAILED_PRECONDITION naming the
  // kind when the topic is not ephemeral.
  absl::StatusOr<const TopicPolicy*> ResolveSubscribable(absl::string_view topic) const;

  // FAILED_PRECONDITION naming the kind when `topic` is not durable.
  absl::Status CheckConsumable(absl::string_view topic) const;

  const std::vector<TopicDeclaration>& declarations() const { return declarations_; }

 private:
  // Sorted so that the first match is the most specific.
  std::vector<TopicDeclaration> declarations_;
  TopicPolicy default_policy_;
};

}  // namespace switchboard::broker
