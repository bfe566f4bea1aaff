// A real `switchboard` process for integration tests that kill it. The first
// Start() has it listen on port 0 for gRPC and metrics and reads the ports
// the kernel gave it from its log, so no other process can take them first
// (as one could a port picked beforehand). A later Start() listens on the
// first gRPC port again, which clients keep using, and on a new metrics
// port. An optional YAML configuration is written to a file of its own and
// passed as --config.
//
// Used by the client reconnect tests and the Redis end-to-end tests. The
// destructor kills a process still running and removes the configuration
// file. Not thread-safe: use one from the test's main thread.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {

class SwitchboardProcess {
 public:
  // `binary` is the switchboard executable; `config_yaml`, when not empty,
  // its configuration (the listen flags override the file's addresses; the
  // log level must stay info or debug, as Start() reads the ports from the
  // log).
  explicit SwitchboardProcess(std::string binary, std::string config_yaml = "");
  ~SwitchboardProcess();

  SwitchboardProcess(const SwitchboardProcess&) = delete;
  SwitchboardProcess& operator=(const SwitchboardProcess&) = delete;

  // "127.0.0.1:<port>" for grpc::CreateChannel, once Start() succeeded.
  std::string target() const;
  // The metrics port of the current (or last) run, once Start() succeeded.
  int metrics_port() const { return metrics_port_; }
  // The process id of the current run, once Start() succeeded.
  pid_t pid() const { return process_->pid(); }

  // Starts the process and waits until it logs the ports it listens on
  // (which it does once it accepts connections on both). FAILED_PRECONDITION
  // when it is already running; DEADLINE_EXCEEDED or INTERNAL, with the
  // log's tail, when it does not get there within `timeout` or exits. A
  // restart whose gRPC port was taken meanwhile is tried again for a while
  // (RestartOnSamePorts), then fails with ABORTED. (gRPC binds with
  // SO_REUSEPORT: a port that another gRPC server got from the kernel's
  // port-0 pick in between would be shared, not refused. As unlikely as
  // the risk RestartOnSamePorts describes.)
  absl::Status Start(absl::Duration timeout = absl::Seconds(10));

  // SIGKILLs the process and waits for it to exit.
  absl::Status Kill(absl::Duration timeout = absl::Seconds(10));

  // Sends `signal_number` and waits up to `timeout` for the process to exit;
  // returns its exit code (128 + the signal when a signal ended it).
  absl::StatusOr<int> SignalAndWait(int signal_number, absl::Duration timeout);

  // What the process logged so far (or last, once it exited).
  std::string stderr_text() const;

 private:
  // Starts the process once, on port_ (0 the first time), and reads its
  // ports from its log.
  absl::Status Launch(absl::Duration timeout);

  const std::string binary_;
  int port_ = 0;  // The gRPC port, from the first run on.
  int metrics_port_ = 0;
  std::string config_path_;  // Empty without a configuration.
  std::optional<Subprocess> process_;
  std::string last_stderr_;
};

}  // namespace switchboard::testing
