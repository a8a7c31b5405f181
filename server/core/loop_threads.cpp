#include "core/loop_threads.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

int run_loop_threads(std::size_t count, const std::function<void(std::size_t)>& run_loop) {
  count = std::max<std::size_t>(count, 1);
  std::atomic<int> exit_code{0};
  const auto run_one = [&](std::size_t index) {
    try {
      run_loop(index);
    } catch (const std::exception& e) {
      spdlog::error("event loop failed: {}", e.what());
      exit_code = 1;
      stop_signal::request();  // the others drain and stop too
    }
  };
  std::vector<std::jthread> threads;
  {
    // Helpers inherit a mask that blocks SIGINT/SIGTERM, so signals land on this thread.
    sigset_t saved;
    ::pthread_sigmask(SIG_SETMASK, nullptr, &saved);
    stop_signal::block_in_this_thread();
    for (std::size_t i = 1; i < count; ++i) threads.emplace_back([&run_one, i] { run_one(i); });
    ::pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  }
  run_one(0);
  threads.clear();  // joins
  return exit_code;
}

unique_fd dup_listener(int listener) {
  unique_fd dup(::fcntl(listener, F_DUPFD_CLOEXEC, 0));
  if (!dup) throw_errno("fcntl(F_DUPFD_CLOEXEC)");
  return dup;
}

}  // namespace polyecho
