#include "tests/testing/switchboard_process.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <regex>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace switchboard::testing {
namespace {

struct ListeningPorts {
  int grpc = 0;
  int metrics = 0;
};

// The ports in the line switchboard logs once it listens (server/app/
// server.cc): "switchboard listening on 127.0.0.1:0 (port 41234), metrics on
// 127.0.0.1:0 (port 41235), broker memory://". Each line is one write(2),
// so a line found is whole.
std::optional<ListeningPorts> FindListeningPorts(const std::string& log) {
  static const std::regex kListeningLine(
      R"(switchboard listening on \S+ \(port (\d+)\), metrics on \S+ \(port (\d+)\))");
  std::smatch match;
  ListeningPorts ports;
  if (!std::regex_search(log, match, kListeningLine) ||
      !absl::SimpleAtoi(match[1].str(), &ports.grpc) ||
      !absl::SimpleAtoi(match[2].str(), &ports.metrics)) {
    return std::nullopt;
  }
  return ports;
}

}  // namespace

SwitchboardProcess::SwitchboardProcess(std::string binary, std::string config_yaml)
    : binary_(std::move(binary)) {
  if (config_yaml.empty()) return;
  std::string path = "/tmp/switchboard-test-config-XXXXXX.yaml";
  const int fd = mkstemps(path.data(), 5);
  if (fd < 0) return;  // Start() then runs without --config and the test fails on it.
  close(fd);
  std::ofstream(path) << config_yaml;
  config_path_ = std::move(path);
}

SwitchboardProcess::~SwitchboardProcess() {
  process_.reset();  // Kills the process if it still runs.
  if (!config_path_.empty()) unlink(config_path_.c_str());
}

std::string SwitchboardProcess::target() const { return absl::StrCat("127.0.0.1:", port_); }

absl::Status SwitchboardProcess::Start(absl::Duration timeout) {
  if (process_) return absl::FailedPreconditionError("switchboard is already running");
  if (port_ == 0) return Launch(timeout);
  return RestartOnSamePorts("switchboard", [this, timeout] { return Launch(timeout); });
}

absl::Status SwitchboardProcess::Launch(absl::Duration timeout) {
  // Port 0 for metrics on every run: no test needs the same one again.
  std::vector<std::string> argv = {binary_, absl::StrCat("--listen=127.0.0.1:", port_),
                                   "--metrics_listen=127.0.0.1:0"};
  if (!config_path_.empty()) argv.push_back(absl::StrCat("--config=", config_path_));
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(argv));
  if (!process.ok()) return process.status();
  process_.emplace(*std::move(process));
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const std::string log = process_->stderr_text();
    if (const std::optional<ListeningPorts> ports = FindListeningPorts(log)) {
      if (ports->grpc == 0 || ports->metrics == 0) {
        process_.reset();
        last_stderr_ = log;
        return absl::InternalError(absl::StrCat("switchboard logged port 0:\n", LogTail(log)));
      }
      port_ = ports->grpc;
      metrics_port_ = ports->metrics;
      return absl::OkStatus();
    }
    if (process_->Wait(absl::Milliseconds(20)).has_value()) {
      last_stderr_ = process_->stderr_text();
      process_.reset();
      // "Address already in use" from gRPC when a restart's port was taken.
      return ExitedAtStartError("switchboard", last_stderr_);
    }
    if (absl::Now() >= deadline) {
      last_stderr_ = process_->stderr_text();
      process_.reset();  // Kills it.
      return absl::DeadlineExceededError(
          absl::StrCat("switchboard did not log its listening ports (at level info) within ",
                       absl::FormatDuration(timeout), ":\n", LogTail(last_stderr_)));
    }
  }
}

absl::Status SwitchboardProcess::Kill(absl::Duration timeout) {
  absl::StatusOr<int> exit_code = SignalAndWait(SIGKILL, timeout);
  if (!exit_code.ok()) return exit_code.status();
  if (*exit_code != 128 + SIGKILL) {
    return absl::InternalError(
        absl::StrCat("switchboard did not die of SIGKILL: exit code ", *exit_code));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> SwitchboardProcess::SignalAndWait(int signal_number, absl::Duration timeout) {
  if (!process_) return absl::FailedPreconditionError("switchboard is not running");
  process_->Signal(signal_number);
  const std::optional<int> exit_code = process_->Wait(timeout);
  if (!exit_code) {
    return absl::DeadlineExceededError(
        absl::StrCat("switchboard did not exit within ", absl::FormatDuration(timeout)));
  }
  last_stderr_ = process_->stderr_text();
  process_.reset();
  return *exit_code;
}

std::string SwitchboardProcess::stderr_text() const {
  return process_ ? process_->stderr_text() : last_stderr_;
}

}  // namespace switchboard::testing
