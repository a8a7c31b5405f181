// The debug-only loop-thread check, compiled in here whatever the build type, so the test
// always exercises the active version.
#define POLYECHO_CHECK_AFFINITY 1
#include "lifecycle/thread_affinity.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace polyecho {
namespace {

TEST(ThreadAffinity, AnyThreadMayUseItBeforeTheLoopBinds) {
  ThreadAffinity affinity;
  std::thread([&] { affinity.check("setup"); }).join();
  affinity.check("setup");
}

TEST(ThreadAffinity, TheOwningThreadPasses) {
  ThreadAffinity affinity;
  affinity.bind_here();
  affinity.check("loop");
}

TEST(ThreadAffinityDeathTest, AnotherThreadAbortsWithTheCallersName) {
  ThreadAffinity affinity;
  affinity.bind_here();
  EXPECT_DEATH(std::thread([&] { affinity.check("Reactor::open"); }).join(),
               "Reactor::open called off its loop thread");
}

}  // namespace
}  // namespace polyecho
