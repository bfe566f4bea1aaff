// Small views of deliveries and messages that the conformance tests
// compare: ids, attempts, topics, slices, and Redis-style id order.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/broker/broker.h"

namespace switchboard::testing {

inline std::vector<std::string> MessageIds(const std::vector<broker::Delivery>& deliveries) {
  std::vector<std::string> ids;
  for (const broker::Delivery& delivery : deliveries) ids.push_back(delivery.message.id);
  return ids;
}

inline std::vector<std::string> MessageIds(const std::vector<broker::Message>& messages) {
  std::vector<std::string> ids;
  for (const broker::Message& message : messages) ids.push_back(message.id);
  return ids;
}

inline std::vector<uint32_t> Attempts(const std::vector<broker::Delivery>& deliveries) {
  std::vector<uint32_t> attempts;
  for (const broker::Delivery& delivery : deliveries) attempts.push_back(delivery.delivery_attempt);
  return attempts;
}

inline std::vector<std::string> Topics(const std::vector<broker::Message>& messages) {
  std::vector<std::string> topics;
  for (const broker::Message& message : messages) topics.push_back(message.topic);
  return topics;
}

inline std::vector<broker::Delivery> Slice(const std::vector<broker::Delivery>& deliveries,
                                           size_t from, size_t to) {
  return std::vector<broker::Delivery>(deliveries.begin() + from, deliveries.begin() + to);
}

// Orders Redis-style ids "<ms>-<seq>" numerically.
inline bool IdLess(const std::string& a, const std::string& b) {
  auto parse = [](const std::string& id) {
    std::pair<std::string, std::string> parts = absl::StrSplit(id, '-');
    std::pair<uint64_t, uint64_t> value{0, 0};
    EXPECT_TRUE(absl::SimpleAtoi(parts.first, &value.first) &&
                absl::SimpleAtoi(parts.second, &value.second))
        << id;
    return value;
  };
  return parse(a) < parse(b);
}

inline broker::LeaseUpdate::Extension Extend(const broker::Delivery& delivery,
                                             absl::Duration deadline) {
  return broker::LeaseUpdate::Extension{delivery.ack_id, deadline};
}

}  // namespace switchboard::testing
