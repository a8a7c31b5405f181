#pragma once

#include <sys/types.h>

#include <atomic>

namespace polyecho::test {

// The calling thread's kernel id (what /proc/self/task/ lists), to hand to another thread.
[[nodiscard]] pid_t current_thread_id() noexcept;

// Returns once thread `tid` of this process is asleep in the kernel (state 'S': blocked in
// recv, a futex, sigtimedwait, ...), so a test can act on a thread it knows is blocked instead
// of sleeping and hoping. Yields while it looks; false after kSafetyTimeout (or if the thread
// is gone). The caller must know the only place the thread can block.
[[nodiscard]] bool wait_until_blocked(pid_t tid);
// The same, for a thread that publishes its id in `tid` (0 until then) once it has done what
// must come before the blocking call.
[[nodiscard]] bool wait_until_blocked(const std::atomic<pid_t>& tid);

}  // namespace polyecho::test
