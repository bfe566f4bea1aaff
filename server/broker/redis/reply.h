// Reply: an owned copy of one Redis (RESP2) reply, and how to read one.
//
// Used by the Redis backend: hiredis frees its reply objects as soon as the
// reply callback returns, and replies cross from the I/O dispatcher to the
// broker's dispatcher, so every reply is copied once into this value type.
// Plain data: any thread may use its own copy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct redisReply;

namespace switchboard::broker::redis {

struct Reply {
  enum class Type { kNil, kStatus, kError, kInteger, kString, kArray };

  // A deep copy of hiredis' `reply`.
  static Reply From(const redisReply& reply);

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
  bool is_array() const { return type == Type::kArray; }
  bool is_string() const { return type == Type::kString; }

  // For an error reply, the status that describes it (see RedisErrorStatus);
  // OK for every other reply.
  absl::Status status() const;

  Type type = Type::kNil;
  int64_t integer = 0;          // kInteger.
  std::string str;              // kStatus, kError, kString.
  std::vector<Reply> elements;  // kArray.
};

// The status for a Redis error reply such as "NOGROUP No such key": OOM is
// RESOURCE_EXHAUSTED, conditions a retry or a healthy server would cure
// (LOADING, BUSY, READONLY, MASTERDOWN, TRYAGAIN, and AUTH or ACL refusals
// of Switchboard's own credentials) are UNAVAILABLE, anything else INTERNAL.
// The message is "redis: <error>".
absl::Status RedisErrorStatus(absl::string_view error);

// True when `error` starts with the error code `code` ("NOGROUP", "BUSYGROUP").
bool HasErrorCode(absl::string_view error, absl::string_view code);

// The first failure among the replies of a pipelined batch: a transport
// status or a Redis error; OK when there is none.
absl::Status FirstError(const std::vector<absl::StatusOr<Reply>>& replies);

}  // namespace switchboard::broker::redis
