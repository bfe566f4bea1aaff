// RedisServer: a real redis-server for tests, on a loopback port picked at
// run time, in a data directory of its own.
//
// Used by the Redis backend's integration and conformance tests. Starts
// `redis-server` from PATH with persistence off by default (`--save ""
// --appendonly no`); fault tests turn on the append-only file, Kill() the
// server and Restart() it on the same port and data, or Pause() it
// (SIGSTOP) to play a Redis that hangs. `Command()` is a small
// blocking client for assertions (CLIENT LIST, XLEN, ...), with helpers for
// what tests read most: stream entries and delivery counts. The destructor
// kills the server and removes its directory.
//
// Not thread-safe: use one from the test's main thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/testing/subprocess.h"

struct redisReply;

namespace switchboard::testing {

class RedisServer {
 public:
  struct Options {
    // Persist every write to an append-only file, fsynced as configured
    // ("always", "everysec", "no"), so data survives Kill() and Restart().
    bool append_only = false;
    std::string append_fsync = "everysec";
    // AUTH for the default user (`requirepass`).
    std::string password;
    // An extra ACL user with every permission, `acl_user` / `acl_password`.
    std::string acl_user;
    std::string acl_password;
  };

  // Starts a server on a picked port and waits until it answers PING. A
  // server that could not bind it (taken since it was picked) is started
  // again on another port (StartOnPickedPorts).
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(Options options);
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start() { return Start(Options()); }

  ~RedisServer();

  int port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }
  // "redis://127.0.0.1:<port>".
  std::string url() const;

  // SIGKILLs the server and waits for it to exit (a paused one too).
  void Kill();

  // SIGSTOPs the server and returns once it has stopped: it keeps its
  // connections open but answers nothing, as a Redis that hangs (or a
  // network that drops every packet) would, until Resume() (SIGCONT) or
  // Kill(). Command() on a paused server blocks for its 5 s timeout: do not
  // use it meanwhile.
  void Pause();
  void Resume();

  // Starts the server again on the same port and data directory, and waits
  // until it answers PING (after loading its append-only file). A port
  // taken since Kill() is tried again for a while (RestartOnSamePorts).
  absl::Status Restart();
  // The same, with `options` from now on (a password set or dropped:
  // Command() then authenticates as they say).
  absl::Status Restart(Options options);

  // Runs one command on a fresh blocking connection (authenticated like the
  // server requires) and returns the reply flattened to text: strings,
  // statuses and integers as they are, errors as "ERR ...", nil as "(nil)",
  // arrays as their elements joined by "\n".
  absl::StatusOr<std::string> Command(const std::vector<std::string>& args) const;

  // The names of the connected clients (CLIENT LIST), one per connection;
  // empty for a connection without a name (such as the one asking).
  absl::StatusOr<std::vector<std::string>> ClientNames() const;

  // How many connections carry each name (connections without one are not
  // counted).
  absl::StatusOr<std::map<std::string, int>> ClientNameCounts() const;

  // One entry of a stream, as XRANGE returns it.
  struct StreamEntry {
    std::string id;
    std::map<std::string, std::string> fields;
  };

  // Every entry of stream `key`, in stream order (XRANGE key - +).
  absl::StatusOr<std::vector<StreamEntry>> StreamEntries(const std::string& key) const;

  // Redis' delivery count of entry `id` of stream `key` in `group`
  // (XPENDING); NOT_FOUND when the entry is not pending there.
  absl::StatusOr<int64_t> DeliveryCount(const std::string& key, const std::string& group,
                                        const std::string& id) const;

 private:
  RedisServer(Options options, int port, std::string data_dir)
      : options_(std::move(options)), port_(port), data_dir_(std::move(data_dir)) {}

  absl::Status Launch();

  // Runs one command on a fresh blocking connection (authenticated like the
  // server requires) and hands its reply to `read`.
  absl::Status Run(const std::vector<std::string>& args,
                   const std::function<void(const redisReply& reply)>& read) const;

  Options options_;  // Replaced by Restart(Options).
  const int port_;
  const std::string data_dir_;
  std::optional<Subprocess> process_;
};

}  // namespace switchboard::testing
