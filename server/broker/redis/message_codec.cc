#include "server/broker/redis/message_codec.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace switchboard::broker::redis {
namespace {

constexpr char kPayloadField[] = "p";
constexpr char kAttributePrefix[] = "a:";
constexpr char kOrderingKeyField[] = "k";
constexpr char kEphemeralVersion = '\x01';

void AppendVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void AppendBytes(std::string& out, absl::string_view bytes) {
  AppendVarint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}

// Reads what AppendVarint / AppendBytes wrote, consuming `in`.
bool ReadVarint(absl::string_view& in, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && !in.empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in.front());
    in.remove_prefix(1);
    value |= uint64_t{byte & 0x7fu} << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

bool ReadBytes(absl::string_view& in, std::string& bytes) {
  uint64_t size = 0;
  if (!ReadVarint(in, size) || size > in.size()) return false;
  bytes.assign(in.data(), size);
  in.remove_prefix(size);
  return true;
}

// The field/value arguments of `message`'s stream entry.
size_t FieldArguments(const OutgoingMessage& message) {
  return 2 + (message.ordering_key.empty() ? 0 : 2) + 2 * message.attributes.size();
}

void AddFields(const OutgoingMessage& message, Command& command) {
  command.Add(kPayloadField).Add(message.payload);
  if (!message.ordering_key.empty()) command.Add(kOrderingKeyField).Add(message.ordering_key);
  for (const auto& [name, value] : message.attributes) {
    command.Add(absl::StrCat(kAttributePrefix, name)).Add(value);
  }
}

// Appends each message unless its dedup key exists, atomically: a dedup id
// is stored once across replicas. KEYS: per message, its stream and its dedup
// key. ARGV: the window in ms, the MAXLEN, then per message its id suffix,
// its field count and its fields. Replies with the message ids, the first
// one's for a duplicate (within the batch too).
constexpr char kDedupAppendScript[] =
    "local ids = {} "
    "local arg = 3 "
    "for i = 1, #KEYS, 2 do "
    "  local id = redis.call('get', KEYS[i + 1]) "
    "  local fields = tonumber(ARGV[arg + 1]) "
    "  if not id then "
    "    id = redis.call('xadd', KEYS[i], 'MAXLEN', '~', ARGV[2], '*', "
    "                    unpack(ARGV, arg + 2, arg + 1 + fields)) .. ARGV[arg] "
    "    redis.call('set', KEYS[i + 1], id, 'PX', ARGV[1]) "
    "  end "
    "  ids[#ids + 1] = id "
    "  arg = arg + 2 + fields "
    "end "
    "return ids";

}  // namespace

Command StreamAppendCommand(absl::string_view topic, uint64_t max_len, absl::string_view id,
                            const OutgoingMessage& message) {
  Command command(6 + FieldArguments(message));
  command.Add("XADD").Add(topic).Add("MAXLEN").Add("~").Add(static_cast<int64_t>(max_len));
  command.Add(id);
  AddFields(message, command);
  return command;
}

std::string DedupKey(absl::string_view topic, absl::string_view dedup_id) {
  return absl::StrCat("switchboard:dedup:", topic, "/", dedup_id);
}

Command DedupAppendCommand(absl::string_view topic, uint64_t max_len, absl::Duration window,
                           absl::Span<const DedupAppend> appends) {
  size_t arguments = 5;
  for (const DedupAppend& append : appends) {
    arguments += 4 + FieldArguments(*append.message);
  }
  Command command(arguments);
  command.Add("EVAL").Add(kDedupAppendScript).Add(static_cast<int64_t>(2 * appends.size()));
  for (const DedupAppend& append : appends) {
    command.Add(append.stream).Add(DedupKey(topic, append.message->dedup_id));
  }
  command.Add(std::max<int64_t>(1, absl::ToInt64Milliseconds(window)));
  command.Add(static_cast<int64_t>(max_len));
  for (const DedupAppend& append : appends) {
    command.Add(append.id_suffix).Add(static_cast<int64_t>(FieldArguments(*append.message)));
    AddFields(*append.message, command);
  }
  return command;
}

std::optional<absl::Time> StreamIdTime(absl::string_view id) {
  const size_t dash = id.find('-');
  int64_t ms = 0;
  if (dash == absl::string_view::npos || !absl::SimpleAtoi(id.substr(0, dash), &ms)) {
    return std::nullopt;
  }
  return absl::FromUnixMillis(ms);
}

std::optional<Message> MessageFromStreamEntry(const Reply& entry, absl::string_view topic) {
  if (!entry.is_array() || entry.elements.size() != 2 || !entry.elements[0].is_string() ||
      !entry.elements[1].is_array() || entry.elements[1].elements.size() % 2 != 0) {
    return std::nullopt;
  }
  Message message;
  message.id = entry.elements[0].str;
  message.topic = std::string(topic);
  std::optional<absl::Time> time = StreamIdTime(message.id);
  if (!time) return std::nullopt;
  message.publish_time = *time;
  const std::vector<Reply>& fields = entry.elements[1].elements;
  for (size_t i = 0; i < fields.size(); i += 2) {
    absl::string_view name = fields[i].str;
    if (name == kPayloadField) {
      message.payload = fields[i + 1].str;
    } else if (name == kOrderingKeyField) {
      message.ordering_key = fields[i + 1].str;
    } else if (absl::ConsumePrefix(&name, kAttributePrefix)) {
      message.attributes[std::string(name)] = fields[i + 1].str;
    }
  }
  return message;
}

std::string EncodeEphemeral(const Message& message) {
  std::string out;
  out.push_back(kEphemeralVersion);
  AppendBytes(out, message.id);
  AppendVarint(out, static_cast<uint64_t>(absl::ToUnixMicros(message.publish_time)));
  AppendBytes(out, message.payload);
  AppendVarint(out, message.attributes.size());
  for (const auto& [name, value] : message.attributes) {
    AppendBytes(out, name);
    AppendBytes(out, value);
  }
  return out;
}

absl::StatusOr<Message> DecodeEphemeral(absl::string_view topic, absl::string_view value) {
  const absl::Status malformed =
      absl::InvalidArgumentError(absl::StrCat("not a Switchboard message on channel ", topic));
  if (value.empty() || value.front() != kEphemeralVersion) return malformed;
  value.remove_prefix(1);
  Message message;
  message.topic = std::string(topic);
  uint64_t micros = 0;
  uint64_t attributes = 0;
  if (!ReadBytes(value, message.id) || !ReadVarint(value, micros) ||
      !ReadBytes(value, message.payload) || !ReadVarint(value, attributes)) {
    return malformed;
  }
  message.publish_time = absl::FromUnixMicros(static_cast<int64_t>(micros));
  for (uint64_t i = 0; i < attributes; ++i) {
    std::string name;
    std::string attribute;
    if (!ReadBytes(value, name) || !ReadBytes(value, attribute)) return malformed;
    message.attributes.emplace(std::move(name), std::move(attribute));
  }
  if (!value.empty()) return malformed;
  return message;
}

}  // namespace switchboard::broker::redis
