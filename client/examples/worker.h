// What every example worker in client/examples/ shares: the --server and
// --token flags and the Client options they make, a Shutdown that SIGTERM,
// SIGINT or the worker itself can request, and the options of the jittered
// exponential backoff (common/backoff.h) for the loops that retry (a
// subscription that ended, a refused call, a failed publish).
//
// A worker's main() starts like this, before anything starts a thread:
//
//   ParseWorkerFlags(argc, argv, "what this worker does");
//   Shutdown shutdown;              // blocks SIGTERM/SIGINT in every thread
//   client::Client client(ClientOptionsFromFlags());
//
// and then waits on `shutdown`, or on a Consumer or Subscriber that a
// StopOnShutdown stops when shutdown is requested.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "switchboard/client/client.h"

namespace switchboard::examples {

// Exit codes of every example: 0 the work is done (or it was stopped by a
// signal, cleanly), 1 it failed (the reason is on stderr), 2 bad flags.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Parses the command line (absl flags; --help lists the examples' flags,
// --server, --token and the TLS flags included). Exits with kExitUsage, after a message on
// stderr, when positional arguments are given: the examples take none.
void ParseWorkerFlags(int argc, char** argv, const char* usage);

// --server, --token and the TLS flags (client/flags/connection_flags.h) as
// ClientOptions; the other options keep the library's defaults. Exits with
// kExitUsage, naming the flag, when a TLS file cannot be used.
client::ClientOptions ClientOptionsFromFlags();

// A worker's stop request: the first of SIGTERM, SIGINT, or Request() from
// the worker itself (its work is done, or it cannot go on). Construct it
// first in main(), before any other thread exists: it blocks SIGTERM and
// SIGINT in the calling thread, so every thread started later inherits the
// mask, and one thread of its own takes them with sigwait(). A second
// signal is ignored: the worker is already stopping. One per process.
// Thread-safe.
class Shutdown {
 public:
  Shutdown();
  ~Shutdown();

  Shutdown(const Shutdown&) = delete;
  Shutdown& operator=(const Shutdown&) = delete;

  // Requests the shutdown (idempotent: the first reason stays), then runs
  // every registered hook on the calling thread, under the lock: a hook must
  // return quickly and must not call this Shutdown.
  void Request(const std::string& reason);

  bool requested() const;
  // Why it was requested ("SIGTERM", "SIGINT" or Request()'s reason); empty
  // before.
  std::string reason() const;

  // Blocks until requested, or for at most `timeout`; true when requested.
  // The examples' one way to sleep, so that a signal cuts any pause short.
  bool WaitFor(absl::Duration timeout) const;

 private:
  friend class StopOnShutdown;

  // Registers `hook`, or runs it at once when shutdown was already
  // requested. Returns an id for Unregister().
  int Register(std::function<void()> hook);
  void Unregister(int id);

  void TakeSignals();

  mutable absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  std::map<int, std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
  int next_hook_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool destroying_ ABSL_GUARDED_BY(mu_) = false;
  std::thread signal_thread_;
};

// Runs `stop` (e.g. `[&] { consumer.Stop(); }`) when `shutdown` is
// requested while this object lives; at once when it already was. After the
// destructor returns, `stop` never runs, so it may refer to objects declared
// before this one.
class StopOnShutdown {
 public:
  StopOnShutdown(Shutdown& shutdown, std::function<void()> stop);
  ~StopOnShutdown();

  StopOnShutdown(const StopOnShutdown&) = delete;
  StopOnShutdown& operator=(const StopOnShutdown&) = delete;

 private:
  Shutdown& shutdown_;
  const int id_;
};

// The examples' retry delays: a ceiling that starts at `initial` and doubles
// up to `max`, each delay drawn from [d/2, d] of the current ceiling d (equal
// jitter), so that a fleet of workers does not retry in lockstep. The loops
// wait whole milliseconds (absl::Trunc): finer jitter buys nothing, and their
// logs read better.
common::BackoffOptions RetryBackoff(absl::Duration initial, absl::Duration max);

// True for failures that retrying cannot cure, because they judge the
// request or the caller rather than the moment: INVALID_ARGUMENT,
// FAILED_PRECONDITION (e.g. subscribing to a durable topic), NOT_FOUND,
// PERMISSION_DENIED, UNAUTHENTICATED, UNIMPLEMENTED. A worker reports them
// and exits rather than retrying forever.
bool IsPermanentFailure(const absl::Status& status);

}  // namespace switchboard::examples
