#include "server/common/usable_cores.h"

#include <sched.h>

#include <algorithm>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/common/text_file.h"

namespace switchboard::common {
namespace {

std::optional<uint32_t> Cores(int64_t quota, int64_t period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  return static_cast<uint32_t>(std::max<int64_t>(1, (quota + period - 1) / period));
}

// "/a/b" -> {"/a/b", "/a", ""}: a cgroup and its ancestors, as paths under
// the hierarchy's root.
std::vector<std::string> SelfAndAncestors(absl::string_view path) {
  std::string cgroup(absl::StripSuffix(absl::StripAsciiWhitespace(path), "/"));
  std::vector<std::string> chain;
  for (;;) {
    chain.push_back(cgroup);
    if (cgroup.empty()) break;
    const size_t parent_end = cgroup.rfind('/');
    cgroup.resize(parent_end == std::string::npos ? 0 : parent_end);
  }
  return chain;
}

// The smallest quota of `cgroup` and its ancestors under `root`, read by
// `read_quota` from a cgroup's directory.
template <typename ReadQuota>
std::optional<uint32_t> SmallestQuota(const std::string& root, absl::string_view cgroup,
                                      ReadQuota read_quota) {
  std::optional<uint32_t> smallest;
  for (const std::string& path : SelfAndAncestors(cgroup)) {
    const std::optional<uint32_t> cores = read_quota(absl::StrCat(root, path));
    if (cores.has_value() && (!smallest.has_value() || *cores < *smallest)) smallest = cores;
  }
  return smallest;
}

}  // namespace

std::optional<uint32_t> CoresFromCpuMax(absl::string_view text) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  int64_t quota = 0;
  int64_t period = 0;
  if (fields.size() != 2 || !absl::SimpleAtoi(fields[0], &quota) ||
      !absl::SimpleAtoi(fields[1], &period)) {
    return std::nullopt;  // "max <period>" (no limit) or not cpu.max.
  }
  return Cores(quota, period);
}

std::optional<uint32_t> CoresFromCfsQuota(absl::string_view quota_us, absl::string_view period_us) {
  int64_t quota = 0;
  int64_t period = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(quota_us), &quota) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(period_us), &period)) {
    return std::nullopt;
  }
  return Cores(quota, period);  // A quota of -1: no limit.
}

uint32_t UsableCoresFrom(uint32_t cpus, absl::string_view self_cgroup,
                         const std::string& cgroup_root) {
  std::optional<uint32_t> quota;
  // Lines are "<id>:<controllers>:<path>"; cgroup v2's is "0::<path>". On a
  // hybrid system the cpu controller is in a v1 hierarchy.
  std::optional<absl::string_view> v1_path;
  std::optional<absl::string_view> v2_path;
  for (absl::string_view line : absl::StrSplit(self_cgroup, '\n', absl::SkipEmpty())) {
    const std::vector<absl::string_view> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3) continue;
    if (fields[0] == "0" && fields[1].empty()) v2_path = fields[2];
    for (absl::string_view controller : absl::StrSplit(fields[1], ',')) {
      if (controller == "cpu") v1_path = fields[2];
    }
  }
  if (v1_path.has_value()) {
    quota = SmallestQuota(absl::StrCat(cgroup_root, "/cpu"), *v1_path, [](const std::string& dir) {
      const std::optional<std::string> quota_us = ReadTextFile(dir + "/cpu.cfs_quota_us");
      const std::optional<std::string> period_us = ReadTextFile(dir + "/cpu.cfs_period_us");
      if (!quota_us.has_value() || !period_us.has_value()) return std::optional<uint32_t>();
      return CoresFromCfsQuota(*quota_us, *period_us);
    });
  } else if (v2_path.has_value()) {
    quota = SmallestQuota(cgroup_root, *v2_path, [](const std::string& dir) {
      const std::optional<std::string> cpu_max = ReadTextFile(dir + "/cpu.max");
      return cpu_max.has_value() ? CoresFromCpuMax(*cpu_max) : std::nullopt;
    });
  }
  const uint32_t cores = quota.has_value() ? std::min(cpus, *quota) : cpus;
  return std::max<uint32_t>(cores, 1);
}

uint32_t UsableCores() {
  uint32_t cpus = std::thread::hardware_concurrency();
  cpu_set_t affinity;
  if (sched_getaffinity(0, sizeof(affinity), &affinity) == 0) {
    cpus = static_cast<uint32_t>(CPU_COUNT(&affinity));
  }
  return UsableCoresFrom(cpus, ReadTextFile("/proc/self/cgroup").value_or(""), "/sys/fs/cgroup");
}

}  // namespace switchboard::common
