// The CPUs this process can use: what sizes its thread pools by default.
//
// std::thread::hardware_concurrency() counts the machine's CPUs. In a
// container with a CPU limit (Kubernetes `resources.limits.cpu`, Docker
// `--cpus`) the kernel lets the process run only that many CPUs' worth of
// time per period, whatever the machine has: threads sized to the machine
// then share the quota and wait for it. UsableCores() is the smallest of the
// CPUs the process may be scheduled on (its affinity mask) and the CPU quota
// of its cgroup and every ancestor, rounded up.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace switchboard::common {

// The cores this process may use, at least 1: read from the scheduler and
// from /proc/self/cgroup and /sys/fs/cgroup.
uint32_t UsableCores();

// The same from given sources, for tests: `cpus` scheduled CPUs,
// `self_cgroup` the text of /proc/self/cgroup, `cgroup_root` the mount
// point of the cgroup v2 hierarchy (or, for cgroup v1, of its cpu
// controller). Reads the quota files there; a missing or unreadable file
// sets no limit.
uint32_t UsableCoresFrom(uint32_t cpus, absl::string_view self_cgroup,
                         const std::string& cgroup_root);

// The cores a cgroup v2 `cpu.max` text allows ("<quota> <period>", in
// microseconds), rounded up; nullopt for "max" (no limit) or text that is
// not such a line. Pure.
std::optional<uint32_t> CoresFromCpuMax(absl::string_view text);

// The same from cgroup v1's cpu.cfs_quota_us and cpu.cfs_period_us texts; a
// quota of -1 is no limit. Pure.
std::optional<uint32_t> CoresFromCfsQuota(absl::string_view quota_us, absl::string_view period_us);

}  // namespace switchboard::common
