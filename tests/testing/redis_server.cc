#include "tests/testing/redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace switchboard::testing {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(10);
// Pause(): until every thread of the server has stopped.
constexpr absl::Duration kStopTimeout = absl::Seconds(10);

std::string Flatten(const redisReply& reply) {
  switch (reply.type) {
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_INTEGER:
      return absl::StrCat(reply.integer);
    case REDIS_REPLY_ARRAY: {
      std::vector<std::string> parts;
      for (size_t i = 0; i < reply.elements; ++i) parts.push_back(Flatten(*reply.element[i]));
      return absl::StrJoin(parts, "\n");
    }
    default:
      return std::string(reply.str, reply.len);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(Options options) {
  std::unique_ptr<RedisServer> server;
  const absl::Status started = StartOnPickedPorts("redis-server", [&]() -> absl::Status {
    std::string dir_template = "/tmp/switchboard-redis-XXXXXX";
    if (mkdtemp(dir_template.data()) == nullptr) {
      return absl::InternalError("cannot create a data directory for redis-server");
    }
    // Replacing a failed attempt's server removes its directory.
    server.reset(new RedisServer(options, PickUnusedPort(), std::move(dir_template)));
    return server->Launch();
  });
  if (!started.ok()) return started;
  return server;
}

RedisServer::~RedisServer() {
  Kill();
  std::error_code ignored;
  std::filesystem::remove_all(data_dir_, ignored);
}

std::string RedisServer::url() const { return absl::StrCat("redis://127.0.0.1:", port_); }

absl::Status RedisServer::Launch() {
  std::vector<std::string> argv = {FindOnPath("redis-server"),
                                   "--port",
                                   absl::StrCat(port_),
                                   "--bind",
                                   "127.0.0.1",
                                   "--dir",
                                   data_dir_,
                                   "--save",
                                   "",
                                   "--appendonly",
                                   options_.append_only ? "yes" : "no",
                                   "--appendfsync",
                                   options_.append_fsync,
                                   "--enable-debug-command",
                                   "local"};
  if (!options_.password.empty()) {
    argv.insert(argv.end(), {"--requirepass", options_.password});
  }
  if (!options_.acl_user.empty()) {
    argv.insert(argv.end(), {"--user", options_.acl_user, "on",
                             absl::StrCat(">", options_.acl_password), "~*", "&*", "+@all"});
  }
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(argv));
  if (!process.ok()) return process.status();
  process_.emplace(*std::move(process));
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (absl::Now() < deadline) {
    // Another test's redis-server on the port (picked by both) would answer
    // PING too, while ours exits with "Address already in use": the answer
    // must come from our process. INFO answers while the append-only file
    // loads; PING waits for it.
    absl::StatusOr<std::string> info = Command({"INFO", "server"});
    absl::StatusOr<std::string> pong = Command({"PING"});
    if (info.ok() &&
        absl::StrContains(*info, absl::StrCat("\nprocess_id:", process_->pid(), "\r")) &&
        pong.ok() && *pong == "PONG") {
      return absl::OkStatus();
    }
    if (process_->Wait(absl::Milliseconds(20)).has_value()) {
      return ExitedAtStartError("redis-server", process_->stdout_text());  // Its log.
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat("redis-server on port ", port_, " did not answer PING within ",
                   absl::FormatDuration(kStartTimeout), ":\n", LogTail(process_->stdout_text())));
}

void RedisServer::Kill() {
  if (!process_) return;
  process_->Signal(SIGKILL);
  process_->Wait(kStartTimeout);
  process_.reset();
}

void RedisServer::Pause() {
  if (process_) StopProcess(process_->pid(), kStopTimeout);
}

void RedisServer::Resume() {
  if (process_) process_->Signal(SIGCONT);
}

absl::Status RedisServer::Restart() { return Restart(options_); }

absl::Status RedisServer::Restart(Options options) {
  Kill();
  options_ = std::move(options);
  return RestartOnSamePorts("redis-server", [this] { return Launch(); });
}

absl::Status RedisServer::Run(const std::vector<std::string>& args,
                              const std::function<void(const redisReply& reply)>& read) const {
  const timeval timeout = absl::ToTimeval(absl::Seconds(5));
  redisContext* context = redisConnectWithTimeout("127.0.0.1", port_, timeout);
  if (context == nullptr || context->err != 0) {
    std::string error = context != nullptr ? context->errstr : "out of memory";
    if (context != nullptr) redisFree(context);
    return absl::UnavailableError(absl::StrCat("cannot connect to redis: ", error));
  }
  redisSetTimeout(context, timeout);
  auto run = [context](const std::vector<std::string>& command,
                       const std::function<void(const redisReply& reply)>& read) {
    std::vector<const char*> argv;
    std::vector<size_t> lengths;
    for (const std::string& arg : command) {
      argv.push_back(arg.data());
      lengths.push_back(arg.size());
    }
    auto* reply = static_cast<redisReply*>(
        redisCommandArgv(context, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    if (reply == nullptr) return absl::UnavailableError(context->errstr);
    read(*reply);
    freeReplyObject(reply);
    return absl::OkStatus();
  };
  const auto ignore = [](const redisReply&) {};
  absl::Status status;  // No AUTH needed.
  if (!options_.acl_user.empty()) {
    status = run({"AUTH", options_.acl_user, options_.acl_password}, ignore);
  } else if (!options_.password.empty()) {
    status = run({"AUTH", options_.password}, ignore);
  }
  if (status.ok()) status = run(args, read);
  redisFree(context);
  return status;
}

absl::StatusOr<std::string> RedisServer::Command(const std::vector<std::string>& args) const {
  std::string text;
  absl::Status status = Run(args, [&text](const redisReply& reply) { text = Flatten(reply); });
  if (!status.ok()) return status;
  return text;
}

absl::StatusOr<std::vector<std::string>> RedisServer::ClientNames() const {
  absl::StatusOr<std::string> list = Command({"CLIENT", "LIST"});
  if (!list.ok()) return list.status();
  std::vector<std::string> names;
  for (absl::string_view line : absl::StrSplit(*list, '\n', absl::SkipEmpty())) {
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, "name=")) names.emplace_back(field);
    }
  }
  return names;
}

absl::StatusOr<std::map<std::string, int>> RedisServer::ClientNameCounts() const {
  absl::StatusOr<std::vector<std::string>> names = ClientNames();
  if (!names.ok()) return names.status();
  std::map<std::string, int> counts;
  for (const std::string& name : *names) {
    if (!name.empty()) ++counts[name];
  }
  return counts;
}

absl::StatusOr<std::vector<RedisServer::StreamEntry>> RedisServer::StreamEntries(
    const std::string& key) const {
  std::vector<StreamEntry> entries;
  absl::Status status = Run({"XRANGE", key, "-", "+"}, [&entries](const redisReply& reply) {
    for (size_t i = 0; reply.type == REDIS_REPLY_ARRAY && i < reply.elements; ++i) {
      const redisReply& entry = *reply.element[i];  // [id, [field, value, ...]]
      if (entry.type != REDIS_REPLY_ARRAY || entry.elements != 2) continue;
      StreamEntry& out = entries.emplace_back();
      out.id = Flatten(*entry.element[0]);
      const redisReply& fields = *entry.element[1];
      for (size_t f = 0; f + 1 < fields.elements; f += 2) {
        out.fields[Flatten(*fields.element[f])] = Flatten(*fields.element[f + 1]);
      }
    }
  });
  if (!status.ok()) return status;
  return entries;
}

absl::StatusOr<int64_t> RedisServer::DeliveryCount(const std::string& key, const std::string& group,
                                                   const std::string& id) const {
  std::optional<int64_t> count;
  absl::Status status = Run({"XPENDING", key, group, id, id, "1"}, [&count](
                                                                       const redisReply& reply) {
    // [[id, consumer, idle, deliveries]], or empty when not pending.
    if (reply.type == REDIS_REPLY_ARRAY && reply.elements == 1 && reply.element[0]->elements == 4) {
      count = reply.element[0]->element[3]->integer;
    }
  });
  if (!status.ok()) return status;
  if (!count) return absl::NotFoundError(absl::StrCat(key, " ", id, " is not pending in ", group));
  return *count;
}

}  // namespace switchboard::testing
