// Runs a real program (switchboard, sbctl, redis-server, nginx) as a child
// process for integration tests, with optional stdin text and captured
// stdout/stderr. The destructor kills and reaps a child still running, so a
// failing test never leaves servers behind. Also the loopback ports the
// harness' servers listen on, and starting a server again when its port was
// taken.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace switchboard::testing {

// Picks a TCP port on 127.0.0.1 that is free now (bind to port 0, read it
// back, close). Racy by nature: another process (a server of a test running
// in parallel) can bind the port before the caller's server does. Only for
// servers that must be told their port (nginx, redis-server, Prometheus),
// and only inside StartOnPickedPorts(), which starts such a server again on
// other ports when one was taken. A server that can listen on port 0 and
// report its port is started that way (SwitchboardProcess); an in-process
// listener holds its socket (ListenOnLoopback(), BindRefusingPort()).
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

// Listens on 127.0.0.1:`port`, as another process taking a server's port
// would, for tests of the retries below (the caller closes it).
// SO_REUSEADDR: the connections of the server that had the port may linger
// in TIME_WAIT. INTERNAL when the port is in use.
absl::StatusOr<LoopbackSocket> TakeLoopbackPort(int port);

// The whole text of the file at `path`; empty when it cannot be read.
std::string ReadTextFile(const std::string& path);

// The last `lines` lines of `log`, for error messages.
std::string LogTail(absl::string_view log, int lines = 20);

// The path of the executable `name` in a directory of PATH (Subprocess
// execs without a search), or `name` itself when none has it.
std::string FindOnPath(absl::string_view name);

// The status of a server that exited during its start, with the tail of its
// `log`: ABORTED when `log` says a port was taken ("Address already in use",
// as nginx, redis-server, Prometheus and gRPC put it), which the retries
// below get past; INTERNAL otherwise (a bad configuration, say).
absl::Status ExitedAtStartError(absl::string_view server, absl::string_view log);

// Starts `server` (a name for errors) with `start`, which picks its ports
// with PickUnusedPort(), starts it on them and returns ExitedAtStartError()
// when it exits at start. While `start` fails with ABORTED (a picked port
// was taken before the server bound it), it runs again, with new ports, up
// to kPickedPortAttempts times in all; `start` cleans up after a failed
// attempt. Other errors end it at once.
inline constexpr int kPickedPortAttempts = 5;
absl::Status StartOnPickedPorts(absl::string_view server, absl::FunctionRef<absl::Status()> start);

// Starts `server` again, with `start`, on the ports its previous process
// just released, which its clients keep using. Another process can bind one
// of them in between: while `start` fails with ABORTED it runs again until
// `patience` has passed, which gets past a port held for a moment (the
// local port of a connection being made). The risk left: a server that
// binds that very port (out of the ~28,000 the kernel picks from) in that
// gap and keeps it; the restart then fails with its log.
absl::Status RestartOnSamePorts(absl::string_view server, absl::FunctionRef<absl::Status()> start,
                                absl::Duration patience = absl::Seconds(5));

// SIGSTOPs `pid` and returns once every thread of it has stopped. kill()
// returns before that: the kernel wakes one thread, which stops the others
// when it next runs, so on a busy machine the rest can go on working for
// milliseconds (a broker can still confirm a publish sent after kill()).
// False if the signal could not be sent or the threads did not all stop
// within `timeout`.
bool StopProcess(pid_t pid, absl::Duration timeout);

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
