#include "tests/testing/rabbitmq_server.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace switchboard::testing {
namespace {

// Debian's scripts that run as the calling user; /usr/sbin/rabbitmq-server
// and /usr/sbin/rabbitmqctl are wrappers that switch to the `rabbitmq`
// system user and its node.
constexpr char kDebianScripts[] = "/usr/lib/rabbitmq/bin/";
// The environment variable that marks every process of one node (beam.smp
// and what it spawns inherit it), so that Kill() finds them all, whatever
// their parent or session has become since.
constexpr char kMarker[] = "SWITCHBOARD_RABBITMQ_NODE";
constexpr absl::Duration kStopTimeout = absl::Seconds(30);
constexpr absl::Duration kKillTimeout = absl::Seconds(10);
constexpr absl::Duration kCtlTimeout = absl::Seconds(60);
// One AMQP connect or handshake during the readiness poll.
constexpr absl::Duration kLoginTimeout = absl::Seconds(5);

// `name` from the Debian scripts' directory, else from PATH.
std::string FindScript(absl::string_view name) {
  std::string debian = absl::StrCat(kDebianScripts, name);
  if (access(debian.c_str(), X_OK) == 0) return debian;
  return FindOnPath(name);
}

absl::Status WriteFile(const std::string& path, absl::string_view text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// The status of a node that exited while starting: ABORTED when it says a
// port was taken (the AMQP listener's or the distribution's), which
// StartOnPickedPorts and RestartOnSamePorts get past; INTERNAL otherwise.
absl::Status NodeExitedError(absl::string_view output) {
  if (absl::StrContains(output, "eaddrinuse") ||
      absl::StrContains(output, "dist_port_already_used")) {
    return absl::AbortedError(absl::StrCat("rabbitmq-server exited at start:\n", LogTail(output)));
  }
  return ExitedAtStartError("rabbitmq-server", output);
}

// The live (not zombie) processes whose environment holds `marker`
// ("NAME=value"), from /proc.
std::vector<pid_t> ProcessesWithEnv(const std::string& marker) {
  std::vector<pid_t> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (const dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid) || pid <= 0) continue;
    // "pid (comm) state ...": comm may hold spaces and parentheses.
    const std::string stat = ReadTextFile(absl::StrCat("/proc/", pid, "/stat"));
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z') {
      continue;
    }
    // Unreadable for other users' processes: those are not ours anyway.
    const std::string environ = ReadTextFile(absl::StrCat("/proc/", pid, "/environ"));
    for (absl::string_view variable : absl::StrSplit(environ, '\0')) {
      if (variable == marker) {
        pids.push_back(pid);
        break;
      }
    }
  }
  closedir(proc);
  return pids;
}

// A fresh Erlang cookie: 20 capital letters.
std::string RandomCookie() {
  std::random_device random;
  std::uniform_int_distribution<int> letter('A', 'Z');
  std::string cookie;
  for (int i = 0; i < 20; ++i) cookie.push_back(static_cast<char>(letter(random)));
  return cookie;
}

// Whether something listens on 127.0.0.1:`port`.
bool Listening(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool connected =
      fd >= 0 && connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  if (fd >= 0) close(fd);
  return connected;
}

std::string AmqpBytes(amqp_bytes_t bytes) {
  return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

}  // namespace

RabbitMqServer::RabbitMqServer(std::string dir, std::string node_name, int port, int dist_port,
                               int epmd_port, std::optional<TlsListener> tls, int tls_port)
    : dir_(std::move(dir)),
      node_name_(std::move(node_name)),
      port_(port),
      dist_port_(dist_port),
      epmd_port_(epmd_port),
      tls_(std::move(tls)),
      tls_port_(tls_port) {}

absl::StatusOr<std::unique_ptr<RabbitMqServer>> RabbitMqServer::Start(
    std::optional<TlsListener> tls) {
  static std::atomic<int> nodes_started{0};
  std::unique_ptr<RabbitMqServer> server;
  const absl::Status started = StartOnPickedPorts("rabbitmq-server", [&]() -> absl::Status {
    std::string dir = "/tmp/switchboard-rabbitmq-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) {
      return absl::InternalError("cannot create a directory for rabbitmq-server");
    }
    std::string node_name = absl::StrCat("sbtest-", getpid(), "-", ++nodes_started, "@localhost");
    // Replacing a failed attempt's server kills it and removes its directory.
    const int port = PickUnusedPort();
    const int dist_port = PickUnusedPort();
    const int epmd_port = PickUnusedPort();
    server.reset(new RabbitMqServer(std::move(dir), std::move(node_name), port, dist_port,
                                    epmd_port, tls, tls ? PickUnusedPort() : 0));
    if (absl::Status written = server->WriteFiles(); !written.ok()) return written;
    return server->Launch();
  });
  if (!started.ok()) return started;
  return server;
}

