#include "server/broker/topic_policy.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "server/common/names.h"

namespace switchboard::broker {
namespace {

absl::Status KindMismatch(absl::string_view topic, TopicKind kind, absl::string_view use) {
  return absl::FailedPreconditionError(
      absl::StrCat("topic '", topic, "' is ", TopicKindName(kind), "; use ", use));
}

}  // namespace

absl::string_view TopicKindName(TopicKind kind) {
  return kind == TopicKind::kEphemeral ? "ephemeral" : "durable";
}

TopicPolicies::TopicPolicies(std::vector<TopicDeclaration> declarations)
    : declarations_(std::move(declarations)) {
  // Exact names first, then prefixes from longest to shortest.
  std::stable_sort(declarations_.begin(), declarations_.end(),
                   [](const TopicDeclaration& a, const TopicDeclaration& b) {
                     const bool a_prefix = common::IsTopicPrefixPattern(a.pattern);
                     const bool b_prefix = common::IsTopicPrefixPattern(b.pattern);
                     if (a_prefix != b_prefix) return !a_prefix;
                     return a.pattern.size() > b.pattern.size();
                   });
}

const TopicPolicy& TopicPolicies::Resolve(absl::string_view topic) const {
  for (const TopicDeclaration& declaration : declarations_) {
    if (common::TopicPatternMatches(declaration.pattern, topic)) return declaration.policy;
  }
  return default_policy_;
}

absl::StatusOr<const TopicPolicy*> TopicPolicies::ResolveSubscribable(
    absl::string_view topic) const {
  absl::string_view resolved = topic;
  if (common::IsTopicPrefixPattern(topic)) resolved.remove_suffix(1);
  const TopicPolicy& policy = Resolve(resolved);
  if (policy.kind != TopicKind::kEphemeral) return KindMismatch(topic, policy.kind, "Consume");
  return &policy;
}

absl::Status TopicPolicies::CheckConsumable(absl::string_view topic) const {
  const TopicPolicy& policy = Resolve(topic);
  if (policy.kind != TopicKind::kDurable) return KindMismatch(topic, policy.kind, "Subscribe");
  return absl::OkStatus();
}

uint64_t MaxLenWithinBytes(const TopicPolicy& policy, double average_entry_bytes) {
  if (policy.max_bytes == 0 || average_entry_bytes <= 0) return policy.max_len;
  const double entries = static_cast<double>(policy.max_bytes) / average_entry_bytes;
  if (entries >= static_cast<double>(policy.max_len)) return policy.max_len;
  return std::max<uint64_t>(1, static_cast<uint64_t>(entries));
}

absl::Duration NackDelay(const TopicPolicy& policy, uint32_t attempt) {
  if (!policy.retry_backoff) return absl::ZeroDuration();
  common::BackoffOptions options;
  options.initial = policy.retry_backoff->min;
  options.max = policy.retry_backoff->max;
  return common::BackoffCeiling(options, static_cast<int>(attempt) - 1);
}

}  // namespace switchboard::broker
