#include "server/common/usable_cores.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace switchboard::common {
namespace {

TEST(CoresFromCpuMaxTest, RoundsTheQuotaUpToWholeCores) {
  EXPECT_EQ(CoresFromCpuMax("200000 100000\n"), 2u);
  EXPECT_EQ(CoresFromCpuMax("150000 100000"), 2u);
  EXPECT_EQ(CoresFromCpuMax("50000 100000"), 1u);
  EXPECT_EQ(CoresFromCpuMax("400000 50000"), 8u);
}

TEST(CoresFromCpuMaxTest, MaxOrAnythingElseIsNoLimit) {
  EXPECT_EQ(CoresFromCpuMax("max 100000"), std::nullopt);
  EXPECT_EQ(CoresFromCpuMax(""), std::nullopt);
  EXPECT_EQ(CoresFromCpuMax("200000"), std::nullopt);
  EXPECT_EQ(CoresFromCpuMax("200000 0"), std::nullopt);
  EXPECT_EQ(CoresFromCpuMax("2 cores"), std::nullopt);
}

TEST(CoresFromCfsQuotaTest, MinusOneIsNoLimit) {
  EXPECT_EQ(CoresFromCfsQuota("300000\n", "100000\n"), 3u);
  EXPECT_EQ(CoresFromCfsQuota("-1\n", "100000\n"), std::nullopt);
  EXPECT_EQ(CoresFromCfsQuota("x", "100000"), std::nullopt);
}

// A cgroup hierarchy in a temporary directory.
class UsableCoresTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/usable_cores_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  void Write(const std::string& path, const std::string& text) {
    std::filesystem::create_directories(std::filesystem::path(root_ + path).parent_path());
    std::ofstream(root_ + path) << text;
  }

  std::string root_;
};

TEST_F(UsableCoresTest, CgroupV2TakesTheSmallestQuotaOfTheCgroupAndItsAncestors) {
  Write("/kubepods/cpu.max", "300000 100000\n");
  Write("/kubepods/pod1/cpu.max", "max 100000\n");
  Write("/kubepods/pod1/app/cpu.max", "150000 100000\n");
  EXPECT_EQ(UsableCoresFrom(16, "0::/kubepods/pod1/app\n", root_), 2u);
  // The ancestor's limit holds where the cgroup sets none.
  Write("/kubepods/pod1/app/cpu.max", "max 100000\n");
  EXPECT_EQ(UsableCoresFrom(16, "0::/kubepods/pod1/app\n", root_), 3u);
}

TEST_F(UsableCoresTest, TheSchedulersCpusBoundTheQuota) {
  Write("/cpu.max", "800000 100000\n");
  EXPECT_EQ(UsableCoresFrom(4, "0::/\n", root_), 4u);
}

TEST_F(UsableCoresTest, AContainerSeesItsOwnCgroupAtTheRoot) {
  // Without a cgroup namespace /proc/self/cgroup names the host's path,
  // which the container's mount does not have; its own limit is at the root.
  Write("/cpu.max", "100000 100000\n");
  EXPECT_EQ(UsableCoresFrom(8, "0::/system.slice/docker-abc.scope\n", root_), 1u);
}

TEST_F(UsableCoresTest, CgroupV1ReadsTheCpuControllersQuota) {
  Write("/cpu/docker/abc/cpu.cfs_quota_us", "200000\n");
  Write("/cpu/docker/abc/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(UsableCoresFrom(8,
                            "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n"
                            "0::/docker/abc\n",
                            root_),
            2u);
}

TEST_F(UsableCoresTest, NoQuotaAnywhereLeavesTheCpus) {
  EXPECT_EQ(UsableCoresFrom(6, "0::/user.slice\n", root_), 6u);
  EXPECT_EQ(UsableCoresFrom(6, "", root_), 6u);
  EXPECT_EQ(UsableCoresFrom(0, "", root_), 1u);
}

TEST(UsableCoresOfThisProcessTest, IsBetweenOneAndTheMachinesCpus) {
  const uint32_t cores = UsableCores();
  EXPECT_GE(cores, 1u);
  EXPECT_LE(cores, std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace switchboard::common