RabbitMqServer::~RabbitMqServer() {
  Kill();
  epmd_.reset();  // Kills and reaps it.
  // An epmd that rabbitmqctl or the node started as a daemon (they do when
  // they find none) carries the marker too.
  KillNodeProcesses(std::nullopt);
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string RabbitMqServer::url() const {
  return absl::StrCat("amqp://guest:guest@127.0.0.1:", port_, "/");
}

std::string RabbitMqServer::log() const {
  return ReadTextFile(absl::StrCat(dir_, "/log/", node_name_, ".log"));
}

absl::Status RabbitMqServer::WriteFiles() const {
  // rabbitmq.conf: the defaults, which let guest log in on loopback only.
  // The AMQP listener comes from RABBITMQ_NODE_IP_ADDRESS/_PORT.
  std::string config = "log.file.level = info\n";
  if (tls_) {
    absl::StrAppend(
        &config, "listeners.ssl.default = 127.0.0.1:", tls_port_, "\n",
        "ssl_options.cacertfile = ", tls_->ca_file, "\n",
        "ssl_options.certfile = ", tls_->cert_file, "\n", "ssl_options.keyfile = ", tls_->key_file,
        "\n", "ssl_options.verify = verify_none\n", "ssl_options.fail_if_no_peer_cert = false\n");
  }
  const std::string files[][2] = {
      {"rabbitmq.conf", config},
      {"enabled_plugins", "[].\n"},
      // Read instead of /etc/rabbitmq/rabbitmq-env.conf.
      {"rabbitmq-env.conf", ""},
  };
  for (const auto& [name, text] : files) {
    if (absl::Status written = WriteFile(absl::StrCat(dir_, "/", name), text); !written.ok()) {
      return written;
    }
  }
  // Erlang refuses a cookie file that others can read.
  const std::string cookie_path = absl::StrCat(dir_, "/.erlang.cookie");
  const int fd = open(cookie_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", cookie_path));
  const std::string cookie = RandomCookie();
  const bool written =
      write(fd, cookie.data(), cookie.size()) == static_cast<ssize_t>(cookie.size());
  close(fd);
  if (!written) return absl::InternalError(absl::StrCat("cannot write ", cookie_path));
  return absl::OkStatus();
}

std::vector<std::string> RabbitMqServer::EnvArgv() const {
  std::vector<std::string> argv = {"/usr/bin/env", "-i"};
  const auto set = [&argv](absl::string_view name, absl::string_view value) {
    argv.push_back(absl::StrCat(name, "=", value));
  };
  const char* path = getenv("PATH");
  set("PATH", path != nullptr ? path : "/usr/bin:/bin");
  // Elixir (rabbitmqctl) warns without a UTF-8 locale.
  set("LANG", "C.UTF-8");
  set("LC_ALL", "C.UTF-8");
  // .erlang.cookie is read from HOME.
  set("HOME", dir_);
  set("ERL_EPMD_PORT", absl::StrCat(epmd_port_));
  // Not in the test's working directory.
  set("ERL_CRASH_DUMP", absl::StrCat(dir_, "/erl_crash.dump"));
  set("RABBITMQ_NODENAME", node_name_);
  set("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1");
  set("RABBITMQ_NODE_PORT", absl::StrCat(port_));
  set("RABBITMQ_DIST_PORT", absl::StrCat(dist_port_));
  set("RABBITMQ_MNESIA_BASE", absl::StrCat(dir_, "/mnesia"));
  set("RABBITMQ_LOG_BASE", absl::StrCat(dir_, "/log"));
  set("RABBITMQ_CONFIG_FILE", absl::StrCat(dir_, "/rabbitmq.conf"));
  set("RABBITMQ_ADVANCED_CONFIG_FILE", absl::StrCat(dir_, "/advanced.config"));
  set("RABBITMQ_CONF_ENV_FILE", absl::StrCat(dir_, "/rabbitmq-env.conf"));
  set("RABBITMQ_ENABLED_PLUGINS_FILE", absl::StrCat(dir_, "/enabled_plugins"));
  // The VM's and rabbitmqctl's distribution listen on loopback only, and
  // neither starts an epmd of its own (one would outlive the node).
  const std::string erl_args = "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}";
  set("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", erl_args);
  set("RABBITMQ_CTL_ERL_ARGS", erl_args);
  // rabbitmqctl's own distribution port: any free one (the default range,
  // 35672-35682, is shared by every rabbitmqctl on the machine).
  set("RABBITMQ_CTL_DIST_PORT_MIN", "0");
  set("RABBITMQ_CTL_DIST_PORT_MAX", "0");
  set(kMarker, node_name_);
  return argv;
}

absl::Status RabbitMqServer::LaunchEpmd() {
  if (epmd_.has_value() && !epmd_->Wait(absl::ZeroDuration()).has_value()) return absl::OkStatus();
  epmd_.reset();
  const char* path = getenv("PATH");
  // Its own environment, without the node's marker: epmd outlives Kill().
  // SIGKILL when this thread dies without its destructor (a crashed test).
  absl::StatusOr<Subprocess> epmd = Subprocess::Start(
      {"/usr/bin/env", "-i", absl::StrCat("PATH=", path != nullptr ? path : "/usr/bin:/bin"),
       "setpriv", "--pdeathsig", "KILL", "epmd", "-port", absl::StrCat(epmd_port_), "-address",
       "127.0.0.1"});
  if (!epmd.ok()) return epmd.status();
  epmd_.emplace(*std::move(epmd));
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    // epmd that finds its port taken exits at once, with status 0 and
    // nothing said; one that listens answers connections.
    if (epmd_->Wait(absl::Milliseconds(10)).has_value()) {
      const std::string output = epmd_->stdout_text() + epmd_->stderr_text();
      epmd_.reset();
      return absl::AbortedError(
          absl::StrCat("epmd exited at start (port ", epmd_port_, " taken?): ", LogTail(output)));
    }
    // Ours, unless it is about to exit (checked again once the node is up).
    if (Listening(epmd_port_)) return absl::OkStatus();
  }
  return absl::DeadlineExceededError(
      absl::StrCat("epmd did not listen on port ", epmd_port_, " within 5s"));
}

absl::Status RabbitMqServer::Launch() {
  if (absl::Status epmd = LaunchEpmd(); !epmd.ok()) return epmd;
  std::vector<std::string> argv = EnvArgv();
  // The script traps SIGTERM and stops the node gracefully: sent when this
  // thread dies without the destructor (a crashed test), so no node outlives
  // its test.
  argv.insert(argv.end(), {"setpriv", "--pdeathsig", "TERM", FindScript("rabbitmq-server")});
  const absl::Time start = absl::Now();
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(argv));
  if (!process.ok()) return process.status();
  process_.emplace(*std::move(process));
  const absl::Time deadline = start + kStartTimeout;
  while (absl::Now() < deadline) {
    if (TryLogin().ok()) {
      startup_time_ = absl::Now() - start;
      if (epmd_->Wait(absl::ZeroDuration()).has_value()) {
        Kill();  // Registered with someone else's epmd, on our picked port.
        return absl::AbortedError(absl::StrCat("epmd exited: port ", epmd_port_, " taken"));
      }
      std::fprintf(stderr, "RabbitMqServer: %s accepts AMQP logins on 127.0.0.1:%d after %s\n",
                   node_name_.c_str(), port_, absl::FormatDuration(startup_time_).c_str());
      return absl::OkStatus();
    }
    // Connections are refused at once until the listener starts, late in the
    // boot; then the login is quick. Polls every 100 ms.
    if (process_->Wait(absl::Milliseconds(100)).has_value()) {
      const std::string output =
          absl::StrCat(process_->stdout_text(), process_->stderr_text(), "\n", LogTail(log()));
      Kill();
      return NodeExitedError(output);
    }
  }
  const std::string output = absl::StrCat(process_->stdout_text(), "\n", LogTail(log()));
  Kill();
  return absl::DeadlineExceededError(
      absl::StrCat("rabbitmq-server ", node_name_, " accepted no AMQP login on port ", port_,
                   " within ", absl::FormatDuration(kStartTimeout), ":\n", LogTail(output, 40)));
}

