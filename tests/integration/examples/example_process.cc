#include "tests/integration/examples/example_process.h"

#include <signal.h>

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace switchboard::testing {

absl::StatusOr<Subprocess> StartExample(const std::string& binary, const std::string& target,
                                        std::vector<std::string> flags) {
  std::vector<std::string> argv = {binary, absl::StrCat("--server=", target)};
  for (std::string& flag : flags) argv.push_back(std::move(flag));
  return Subprocess::Start(std::move(argv));
}

bool WaitForStderr(const Subprocess& process, absl::string_view text, int occurrences,
                   absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const std::string stderr_text = process.stderr_text();
    const absl::string_view logged = stderr_text;
    int found = 0;
    for (size_t at = logged.find(text); at != std::string::npos;
         at = logged.find(text, at + text.size())) {
      ++found;
    }
    if (found >= occurrences) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

std::vector<std::map<std::string, std::string>> KeyValueLines(absl::string_view text,
                                                              absl::string_view prefix) {
  std::vector<std::map<std::string, std::string>> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, prefix)) continue;
    std::map<std::string, std::string>& fields = lines.emplace_back();
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      const std::pair<std::string, std::string> key_value = absl::StrSplit(field, '=');
      if (absl::StrContains(field, '=')) fields.insert(key_value);
    }
  }
  return lines;
}

int64_t IntField(const std::map<std::string, std::string>& line, const std::string& key) {
  const auto it = line.find(key);
  int64_t value = 0;
  return it != line.end() && absl::SimpleAtoi(it->second, &value) ? value : -1;
}

Subprocess StartJobRunner(const std::string& binary, const std::string& target,
                          std::vector<std::string> flags) {
  absl::StatusOr<Subprocess> runner = StartExample(binary, target, std::move(flags));
  EXPECT_TRUE(runner.ok()) << runner.status();
  EXPECT_TRUE(WaitForStderr(*runner, "consuming jobs")) << runner->stderr_text();
  return *std::move(runner);
}

std::map<std::string, std::string> StopJobRunner(Subprocess& runner) {
  runner.Signal(SIGTERM);
  EXPECT_EQ(runner.Wait(kExampleTimeout), std::optional<int>(0)) << runner.stderr_text();
  const auto summaries = KeyValueLines(runner.stdout_text(), "summary:");
  EXPECT_EQ(summaries.size(), 1u) << runner.stdout_text();
  if (summaries.empty()) return {};
  EXPECT_EQ(summaries[0].count("stopped_by") ? summaries[0].at("stopped_by") : "", "SIGTERM");
  return summaries[0];
}

std::map<std::string, std::string> RunToEnd(Subprocess& example) {
  EXPECT_EQ(example.Wait(kExampleTimeout), std::optional<int>(0)) << example.stderr_text();
  const auto summaries = KeyValueLines(example.stdout_text(), "summary:");
  EXPECT_EQ(summaries.size(), 1u) << example.stdout_text();
  return summaries.empty() ? std::map<std::string, std::string>{} : summaries[0];
}

}  // namespace switchboard::testing
