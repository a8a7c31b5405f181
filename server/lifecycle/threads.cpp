#include "lifecycle/threads.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

StopSignalsBlocked::StopSignalsBlocked() noexcept {
  ::pthread_sigmask(SIG_SETMASK, nullptr, &saved_);
  stop_signal::block_in_this_thread();
}

StopSignalsBlocked::~StopSignalsBlocked() {
  ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
}

void StopSignalsBlocked::let_pending_in() const noexcept {
  sigset_t pending;
  if (::sigpending(&pending) != 0) return;
  const bool waiting =
      (sigismember(&pending, SIGTERM) == 1 && sigismember(&saved_, SIGTERM) == 0) ||
      (sigismember(&pending, SIGINT) == 1 && sigismember(&saved_, SIGINT) == 0);
  if (!waiting) return;
  sigset_t blocked;
  ::pthread_sigmask(SIG_SETMASK, &saved_, &blocked);  // the handler runs here
  ::pthread_sigmask(SIG_SETMASK, &blocked, nullptr);
}

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
  threads.reserve(count - 1);
  for (std::size_t i = 1; i < count; ++i) {
    const StopSignalsBlocked blocked;
    threads.emplace_back([&run_one, i] { run_one(i); });
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
