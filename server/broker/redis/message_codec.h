// How the Redis backend stores messages in Redis.
//
// Durable messages are stream entries: field "p" holds the payload, "k" the
// ordering key if there is one, and one field "a:<name>" per attribute,
// readable with redis-cli; Redis assigns the
// id, whose millisecond part is the publish time. Ephemeral messages travel
// as one PUBLISH value in a compact length-prefixed binary form that carries
// the id and publish time too (Switchboard assigns those).
//
// Used by RedisBroker on its dispatcher. Pure functions, any thread.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "server/broker/broker.h"
#include "server/broker/redis/command.h"
#include "server/broker/redis/reply.h"

namespace switchboard::broker::redis {

// `XADD <topic> MAXLEN ~ <max_len> <id> p <payload> [k <ordering key>]
// a:<name> <value> ...`, where
// `id` is "*" (Redis picks) or "<ms>-*".
Command StreamAppendCommand(absl::string_view topic, uint64_t max_len, absl::string_view id,
                            const OutgoingMessage& message);

// "switchboard:dedup:<topic>/<dedup id>": the message id a dedup id was
// stored as, for the topic's dedup window.
std::string DedupKey(absl::string_view topic, absl::string_view dedup_id);

// A message with a dedup_id for DedupAppendCommand: the stream it goes to,
// and what its entry id needs to become its message id.
struct DedupAppend {
  absl::string_view stream;
  absl::string_view id_suffix;
  const OutgoingMessage* message;
};

// Appends each message of `appends` (each has a dedup_id) to its stream of
// `topic`, in order, as StreamAppendCommand does with id "*", unless its
// DedupKey() exists: one Lua script, so each check and its append are atomic
// across replicas, and a run of messages costs one script call. Replies with
// an array of message ids (entry id + id suffix), the first one's for a
// duplicate; each key lives `window`. Every message has at most
// kMaxAttributes attributes (Lua's unpack bounds a message's fields).
Command DedupAppendCommand(absl::string_view topic, uint64_t max_len, absl::Duration window,
                           absl::Span<const DedupAppend> appends);

// The message of one stream entry as XREADGROUP, XCLAIM and XAUTOCLAIM
// return it: [id, [field, value, ...]]. Nothing for an entry that no longer
// exists (nil fields) or is malformed.
std::optional<Message> MessageFromStreamEntry(const Reply& entry, absl::string_view topic);

// The publish time a stream id "<ms>-<seq>" carries.
std::optional<absl::Time> StreamIdTime(absl::string_view id);

// The PUBLISH value of an ephemeral message (its topic is the channel).
std::string EncodeEphemeral(const Message& message);

// Decodes a PUBLISH value from EncodeEphemeral(); INVALID_ARGUMENT when
// `value` is not one (another publisher on the channel).
absl::StatusOr<Message> DecodeEphemeral(absl::string_view topic, absl::string_view value);

}  // namespace switchboard::broker::redis
