// What Redis (or anything answering on its port) sends back, on arbitrary
// bytes: hiredis' RESP reader, the copy into Reply, and every reader of the
// Redis backend's reply shapes (stream entries, claims, pending counts, lag,
// partition takes) and the ephemeral message codec. None may crash, whatever
// the shape.
#include <hiredis/hiredis.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/broker/redis/message_codec.h"
#include "server/broker/redis/partitions.h"
#include "server/broker/redis/reply.h"
#include "server/broker/redis/stream_commands.h"

namespace redis = switchboard::broker::redis;

namespace {

void ReadEveryShape(const redis::Reply& reply) {
  redis::ReadGroupEntries(reply);
  redis::ClaimedIds(reply);
  redis::AutoClaimedEntries(reply, "jobs");
  redis::DelayEnd(reply);
  redis::PendingDeliveryCount(reply);
  redis::GroupLag(reply, "g");
  redis::MessageFromStreamEntry(reply, "jobs");
  redis::TakenPartitions(reply, {0, 1, 2});
  redis::Renewed(reply);
  redis::IsNoGroup(reply);
  redis::IsStaleIdError(reply);
  reply.status().IgnoreError();
  if (reply.is_string()) redis::DecodeEphemeral("events", reply.str).status().IgnoreError();
}

}  // namespace

// hiredis 0.14 (Debian's) trusts a multibulk's element count and callocs
// that many pointers at once (no maxelements before hiredis 1.0): "*888888881"
// asks for 7 GB. Switchboard trusts its own Redis for that; the fuzzer skips
// such counts rather than report the library's allocation as ours.
static bool HasHugeMultibulk(absl::string_view bytes) {
  constexpr uint64_t kMaxElements = uint64_t{1} << 20;
  for (size_t at = bytes.find('*'); at != absl::string_view::npos; at = bytes.find('*', at + 1)) {
    uint64_t count = 0;
    for (size_t i = at + 1; i < bytes.size() && bytes[i] >= '0' && bytes[i] <= '9'; ++i) {
      count = count * 10 + static_cast<uint64_t>(bytes[i] - '0');
      if (count > kMaxElements) return true;
    }
  }
  return false;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  redis::DecodeEphemeral("events", bytes).status().IgnoreError();
  if (HasHugeMultibulk(bytes)) return 0;
  redisReader* reader = redisReaderCreate();
  if (redisReaderFeed(reader, bytes.data(), bytes.size()) == REDIS_OK) {
    void* parsed = nullptr;
    while (redisReaderGetReply(reader, &parsed) == REDIS_OK && parsed != nullptr) {
      ReadEveryShape(redis::Reply::From(*static_cast<redisReply*>(parsed)));
      freeReplyObject(parsed);
      parsed = nullptr;
    }
  }
  redisReaderFree(reader);
  return 0;
}
