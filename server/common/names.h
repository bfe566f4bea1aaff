// Validation of the names callers and operators choose: topics, topic
// patterns, consumer groups, upstreams and JSON-RPC methods. Shared by request validation
// (service/) and configuration (config/) so both accept exactly the same names.
//
// Errors are INVALID_ARGUMENT and start with the caller-supplied field path,
// e.g. "topic: must not be empty".
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace switchboard::common {

inline constexpr size_t kMaxTopicNameLength = 256;
inline constexpr size_t kMaxGroupNameLength = 128;
inline constexpr size_t kMaxUpstreamNameLength = 128;
inline constexpr size_t kMaxMethodNameLength = 128;

// A concrete topic: 1..256 characters from [A-Za-z0-9._:-], not starting
// with '.', ':' or '-'.
absl::Status ValidateTopicName(absl::string_view name, absl::string_view field);

// A topic name, or a prefix followed by a single trailing '*' (the prefix must
// not be empty).
absl::Status ValidateTopicPattern(absl::string_view pattern, absl::string_view field);

// A consumer group: 1..128 characters from [A-Za-z0-9._:-].
absl::Status ValidateGroupName(absl::string_view name, absl::string_view field);

// An upstream: 1..128 characters from [A-Za-z0-9._:-].
absl::Status ValidateUpstreamName(absl::string_view name, absl::string_view field);

// A JSON-RPC method (`getSlot`, `eth_getBalance`): 1..128 characters from
// [A-Za-z0-9._:-].
absl::Status ValidateMethodName(absl::string_view name, absl::string_view field);

// True when `pattern` ends in '*' (a prefix pattern).
bool IsTopicPrefixPattern(absl::string_view pattern);

// True when `topic` is `pattern`, or starts with the prefix of a '*' pattern.
bool TopicPatternMatches(absl::string_view pattern, absl::string_view topic);

}  // namespace switchboard::common
