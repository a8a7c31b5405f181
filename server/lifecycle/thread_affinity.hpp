#pragma once

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

namespace polyecho {

// Checks that state owned by one loop is only touched on that loop's thread, the way muduo's
// EventLoop::assertInLoopThread() does: a comment saying "loop thread only" cannot catch a
// cross-thread call, this can. Active in debug builds and wherever POLYECHO_CHECK_AFFINITY is
// defined (the asan and tsan presets define it); elsewhere both calls compile to nothing.
//
// A loop is usually built on the main thread and run on its own, so the owner is whichever
// thread calls bind_here() (at the top of run()); before that, any thread may set it up.
class ThreadAffinity {
 public:
#if !defined(NDEBUG) || defined(POLYECHO_CHECK_AFFINITY)
  void bind_here() noexcept {
    owner_ = ::pthread_self();
    bound_ = true;
  }
  void check(const char* what) const noexcept {
    if (bound_ && ::pthread_equal(owner_, ::pthread_self()) == 0) {
      std::fprintf(stderr, "polyecho: %s called off its loop thread\n", what);
      std::abort();
    }
  }

 private:
  pthread_t owner_{};
  bool bound_ = false;
#else
  void bind_here() noexcept {}
  void check(const char* /*what*/) const noexcept {}
#endif
};

}  // namespace polyecho
