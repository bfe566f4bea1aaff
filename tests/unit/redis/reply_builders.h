// Builders of Reply values for the Redis backend's unit tests: replies as
// hiredis would hand them over, written as nested calls.
//
//   Array({String("1-1"), Array({String("p"), String("data")})})
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "server/broker/redis/reply.h"

namespace switchboard::broker::redis::replies {

inline Reply String(std::string value) {
  Reply reply;
  reply.type = Reply::Type::kString;
  reply.str = std::move(value);
  return reply;
}

inline Reply Integer(int64_t value) {
  Reply reply;
  reply.type = Reply::Type::kInteger;
  reply.integer = value;
  return reply;
}

inline Reply Error(std::string message) {
  Reply reply;
  reply.type = Reply::Type::kError;
  reply.str = std::move(message);
  return reply;
}

inline Reply Array(std::vector<Reply> elements) {
  Reply reply;
  reply.type = Reply::Type::kArray;
  reply.elements = std::move(elements);
  return reply;
}

// A stream entry as XREADGROUP, XCLAIM and XAUTOCLAIM return it, with the
// payload field alone.
inline Reply Entry(std::string id, std::string payload) {
  return Array({String(std::move(id)), Array({String("p"), String(std::move(payload))})});
}

}  // namespace switchboard::broker::redis::replies
