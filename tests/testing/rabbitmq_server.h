// RabbitMqServer: a real RabbitMQ node for tests (Debian's `rabbitmq-server`,
// 3.10), run as the current user on loopback ports picked at run time, with
// everything it writes in a temporary directory of its own.
//
// Used by the AMQP integration tests (tests/integration/amqp), and meant for
// the RabbitMQ backend's conformance and fault tests. A node takes seconds to
// boot, so a suite starts one and shares it (topics and queues unique per
// test), rather than one per test.
//
// Each node is private: its own node name (`sbtest-<pid>-<n>@localhost`), AMQP
// port, Erlang distribution port and epmd (started here on a port of its own,
// so parallel suites never share one), its own Erlang cookie (HOME is the
// temporary directory), no plugins, and no system configuration
// (/etc/rabbitmq is not read). Nothing depends on the system service that
// Debian's package installs. Start() returns once an AMQP login as
// guest/guest succeeds on the node's port and the broker answering is this
// node, and says how long that took (startup_time(), also printed to stderr).
//
// Fault tests Kill() the node (SIGKILL to every process of it) and Restart()
// it on the same ports and data; Stop() shuts it down gracefully
// (`rabbitmqctl stop`). Ctl() runs rabbitmqctl against the node for
// assertions (list_connections, list_channels, list_queues). The destructor
// kills every process the node started (beam.smp, erl_child_setup and the
// port programs under it, epmd) and removes the directory, whether or not the
// test passed. A test process that dies without it (a crash, a sanitizer
// abort) takes a running node along, best effort: when the thread that
// started them exits, the server script gets SIGTERM (it stops the node),
// and epmd and rabbitmqctl get SIGKILL. A node still booting then (in
// Start() or Restart()) may outlive it, and the directory stays.
//
// The node accepts logins a few milliseconds before it logs "Server startup
// complete", and a restarted node's quorum queues elect their leaders about
// 0.5 s after that: until then a passive queue.declare counts 0 messages.
//
// Not thread-safe: use one from the test's main thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {

class RabbitMqServer {
 public:
  // How long Start() and Restart() wait for the node to accept an AMQP login
  // (a boot, cold or after Kill(), takes 4.5-7 s on a busy 2-core machine).
  static constexpr absl::Duration kStartTimeout = absl::Seconds(60);

  // A TLS listener (amqps), beside the plain one: the node's certificate
  // and key (PEM), and the CA file it trusts. It asks clients for no
  // certificate.
  struct TlsListener {
    std::string cert_file;
    std::string key_file;
    std::string ca_file;
  };

  // Starts a node on picked ports and waits until it accepts an AMQP login
  // (up to kStartTimeout). A node that could not bind a port (taken since it
  // was picked) is started again on others (StartOnPickedPorts). With
  // `tls`, the node also listens for amqps on tls_port().
  static absl::StatusOr<std::unique_ptr<RabbitMqServer>> Start(
      std::optional<TlsListener> tls = std::nullopt);

  ~RabbitMqServer();

  RabbitMqServer(const RabbitMqServer&) = delete;
  RabbitMqServer& operator=(const RabbitMqServer&) = delete;

  // The AMQP port, on 127.0.0.1.
  int port() const { return port_; }
  // The amqps port, on 127.0.0.1; 0 without a TlsListener.
  int tls_port() const { return tls_port_; }
  // "sbtest-<pid>-<n>@localhost", for rabbitmqctl -n.
  const std::string& node_name() const { return node_name_; }
  // The temporary directory: data (mnesia/), logs (log/), configuration.
  const std::string& dir() const { return dir_; }
  // "amqp://guest:guest@127.0.0.1:<port>/" (guest may log in on loopback).
  std::string url() const;

  // How long the last Start() or Restart() took, from launching the node to
  // its first successful AMQP login.
  absl::Duration startup_time() const { return startup_time_; }

  // The node's log file so far (log/<node>.log), for failure messages.
  std::string log() const;

  // Shuts the node down gracefully (`rabbitmqctl stop`) and waits for its
  // processes to exit; any still running after 30 s are killed, and the
  // status says so. OK when the node is not running.
  absl::Status Stop();

  // SIGKILLs every process of the node (not epmd, which outlives restarts)
  // and waits until they are gone: a broker crash, or a machine losing
  // power with the page cache intact. Nothing when it is not running. See
  // SyncMetadata() for topology declared just before.
  void Kill();

  // Forces to disk what the node acknowledged as declared: exchanges,
  // queues and bindings (Mnesia's transaction log, which Erlang's disk_log
  // caches in the VM for a while) and its registry of quorum queues (Ra's
  // names.dets, written once idle for 500 ms and never synced). RabbitMQ 3.10
  // confirms a declaration before either is on disk: a node killed soon
  // after restarts without the binding (a publish is then confirmed but
  // routed nowhere), or with the quorum queue declared but as a new, empty
  // Ra member that never elects a leader (basic.get times out) and without
  // the confirmed messages. Confirmed messages themselves are on disk (Ra's
  // WAL is fsynced before the confirm). Fault tests that Kill() the node
  // soon after declaring topology call this first, or they test those gaps
  // (Ra fixed its own later, rabbitmq/ra#443) instead of their own code.
  absl::Status SyncMetadata() const;

  // Starts the node again (killing it first if it runs) with the same name,
  // ports and data directory, and waits until it accepts an AMQP login. A
  // port taken meanwhile is tried again for a while (RestartOnSamePorts).
  absl::Status Restart();

  // Runs `rabbitmqctl -n <node> <args...>` with the node's environment and
  // returns its stdout; INTERNAL with its stderr when it exits non-zero.
  // For example Ctl({"-q", "list_queues", "name", "messages"}).
  absl::StatusOr<std::string> Ctl(const std::vector<std::string>& args) const;

 private:
  RabbitMqServer(std::string dir, std::string node_name, int port, int dist_port, int epmd_port,
                 std::optional<TlsListener> tls, int tls_port);

  // Writes the configuration, plugins and cookie files into dir_.
  absl::Status WriteFiles() const;

  // Starts epmd (unless it runs) and the node, and waits for the login.
  // ABORTED when a port was taken, as StartOnPickedPorts expects.
  absl::Status Launch();
  absl::Status LaunchEpmd();

  // `env -i NAME=value...`: the environment every process of the node (and
  // rabbitmqctl) runs with, as the start of an argv.
  std::vector<std::string> EnvArgv() const;

  // OK once an AMQP login as guest succeeds on port_ and the broker's
  // cluster_name says it is this node.
  absl::Status TryLogin() const;

  // SIGKILLs every live process carrying this node's marker in its
  // environment, except `spare`, and waits (bounded) until none is left.
  void KillNodeProcesses(std::optional<pid_t> spare);

  const std::string dir_;
  const std::string node_name_;
  const int port_;
  const int dist_port_;
  const int epmd_port_;
  const std::optional<TlsListener> tls_;
  const int tls_port_;
  absl::Duration startup_time_;
  // /bin/sh running rabbitmq-server (a session leader), which runs beam.smp.
  std::optional<Subprocess> process_;
  std::optional<Subprocess> epmd_;
};

}  // namespace switchboard::testing
