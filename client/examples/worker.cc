#include "worker.h"

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "client/flags/connection_flags.h"

namespace switchboard::examples {
namespace {

// --help lists the flags of the example's own file and of this one; the
// default would show only flags from a file named after the program.
bool IsExampleFlagFile(absl::string_view file) {
  return absl::StrContains(file, "examples/") || absl::StrContains(file, "client/flags/");
}

sigset_t StopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

}  // namespace

void ParseWorkerFlags(int argc, char** argv, const char* usage) {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsExampleFlagFile;
  config.contains_helpshort_flags = IsExampleFlagFile;
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << argv[0] << ": unexpected argument '" << positional[1]
              << "' (every setting is a --flag; see --help)" << std::endl;
    std::exit(kExitUsage);
  }
}

client::ClientOptions ClientOptionsFromFlags() {
  absl::StatusOr<client::ClientOptions> options = client::ClientOptionsFromFlags();
  if (!options.ok()) {
    std::cerr << "--" << options.status().message() << std::endl;
    std::exit(kExitUsage);
  }
  return *std::move(options);
}

Shutdown::Shutdown() {
  // Signals are taken by sigwait() on our own thread, never by a handler
  // interrupting whatever thread the kernel picks: so stopping may lock and
  // call into the library like any other code.
  const sigset_t signals = StopSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal_thread_ = std::thread([this] { TakeSignals(); });
}

Shutdown::~Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    destroying_ = true;
  }
  // Wakes sigwait() with a signal aimed at its thread alone (harmless when
  // the thread already took a real one and returned).
  pthread_kill(signal_thread_.native_handle(), SIGTERM);
  signal_thread_.join();
}

void Shutdown::TakeSignals() {
  const sigset_t signals = StopSignals();
  int signal_number = 0;
  if (sigwait(&signals, &signal_number) != 0) return;
  {
    absl::MutexLock lock(&mu_);
    if (destroying_) return;
  }
  Request(signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
}

void Shutdown::Request(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (requested_) return;
  requested_ = true;
  reason_ = reason;
  // Under the lock, so that a StopOnShutdown being destroyed waits for its
  // hook to finish rather than free what the hook touches.
  for (const auto& [id, hook] : hooks_) hook();
}

bool Shutdown::requested() const {
  absl::MutexLock lock(&mu_);
  return requested_;
}

std::string Shutdown::reason() const {
  absl::MutexLock lock(&mu_);
  return reason_;
}

bool Shutdown::WaitFor(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&requested_), timeout);
}

int Shutdown::Register(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  if (requested_) hook();
  const int id = next_hook_id_++;
  hooks_.emplace(id, std::move(hook));
  return id;
}

void Shutdown::Unregister(int id) {
  absl::MutexLock lock(&mu_);
  hooks_.erase(id);
}

StopOnShutdown::StopOnShutdown(Shutdown& shutdown, std::function<void()> stop)
    : shutdown_(shutdown), id_(shutdown.Register(std::move(stop))) {}

StopOnShutdown::~StopOnShutdown() { shutdown_.Unregister(id_); }

common::BackoffOptions RetryBackoff(absl::Duration initial, absl::Duration max) {
  common::BackoffOptions options;
  options.initial = initial;
  options.max = max;
  options.multiplier = 2.0;
  options.jitter = common::Jitter::kEqual;
  return options;
}

bool IsPermanentFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kUnimplemented:
      return true;
    default:
      return false;
  }
}

}  // namespace switchboard::examples
