// switchboard: parses flags and configuration, runs the server until SIGTERM
// or SIGINT, then drains and exits 0. Everything else lives in libraries.
//
// Exit codes: 0 after a graceful drain, 1 when the server cannot start
// (a port in use), 2 for invalid flags or configuration.
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/stubs/logging.h"
#include "server/app/server.h"
#include "server/common/log.h"
#include "server/config/config.h"
#include "server/config/env_expansion.h"

ABSL_FLAG(std::optional<std::string>, listen, std::nullopt,
          "gRPC listen address, host:port (default 127.0.0.1:7070; overrides server.listen)");
ABSL_FLAG(std::optional<std::string>, metrics_listen, std::nullopt,
          "Prometheus listen address, host:port (default 127.0.0.1:9464; overrides "
          "server.metrics_listen)");
ABSL_FLAG(std::string, config, "", "YAML configuration file (optional)");
ABSL_FLAG(std::optional<std::string>, broker, std::nullopt,
          "Broker URL: memory:// (default, embedded), redis://[user:password@]host:port[/db] "
          "or amqp[s]://[user:password@]host[:port][/vhost] (overrides broker.url)");

namespace {

constexpr int kExitStartFailed = 1;
constexpr int kExitBadConfig = 2;

// Protobuf's own log lines go through Switchboard's log, in its format. A
// request that does not parse (invalid UTF-8 in a string field, say) is the
// client's mistake, answered to that client (INVALID_ARGUMENT, counted in
// switchboard_requests_rejected_total): logged at debug, so that one client
// cannot fill the log.
void LogProtobufMessage(google::protobuf::LogLevel level, const char* file, int line,
                        const std::string& message) {
  namespace common = switchboard::common;
  common::LogLevel ours = level >= google::protobuf::LOGLEVEL_ERROR ? common::LogLevel::kError
                                                                    : common::LogLevel::kWarning;
  if (absl::StrContains(message, "parsing a protocol buffer")) ours = common::LogLevel::kDebug;
  if (common::LogEnabled(ours)) {
    common::LogLine(ours, absl::StrCat("protobuf (", file, ":", line, "): ", message));
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Switchboard: one gRPC service that owns a fleet's broker and upstream connections.\n"
      "Usage: switchboard [--config=FILE] [--listen=HOST:PORT] [--metrics_listen=HOST:PORT] "
      "[--broker=URL]");
  absl::ParseCommandLine(argc, argv);
  // A write to a connection its peer closed must fail with EPIPE, not kill
  // the process: hiredis writes with write(2), so a Redis that shuts down
  // gracefully while a command goes out would end Switchboard by SIGPIPE
  // (seen in the soak). Ignored before any thread starts.
  signal(SIGPIPE, SIG_IGN);
  google::protobuf::SetLogHandler(&LogProtobufMessage);
  // Debian's Abseil checks every lock for deadlock cycles; the tests (which
  // do not run main) keep that check, production saves its cost.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  namespace config = switchboard::config;
  config::FlagOverrides overrides;
  overrides.listen = absl::GetFlag(FLAGS_listen);
  overrides.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  overrides.broker_url = absl::GetFlag(FLAGS_broker);
  absl::StatusOr<config::Config> loaded =
      config::LoadConfig(absl::GetFlag(FLAGS_config), overrides, config::ProcessEnv());
  if (!loaded.ok()) {
    std::cerr << "switchboard: invalid configuration: " << loaded.status().message() << "\n";
    return kExitBadConfig;
  }
  switchboard::common::SetLogLevel(config::ConfiguredLogLevel(*loaded));
  config::WarnAboutExposure(*loaded);

  // Signals are taken by sigwait below, never by a handler on a random
  // thread: block them before any thread starts so every thread inherits it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<switchboard::app::Server>> server =
      switchboard::app::Server::Start(*loaded);
  if (!server.ok()) {
    SB_LOG(kError, "cannot start: ", server.status().message());
    return server.status().code() == absl::StatusCode::kInvalidArgument ? kExitBadConfig
                                                                        : kExitStartFailed;
  }
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  SB_LOG(kInfo, "received ", signal_number == SIGTERM ? "SIGTERM" : "SIGINT",
         "; shutting down gracefully");
  (*server)->Shutdown();
  return EXIT_SUCCESS;
}
