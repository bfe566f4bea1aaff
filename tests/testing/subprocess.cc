#include "tests/testing/subprocess.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "server/common/text_file.h"
#include "tests/testing/poll.h"

namespace switchboard::testing {
namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

std::string TempPath(absl::string_view what) {
  std::string pattern = absl::StrCat("/tmp/switchboard-test-", what, "-XXXXXX");
  const int fd = mkstemp(pattern.data());
  if (fd >= 0) close(fd);
  return pattern;
}

// A close-on-exec socket bound to 127.0.0.1 at a port the kernel picks,
// listening with `backlog` unless it is nullopt.
absl::StatusOr<LoopbackSocket> BindLoopback(std::optional<int> backlog) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address = Loopback(0);
  socklen_t length = sizeof(address);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      (backlog.has_value() && listen(fd, *backlog) != 0) ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (fd >= 0) close(fd);
    return absl::InternalError("cannot bind a socket on 127.0.0.1");
  }
  return LoopbackSocket{fd, ntohs(address.sin_port)};
}

// Whether every thread of `pid` is stopped (or gone): the state letter in
// /proc/<pid>/task/<tid>/stat, after the parenthesised command name.
absl::StatusOr<bool> AllThreadsStopped(pid_t pid) {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return absl::NotFoundError(absl::StrCat("no ", tasks));
  bool stopped = true;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string stat = ReadTextFile(absl::StrCat(tasks, "/", entry->d_name, "/stat"));
    const size_t name_end = stat.rfind(')');
    if (name_end == std::string::npos || name_end + 2 >= stat.size()) continue;  // Gone.
    const char state = stat[name_end + 2];
    if (state != 'T' && state != 't' && state != 'Z' && state != 'X') stopped = false;
  }
  closedir(dir);
  return stopped;
}

}  // namespace

std::string ReadTextFile(const std::string& path) {
  return common::ReadTextFile(path).value_or("");
}

int PickUnusedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address = Loopback(0);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

absl::StatusOr<LoopbackSocket> ListenOnLoopback(int backlog) { return BindLoopback(backlog); }

absl::StatusOr<LoopbackSocket> BindRefusingPort() { return BindLoopback(std::nullopt); }

absl::StatusOr<LoopbackSocket> TakeLoopbackPort(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int on = 1;
  sockaddr_in address = Loopback(port);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 || listen(fd, 1) != 0) {
    if (fd >= 0) close(fd);
    return absl::InternalError(absl::StrCat("cannot listen on 127.0.0.1:", port));
  }
  return LoopbackSocket{fd, port};
}

std::string FindOnPath(absl::string_view name) {
  const char* path = getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "", ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::string(name);
}

std::string LogTail(absl::string_view log, int lines) {
  // Past the last line's newline, then back over `lines` more.
  size_t start = log.size();
  if (start > 0 && log[start - 1] == '\n') --start;
  for (int found = 0; start > 0; --start) {
    if (log[start - 1] == '\n' && ++found == lines) break;
  }
  return std::string(log.substr(start));
}

absl::Status ExitedAtStartError(absl::string_view server, absl::string_view log) {
  const std::string message = absl::StrCat(server, " exited at start:\n", LogTail(log));
  if (absl::StrContains(absl::AsciiStrToLower(log), "address already in use")) {
    return absl::AbortedError(message);
  }
  return absl::InternalError(message);
}

absl::Status StartOnPickedPorts(absl::string_view server, absl::FunctionRef<absl::Status()> start) {
  absl::Status started;
  for (int attempt = 1; attempt <= kPickedPortAttempts; ++attempt) {
    started = start();
    if (started.code() != absl::StatusCode::kAborted) return started;
  }
  return absl::Status(
      started.code(),
      absl::StrCat(server, " found a port taken in each of ", kPickedPortAttempts,
                   " attempts, with new ports each time; the last: ", started.message()));
}

absl::Status RestartOnSamePorts(absl::string_view server, absl::FunctionRef<absl::Status()> start,
                                absl::Duration patience) {
  const absl::Time deadline = absl::Now() + patience;
  while (true) {
    const absl::Status started = start();
    if (started.code() != absl::StatusCode::kAborted) return started;
    if (absl::Now() >= deadline) {
      return absl::Status(
          started.code(),
          absl::StrCat(server, " could not bind its ports again within ",
                       absl::FormatDuration(patience), "; the last attempt: ", started.message()));
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

absl::StatusOr<Subprocess> Subprocess::Start(std::vector<std::string> argv,
                                             std::optional<std::string> stdin_text) {
  std::string stdout_path = TempPath("stdout");
  std::string stderr_path = TempPath("stderr");
  // Opened before the fork and unlinked at once: the child inherits the
  // descriptor, so nothing depends on when it runs.
  int stdin_fd = -1;
  if (stdin_text) {
    const std::string stdin_path = TempPath("stdin");
    std::ofstream(stdin_path) << *stdin_text;
    stdin_fd = open(stdin_path.c_str(), O_RDONLY);
    unlink(stdin_path.c_str());
  } else {
    stdin_fd = open("/dev/null", O_RDONLY);
  }
  std::vector<char*> args;
  for (std::string& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(stdin_fd);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    const int out = open(stdout_path.c_str(), O_WRONLY | O_TRUNC);
    const int err = open(stderr_path.c_str(), O_WRONLY | O_TRUNC);
    dup2(stdin_fd, STDIN_FILENO);
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    // Children must not inherit the test's blocked signals.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(stdin_fd);
  return Subprocess(pid, std::move(stdout_path), std::move(stderr_path));
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      exit_code_(other.exit_code_),
      stdout_path_(std::move(other.stdout_path_)),
      stderr_path_(std::move(other.stderr_path_)) {}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !exit_code_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (!stdout_path_.empty()) unlink(stdout_path_.c_str());
  if (!stderr_path_.empty()) unlink(stderr_path_.c_str());
}

void Subprocess::Signal(int signal_number) {
  if (pid_ > 0 && !exit_code_) kill(pid_, signal_number);
}

std::optional<int> Subprocess::Wait(absl::Duration timeout) {
  if (exit_code_) return exit_code_;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

std::string Subprocess::stdout_text() const { return ReadTextFile(stdout_path_); }
std::string Subprocess::stderr_text() const { return ReadTextFile(stderr_path_); }

bool StopProcess(pid_t pid, absl::Duration timeout) {
  if (kill(pid, SIGSTOP) != 0) return false;
  absl::StatusOr<bool> stopped =
      Poll<bool>([pid] { return AllThreadsStopped(pid); }, [](bool all) { return all; }, timeout);
  return stopped.ok() && *stopped;
}

RunResult Run(std::vector<std::string> argv, std::optional<std::string> stdin_text,
              absl::Duration timeout) {
  RunResult result;
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(argv), std::move(stdin_text));
  if (!process.ok()) return result;
  std::optional<int> exit_code = process->Wait(timeout);
  result.exit_code = exit_code.value_or(-1);
  result.stdout_text = process->stdout_text();
  result.stderr_text = process->stderr_text();
  return result;
}

}  // namespace switchboard::testing
