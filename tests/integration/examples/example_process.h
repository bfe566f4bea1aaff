// Helpers for the tests of the example workers (client/examples/), which run
// them as real child processes against real servers: start one pointed at a
// Switchboard, wait for a line it logs, and read the `key=value` summary
// lines every example prints on stdout.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "tests/testing/subprocess.h"

namespace switchboard::testing {

// How long an example test waits for something that must happen.
inline constexpr absl::Duration kExampleTimeout = absl::Seconds(30);

// Starts the example `binary` with --server=`target` and `flags`.
absl::StatusOr<Subprocess> StartExample(const std::string& binary, const std::string& target,
                                        std::vector<std::string> flags);

// Waits until the process' stderr holds `text` at least `occurrences` times.
bool WaitForStderr(const Subprocess& process, absl::string_view text, int occurrences = 1,
                   absl::Duration timeout = kExampleTimeout);

// The `key=value` fields of each stdout line that starts with `prefix`
// (e.g. "summary:" or "worker="), in order. A field without '=' is skipped.
std::vector<std::map<std::string, std::string>> KeyValueLines(absl::string_view text,
                                                              absl::string_view prefix);

// Starts example_job_runner (`binary`) and waits until its consumer is
// created (its stream opens right after). A failure is a test failure.
Subprocess StartJobRunner(const std::string& binary, const std::string& target,
                          std::vector<std::string> flags);

// SIGTERMs a job runner, expects a clean exit 0 after SIGTERM and returns
// its summary line's fields (empty, and a test failure, without one).
std::map<std::string, std::string> StopJobRunner(Subprocess& runner);

// Waits for an example that ends by itself (example_jobs_api) to exit 0
// and returns its summary line's fields.
std::map<std::string, std::string> RunToEnd(Subprocess& example);

// One field of a line as an integer; -1 when absent or not a number (so
// that a test's expectation fails with the line in its message).
int64_t IntField(const std::map<std::string, std::string>& line, const std::string& key);

}  // namespace switchboard::testing