absl::Status RabbitMqServer::TryLogin() const {
  amqp_connection_state_t connection = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(connection);
  if (socket == nullptr) {
    amqp_destroy_connection(connection);
    return absl::InternalError("cannot create an AMQP socket");
  }
  timeval timeout = absl::ToTimeval(kLoginTimeout);
  const int opened = amqp_socket_open_noblock(socket, "127.0.0.1", port_, &timeout);
  if (opened != AMQP_STATUS_OK) {
    amqp_destroy_connection(connection);
    return absl::UnavailableError(amqp_error_string2(opened));
  }
  amqp_set_handshake_timeout(connection, &timeout);
  amqp_set_rpc_timeout(connection, &timeout);
  const amqp_rpc_reply_t login = amqp_login(connection, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                                            AMQP_SASL_METHOD_PLAIN, "guest", "guest");
  absl::Status status;
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    status = absl::UnavailableError("AMQP login failed");
  } else {
    // Another test's broker on this port (picked by both) must not pass for
    // ours: cluster_name defaults to "<node name>@<this host's name>".
    const absl::string_view name_part(node_name_.data(), node_name_.find('@'));
    std::string cluster_name;
    const amqp_table_t* properties = amqp_get_server_properties(connection);
    for (int i = 0; properties != nullptr && i < properties->num_entries; ++i) {
      const amqp_table_entry_t& entry = properties->entries[i];
      if (AmqpBytes(entry.key) == "cluster_name" &&
          (entry.value.kind == AMQP_FIELD_KIND_UTF8 || entry.value.kind == AMQP_FIELD_KIND_BYTES)) {
        cluster_name = AmqpBytes(entry.value.value.bytes);
      }
    }
    if (!absl::StartsWith(cluster_name, absl::StrCat(name_part, "@"))) {
      status = absl::FailedPreconditionError(
          absl::StrCat("port ", port_, " is another broker's: ", cluster_name));
    }
    amqp_connection_close(connection, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(connection);
  return status;
}

void RabbitMqServer::KillNodeProcesses(std::optional<pid_t> spare) {
  const std::string marker = absl::StrCat(kMarker, "=", node_name_);
  const absl::Time deadline = absl::Now() + kKillTimeout;
  while (true) {
    std::vector<pid_t> pids = ProcessesWithEnv(marker);
    if (spare) pids.erase(std::remove(pids.begin(), pids.end(), *spare), pids.end());
    if (pids.empty() || absl::Now() >= deadline) return;
    for (pid_t pid : pids) kill(pid, SIGKILL);
    absl::SleepFor(absl::Milliseconds(10));
  }
}

void RabbitMqServer::Kill() {
  if (!process_) return;
  // beam.smp and its helpers first: the script, still waiting for beam.smp,
  // reaps it, so no zombie beam.smp is left to init.
  KillNodeProcesses(process_->pid());
  if (!process_->Wait(kKillTimeout).has_value()) {
    process_->Signal(SIGKILL);
    process_->Wait(kKillTimeout);
  }
  process_.reset();
  KillNodeProcesses(std::nullopt);  // Anything started meanwhile.
}

absl::Status RabbitMqServer::Stop() {
  if (!process_) return absl::OkStatus();
  absl::StatusOr<std::string> stopped = Ctl({"stop"});
  absl::Status status;
  if (!stopped.ok()) {
    status = stopped.status();
  } else if (!process_->Wait(kStopTimeout).has_value()) {
    status = absl::DeadlineExceededError(absl::StrCat("rabbitmq-server ", node_name_, " still ran ",
                                                      absl::FormatDuration(kStopTimeout),
                                                      " after rabbitmqctl stop; killed"));
  }
  Kill();  // What is left, if anything.
  return status;
}

absl::Status RabbitMqServer::SyncMetadata() const {
  // ra_directory_reverse: the quorum_queues Ra system's name registry
  // (ra_system:fetch/1 names it directory_rev); latest_log: Mnesia's
  // transaction log. disk_log:sync/1 writes its cache and fsyncs.
  constexpr char kSync[] = "ok = dets:sync(ra_directory_reverse), disk_log:sync(latest_log).";
  absl::StatusOr<std::string> synced = Ctl({"eval", kSync});
  if (!synced.ok()) return synced.status();
  if (!absl::StartsWith(*synced, "ok")) {
    return absl::InternalError(absl::StrCat(kSync, " said ", *synced));
  }
  return absl::OkStatus();
}

absl::Status RabbitMqServer::Restart() {
  Kill();
  return RestartOnSamePorts("rabbitmq-server", [this] { return Launch(); });
}

absl::StatusOr<std::string> RabbitMqServer::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = EnvArgv();
  // SIGKILL if this thread dies meanwhile (a crashed test): a rabbitmqctl
  // that finds epmd gone (killed along) starts a daemon epmd of its own.
  argv.insert(argv.end(),
              {"setpriv", "--pdeathsig", "KILL", FindScript("rabbitmqctl"), "-n", node_name_});
  argv.insert(argv.end(), args.begin(), args.end());
  RunResult result = Run(std::move(argv), std::nullopt, kCtlTimeout);
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat("rabbitmqctl ", absl::StrJoin(args, " "), " exited ",
                                            result.exit_code, ": ", result.stderr_text,
                                            result.stdout_text));
  }
  return result.stdout_text;
}

}  // namespace switchboard::testing
