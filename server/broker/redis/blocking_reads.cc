#include "server/broker/redis/blocking_reads.h"

#include <algorithm>
#include <utility>

#include "server/broker/redis/stream_commands.h"
#include "server/broker/redis/stream_groups.h"
#include "server/common/log.h"

namespace switchboard::broker::redis {

BlockingReads::BlockingReads(event::Dispatcher& dispatcher,
                             event::Anchor<ConnectionSet> connections, BlockingReadOptions options,
                             CommandLanes& lanes, StreamGroups& groups)
    : connections_(std::move(connections)),
      options_(options),
      lanes_(lanes),
      groups_(groups),
      self_(dispatcher, this) {}

BlockingReads::~BlockingReads() { self_.Clear(); }

void BlockingReads::AddTopic(TopicGroup& topic_group) {
  for (GroupStream& stream : topic_group.streams) {
    reads_[topic_group.group].streams.push_back(&stream);
  }
}

void BlockingReads::EnsureReader(const std::string& name) {
  GroupReads& group = reads_[name];
  if (group.reader != kNoReader) return;
  size_t chosen = kNoReader;
  for (size_t i = 0; i < readers_.size() && chosen == kNoReader; ++i) {
    if (readers_[i].groups.empty()) chosen = i;
  }
  if (chosen == kNoReader &&
      readers_.size() < std::max<uint32_t>(1, options_.max_reader_connections)) {
    readers_.emplace_back();
    chosen = readers_.size() - 1;
  }
  if (chosen == kNoReader) {
    chosen = 0;
    for (size_t i = 1; i < readers_.size(); ++i) {
      if (readers_[i].groups.size() < readers_[chosen].groups.size()) chosen = i;
    }
  }
  group.reader = chosen;
  readers_[chosen].groups.push_back(name);
  connections_.Run([chosen](ConnectionSet* connections) {
    if (connections != nullptr) connections->OpenReader(chosen);
  });
}

void BlockingReads::ReleaseReaderIfIdle(const std::string& name) {
  GroupReads& group = reads_[name];
  if (group.reader == kNoReader) return;
  for (const GroupStream* stream : group.streams) {
    if (stream->group.core.has_sessions()) return;
  }
  if (group.blocking) {
    Unblock(group);  // Released when the read returns.
    return;
  }
  ReaderSlot& slot = readers_[group.reader];
  slot.groups.erase(std::find(slot.groups.begin(), slot.groups.end(), name));
  slot.waiting.erase(std::remove(slot.waiting.begin(), slot.waiting.end(), name),
                     slot.waiting.end());
  const size_t index = group.reader;
  group.reader = kNoReader;
  if (!slot.groups.empty()) return;
  // The reader lingers (ConnectionSet), and reports itself down once closed.
  connections_.Run([index](ConnectionSet* connections) {
    if (connections != nullptr) connections->ReleaseReader(index);
  });
}

void BlockingReads::Unblock(GroupReads& group) {
  if (group.unblock_requested) return;
  group.unblock_requested = true;
  connections_.Run([index = group.reader](ConnectionSet* connections) {
    if (connections != nullptr) connections->Unblock(index);
  });
}

void BlockingReads::EnsureBlocking(const std::string& name) {
  if (stopped_) return;
  GroupReads& group = reads_[name];
  if (group.reader == kNoReader) return;
  std::vector<GroupStream*> wanted;
  for (GroupStream* stream : group.streams) {
    const bool covered = std::find(group.blocking_streams.begin(), group.blocking_streams.end(),
                                   stream) != group.blocking_streams.end();
    if (stream->readable() && stream->existence == GroupStream::Existence::kReady &&
        stream->drained && (covered || stream->group.core.FreeCredits() > 0)) {
      wanted.push_back(stream);
    }
  }
  if (group.blocking) {
    // A stream the pending read does not cover needs a new read.
    for (GroupStream* stream : wanted) {
      if (std::find(group.blocking_streams.begin(), group.blocking_streams.end(), stream) ==
          group.blocking_streams.end()) {
        Unblock(group);
        break;
      }
    }
    return;
  }
  if (wanted.empty()) return;
  ReaderSlot& slot = readers_[group.reader];
  if (!slot.ready || !lanes_.shared_ready()) return;
  if (!slot.reading.empty()) {
    if (std::find(slot.waiting.begin(), slot.waiting.end(), name) == slot.waiting.end()) {
      slot.waiting.push_back(name);
    }
    return;
  }
  uint32_t count = std::numeric_limits<uint32_t>::max();
  std::vector<absl::string_view> keys;
  for (GroupStream* stream : wanted) {
    count = std::min(count, stream->group.core.FreeCredits());
    keys.push_back(stream->key);
  }
  const absl::Duration block =
      options_.block_time / static_cast<int64_t>(std::max<size_t>(1, slot.groups.size()));
  // The read holds no credits: claims and reclaims may use them meanwhile,
  // and what it brings beyond them waits in the group (at most `count` per
  // topic).
  group.blocking = true;
  group.blocking_streams = wanted;
  group.blocking_count = count;
  slot.reading = name;
  connections_.Run([index = group.reader,
                    command = ReadGroupCommand(name, groups_.consumer(), keys, count, block),
                    timeout = block + options_.command_timeout, self = self_,
                    name](ConnectionSet* connections) {
    auto back = [self, name](absl::StatusOr<Reply> reply) {
      self.Run([name, reply = std::move(reply)](BlockingReads* reads) mutable {
        if (reads != nullptr) reads->OnBlockingRead(name, std::move(reply));
      });
    };
    if (connections == nullptr) return;
    connections->BlockingRead(index, command, timeout, std::move(back));
  });
}

void BlockingReads::OnBlockingRead(const std::string& name, absl::StatusOr<Reply> reply) {
  GroupReads& group = reads_[name];
  ReaderSlot& slot = readers_[group.reader];
  const std::vector<GroupStream*> streams = std::move(group.blocking_streams);
  group.blocking_streams.clear();
  group.blocking = false;
  group.unblock_requested = false;
  slot.reading.clear();
  if (IsNoGroup(reply)) {
    for (GroupStream* stream : streams) groups_.OnGroupLost(*stream);
  } else if (reply.ok() && reply->is_error()) {
    SB_LOG(kWarning, "blocking read of group '", name, "' failed: ", reply->str);
    for (GroupStream* stream : streams) stream->existence = GroupStream::Existence::kFailed;
  } else {
    // A stream that filled the read's COUNT may have more waiting behind:
    // probe it before blocking again.
    const std::vector<size_t> taken = groups_.TakeReadEntries(reply, streams);
    for (size_t i = 0; i < streams.size(); ++i) {
      streams[i]->drained = taken[i] < group.blocking_count;
    }
  }
  ReleaseReaderIfIdle(name);
  // Another group's turn on a shared reader, then this group's next read.
  if (!slot.waiting.empty()) {
    std::string next = std::move(slot.waiting.front());
    slot.waiting.pop_front();
    EnsureBlocking(next);
  }
  TopicGroup* kicked = nullptr;
  for (GroupStream* stream : streams) {
    if (&stream->group == kicked) continue;
    kicked = &stream->group;
    groups_.Kick(stream->group);
  }
  if (slot.barrier_returned) {
    std::function<void()> returned = std::move(slot.barrier_returned);
    slot.barrier_returned = nullptr;
    returned();
  }
}

void BlockingReads::OnReaderState(size_t index, bool ready) {
  if (index >= readers_.size()) return;
  readers_[index].ready = ready;
  if (!ready) return;
  const std::vector<std::string> groups = readers_[index].groups;
  for (const std::string& name : groups) EnsureBlocking(name);
}

size_t BlockingReads::InterruptForBarrier(const std::function<void()>& returned) {
  size_t interrupted = 0;
  for (size_t index = 0; index < readers_.size(); ++index) {
    ReaderSlot& slot = readers_[index];
    if (slot.reading.empty() || slot.barrier_returned) continue;
    slot.barrier_returned = returned;
    ++interrupted;
    connections_.Run([index](ConnectionSet* connections) {
      if (connections != nullptr) connections->Unblock(index);
    });
  }
  return interrupted;
}

}  // namespace switchboard::broker::redis
