// A real `switchboard` process for integration tests that kill it: its gRPC
// and metrics ports are picked once, so it can be started again on the same
// ones, and an optional YAML configuration is written to a file of its own
// and passed as --config.
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
  // its configuration (the listen flags override the file's addresses).
  explicit SwitchboardProcess(std::string binary, std::string config_yaml = "");
  ~SwitchboardProcess();

  SwitchboardProcess(const SwitchboardProcess&) = delete;
  SwitchboardProcess& operator=(const SwitchboardProcess&) = delete;

  // "127.0.0.1:<port>" for grpc::CreateChannel.
  std::string target() const;
  int metrics_port() const { return metrics_port_; }

  // Starts the process and waits until its gRPC port accepts connections.
  // FAILED_PRECONDITION when it is already running.
  absl::Status Start(absl::Duration timeout = absl::Seconds(10));

  // SIGKILLs the process and waits for it to exit.
  absl::Status Kill(absl::Duration timeout = absl::Seconds(10));

  // Sends `signal_number` and waits up to `timeout` for the process to exit;
  // returns its exit code (128 + the signal when a signal ended it).
  absl::StatusOr<int> SignalAndWait(int signal_number, absl::Duration timeout);

  // What the process logged so far (or last, once it exited).
  std::string stderr_text() const;

 private:
  const std::string binary_;
  const int port_;
  const int metrics_port_;
  std::string config_path_;  // Empty without a configuration.
  std::optional<Subprocess> process_;
  std::string last_stderr_;
};

}  // namespace switchboard::testing
