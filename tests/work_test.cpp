#include "polyecho/work.hpp"

#include <gtest/gtest.h>
#include <time.h>

#include <string>
#include <thread>

namespace polyecho {
namespace {

using std::chrono::microseconds;

TEST(WorkConfig, ParsesEachKind) {
  std::string error;
  const auto cpu = parse_work("cpu:100", error);
  ASSERT_TRUE(cpu) << error;
  EXPECT_EQ(cpu->kind, WorkKind::cpu);
  EXPECT_EQ(cpu->duration, microseconds(100));
  const auto block = parse_work("block:2000", error);
  ASSERT_TRUE(block) << error;
  EXPECT_EQ(block->kind, WorkKind::block);
  const auto wait = parse_work("wait:200000", error);
  ASSERT_TRUE(wait) << error;
  EXPECT_EQ(wait->kind, WorkKind::wait);
  EXPECT_EQ(to_string(*wait), "wait:200000");
  EXPECT_EQ(to_string(WorkConfig{}), "none");
}

TEST(WorkConfig, RefusesWhatIsNotKindColonMicroseconds) {
  for (const char* bad : {"", "cpu", "cpu:", "cpu:0", "cpu:-5", "cpu:1x", "spin:10", "cpu:1.5",
                          "wait:60000001", ":10"}) {
    std::string error;
    EXPECT_FALSE(parse_work(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

// CPU time of the calling thread: what the kernel burns, whatever else the machine is doing.
double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

TEST(CpuWork, BurnsCpuInProportionToTheDuration) {
  CpuWork::calibrate();
  EXPECT_GT(CpuWork::rounds_per_microsecond(), 1.0);
  const std::string message(64, 'x');
  const auto burn = [&](microseconds duration) {
    const double start = thread_cpu_seconds();
    CpuWork::run(message, duration);
    return thread_cpu_seconds() - start;
  };
  const double short_run = burn(microseconds(10'000));
  const double long_run = burn(microseconds(40'000));
  // Four times the work is about four times the CPU; a wide margin absorbs calibration noise.
  EXPECT_GT(long_run, short_run * 2) << short_run << " s vs " << long_run << " s";
  EXPECT_LT(long_run, short_run * 8) << short_run << " s vs " << long_run << " s";
}

TEST(CpuWork, DependsOnTheMessageAndLeavesItUnchanged) {
  std::string a = "hello, frame";  // not const: the kernel must leave even writable bytes alone
  const std::string b = "hello, frams";
  const std::string before = "hello, frame";
  EXPECT_EQ(CpuWork::rounds(a, 1000), CpuWork::rounds(a, 1000));
  EXPECT_NE(CpuWork::rounds(a, 1000), CpuWork::rounds(b, 1000));
  EXPECT_NE(CpuWork::rounds({}, 1000), 0u);  // an empty message still gets its rounds
  EXPECT_EQ(a, before);
}

TEST(WorkInline, TheGilKeepsTwoThreadsFromWorkingAtOnce) {
  // Two threads each block 30 ms under the GIL: the second can only start when the first is
  // done, so the pair takes about twice as long as one. Without the GIL they overlap.
  const WorkConfig with_gil{WorkKind::block, microseconds(30'000), true};
  const WorkConfig without{WorkKind::block, microseconds(30'000), false};
  const auto pair = [](const WorkConfig& work) {
    const auto start = std::chrono::steady_clock::now();
    std::thread other([&] { work_inline(work, {}); });
    work_inline(work, {});
    other.join();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const double serial = pair(with_gil);
  const double parallel = pair(without);
  EXPECT_GT(serial, parallel * 1.5) << "with the GIL " << serial << " s, without " << parallel;
}

}  // namespace
}  // namespace polyecho
