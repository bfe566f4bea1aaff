#include "server/broker/redis/reply.h"

#include <hiredis/hiredis.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace switchboard::broker::redis {

Reply Reply::From(const redisReply& reply) {
  Reply copy;
  switch (reply.type) {
    case REDIS_REPLY_STATUS:
      copy.type = Type::kStatus;
      copy.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_ERROR:
      copy.type = Type::kError;
      copy.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_INTEGER:
      copy.type = Type::kInteger;
      copy.integer = reply.integer;
      break;
    case REDIS_REPLY_STRING:
      copy.type = Type::kString;
      copy.str.assign(reply.str, reply.len);
      break;
    case REDIS_REPLY_ARRAY:
      copy.type = Type::kArray;
      copy.elements.reserve(reply.elements);
      for (size_t i = 0; i < reply.elements; ++i) copy.elements.push_back(From(*reply.element[i]));
      break;
    default:  // REDIS_REPLY_NIL
      break;
  }
  return copy;
}

absl::Status Reply::status() const { return is_error() ? RedisErrorStatus(str) : absl::OkStatus(); }

bool HasErrorCode(absl::string_view error, absl::string_view code) {
  return absl::StartsWith(error, code) &&
         (error.size() == code.size() || error[code.size()] == ' ');
}

absl::Status RedisErrorStatus(absl::string_view error) {
  const std::string message = absl::StrCat("redis: ", error);
  if (HasErrorCode(error, "OOM")) return absl::ResourceExhaustedError(message);
  for (absl::string_view transient :
       {"LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "NOAUTH", "WRONGPASS", "NOPERM"}) {
    if (HasErrorCode(error, transient)) return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

absl::Status FirstError(const std::vector<absl::StatusOr<Reply>>& replies) {
  for (const absl::StatusOr<Reply>& reply : replies) {
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) return reply->status();
  }
  return absl::OkStatus();
}

}  // namespace switchboard::broker::redis
