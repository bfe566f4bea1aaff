// The process collector read against this test process: every family is
// there and plausible, CPU time grows with work, build info is a constant 1.
#include "server/metrics/process_metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/collected.h"

namespace switchboard::metrics {
namespace {

using testing::Collect;
using testing::Labels;

// The one value of the process family `name`; -1 when it is missing.
double Value(const ProcessCollector& collector, const std::string& name) {
  const std::vector<prometheus::ClientMetric> series = Collect(collector, name);
  if (series.size() != 1) return -1;
  return name == "process_cpu_seconds_total" ? series[0].counter.value : series[0].gauge.value;
}

TEST(ProcessCollectorTest, ExportsTheStandardFamiliesWithPlausibleValues) {
  ProcessCollector collector;
  EXPECT_GT(Value(collector, "process_resident_memory_bytes"), 1 << 20);
  // stdin, stdout, stderr, and the directory the collector reads.
  EXPECT_GE(Value(collector, "process_open_fds"), 3);
  EXPECT_GE(Value(collector, "process_max_fds"), Value(collector, "process_open_fds"));
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  EXPECT_LE(Value(collector, "process_start_time_seconds"), now);
  EXPECT_GT(Value(collector, "process_start_time_seconds"), now - 3600);
  EXPECT_GE(Value(collector, "process_cpu_seconds_total"), 0);
}

TEST(ProcessCollectorTest, CountsAnOpenedFileDescriptor) {
  ProcessCollector collector;
  const double before = Value(collector, "process_open_fds");
  const int fd = open("/dev/null", O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Value(collector, "process_open_fds"), before + 1);
  close(fd);
  EXPECT_EQ(Value(collector, "process_open_fds"), before);
}

TEST(ProcessCollectorTest, CpuSecondsGrowWithWork) {
  ProcessCollector collector;
  const double before = Value(collector, "process_cpu_seconds_total");
  // Burn 50 ms of this process' CPU time (clock() measures it), five clock
  // ticks of /proc at 100 Hz.
  const std::clock_t start = std::clock();
  volatile uint64_t sink = 0;
  while (std::clock() - start < CLOCKS_PER_SEC / 20) sink = sink + 1;
  const double after = Value(collector, "process_cpu_seconds_total");
  EXPECT_GE(after, before + 0.03);
  EXPECT_LT(after, before + 1);  // Seconds, not clock ticks.
}

TEST(BuildInfoTest, IsAConstantOneLabelledWithTheVersion) {
  prometheus::Registry registry;
  ExportBuildInfo(registry, "1.2.3");
  const std::vector<prometheus::ClientMetric> series = Collect(registry, "switchboard_build_info");
  ASSERT_EQ(series.size(), 1u);
  EXPECT_EQ(Labels(series[0]), (std::map<std::string, std::string>{{"version", "1.2.3"}}));
  EXPECT_EQ(series[0].gauge.value, 1);
}

}  // namespace
}  // namespace switchboard::metrics
