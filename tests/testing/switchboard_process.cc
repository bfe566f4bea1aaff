#include "tests/testing/switchboard_process.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace switchboard::testing {

SwitchboardProcess::SwitchboardProcess(std::string binary, std::string config_yaml)
    : binary_(std::move(binary)), port_(PickUnusedPort()), metrics_port_(PickUnusedPort()) {
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
  std::vector<std::string> argv = {binary_, absl::StrCat("--listen=", target()),
                                   absl::StrCat("--metrics_listen=127.0.0.1:", metrics_port_)};
  if (!config_path_.empty()) argv.push_back(absl::StrCat("--config=", config_path_));
  absl::StatusOr<Subprocess> process = Subprocess::Start(std::move(argv));
  if (!process.ok()) return process.status();
  process_.emplace(*std::move(process));
  if (!WaitForPort(port_, timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("switchboard did not listen on ", target(),
                                                    " within ", absl::FormatDuration(timeout), ": ",
                                                    process_->stderr_text()));
  }
  return absl::OkStatus();
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
