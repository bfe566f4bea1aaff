// Runs a real program (switchboard, sbctl, redis-server, nginx) as a child
// process for integration tests, with optional stdin text and captured
// stdout/stderr. The destructor kills and reaps a child still running, so a
// failing test never leaves servers behind.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace switchboard::testing {

// Picks a free TCP port on 127.0.0.1 (bind to port 0, read it back, close).
int PickUnusedPort();

// A TCP socket bound to 127.0.0.1, at a port the kernel picked.
struct LoopbackSocket {
  int fd = -1;
  int port = 0;
};

// Opens a close-on-exec listening socket with `backlog` (the caller closes
// it). INTERNAL when the kernel refuses.
absl::StatusOr<LoopbackSocket> ListenOnLoopback(int backlog);

// Binds a socket that never listens: connections to its port are refused,
// and no other socket takes the port while the caller keeps it open (unlike
// a port from PickUnusedPort()). INTERNAL when the kernel refuses.
absl::StatusOr<LoopbackSocket> BindRefusingPort();

// Waits until something accepts TCP connections on 127.0.0.1:`port`.
bool WaitForPort(int port, absl::Duration timeout);

class Subprocess {
 public:
  // Starts `argv[0]` with `argv`. `stdin_text`, when set, is written to the
  // child's stdin, which is then closed. Output goes to temporary files read
  // by stdout_text() / stderr_text().
  static absl::StatusOr<Subprocess> Start(std::vector<std::string> argv,
                                          std::optional<std::string> stdin_text = std::nullopt);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }

  void Signal(int signal_number);

  // Waits for exit up to `timeout`. Returns the exit code (128 + signal
  // when killed by one), or nullopt on timeout.
  std::optional<int> Wait(absl::Duration timeout);

  std::string stdout_text() const;
  std::string stderr_text() const;

 private:
  Subprocess(pid_t pid, std::string stdout_path, std::string stderr_path)
      : pid_(pid), stdout_path_(std::move(stdout_path)), stderr_path_(std::move(stderr_path)) {}

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string stdout_path_;
  std::string stderr_path_;
};

// Runs a program to completion (bounded by `timeout`) and returns it.
struct RunResult {
  int exit_code = -1;  // -1 when it timed out (it is then killed).
  std::string stdout_text;
  std::string stderr_text;
};
RunResult Run(std::vector<std::string> argv, std::optional<std::string> stdin_text = std::nullopt,
              absl::Duration timeout = absl::Seconds(60));

}  // namespace switchboard::testing
