#include "server/metrics/process_metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "prometheus/client_metric.h"
#include "prometheus/gauge.h"
#include "server/common/text_file.h"

namespace switchboard::metrics {
namespace {

// The fields of /proc/self/stat this collector reads (proc(5) numbers them
// from 1; the list below starts after the command name, at field 3).
constexpr size_t kFirstField = 3;
constexpr size_t kUtime = 14;
constexpr size_t kStime = 15;
constexpr size_t kStartTime = 22;
constexpr size_t kRss = 24;

// The fields of /proc/self/stat from the third on. The command name
// (field 2, in parentheses) may hold spaces and parentheses itself, so the
// fields start after the last ')'.
std::vector<std::string> StatFields() {
  const std::optional<std::string> stat = common::ReadTextFile("/proc/self/stat");
  if (!stat) return {};
  const size_t end_of_name = stat->rfind(')');
  if (end_of_name == std::string::npos) return {};
  return absl::StrSplit(absl::string_view(*stat).substr(end_of_name + 1), ' ', absl::SkipEmpty());
}

// Stat field `field` (numbered as in proc(5)) as a number.
std::optional<double> StatField(const std::vector<std::string>& fields, size_t field) {
  double value = 0;
  if (field - kFirstField >= fields.size() ||
      !absl::SimpleAtod(fields[field - kFirstField], &value)) {
    return std::nullopt;
  }
  return value;
}

// The boot time, in seconds since the epoch (`btime` of /proc/stat).
std::optional<double> BootTime() {
  const std::optional<std::string> stat = common::ReadTextFile("/proc/stat");
  if (!stat) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(*stat, '\n')) {
    double value = 0;
    if (absl::ConsumePrefix(&line, "btime ") && absl::SimpleAtod(line, &value)) return value;
  }
  return std::nullopt;
}

// Open file descriptors: the entries of /proc/self/fd (the one reading it
// included, as other clients count).
std::optional<double> OpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  double count = 0;
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count;
}

// A family of one series without labels.
prometheus::MetricFamily OneSeries(const char* name, const char* help, prometheus::MetricType type,
                                   double value) {
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return prometheus::MetricFamily{name, help, type, {std::move(metric)}};
}

}  // namespace

ProcessCollector::ProcessCollector() {
  const std::optional<double> start_ticks = StatField(StatFields(), kStartTime);
  const std::optional<double> boot_time = BootTime();
  if (start_ticks && boot_time) {
    start_time_seconds_ = *boot_time + *start_ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> families;
  const std::vector<std::string> stat = StatFields();
  const std::optional<double> utime = StatField(stat, kUtime);
  const std::optional<double> stime = StatField(stat, kStime);
  if (utime && stime) {
    families.push_back(OneSeries("process_cpu_seconds_total",
                                 "Total user and system CPU time spent in seconds.",
                                 prometheus::MetricType::Counter,
                                 (*utime + *stime) / static_cast<double>(sysconf(_SC_CLK_TCK))));
  }
  if (const std::optional<double> rss = StatField(stat, kRss)) {
    families.push_back(OneSeries("process_resident_memory_bytes", "Resident memory size in bytes.",
                                 prometheus::MetricType::Gauge,
                                 *rss * static_cast<double>(sysconf(_SC_PAGESIZE))));
  }
  if (const std::optional<double> open = OpenFds()) {
    families.push_back(OneSeries("process_open_fds", "Number of open file descriptors.",
                                 prometheus::MetricType::Gauge, *open));
  }
  if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    families.push_back(OneSeries("process_max_fds", "Maximum number of open file descriptors.",
                                 prometheus::MetricType::Gauge,
                                 static_cast<double>(limit.rlim_cur)));
  }
  if (start_time_seconds_ > 0) {
    families.push_back(OneSeries("process_start_time_seconds",
                                 "Start time of the process since unix epoch in seconds.",
                                 prometheus::MetricType::Gauge, start_time_seconds_));
  }
  return families;
}

void ExportBuildInfo(prometheus::Registry& registry, const std::string& version) {
  prometheus::BuildGauge()
      .Name("switchboard_build_info")
      .Help("A constant 1, labelled with the version of this build.")
      .Register(registry)
      .Add({{"version", version}})
      .Set(1);
}

}  // namespace switchboard::metrics
