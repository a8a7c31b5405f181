#pragma once

#include <signal.h>

#include <cstddef>
#include <functional>
#include <thread>
#include <utility>

#include "polyecho/unique_fd.hpp"

namespace polyecho {

// Thread start-up, once for every model. SIGINT/SIGTERM (and SIGCHLD) must land on the one
// thread that watches for them, so every other thread is born with them blocked: the mask is
// set in the creating thread around the creation and inherited, which leaves no window in
// which a signal could reach a thread that has not blocked it yet.

// Blocks SIGINT, SIGTERM and SIGCHLD in the calling thread for this object's lifetime.
class StopSignalsBlocked {
 public:
  StopSignalsBlocked() noexcept;
  ~StopSignalsBlocked();
  StopSignalsBlocked(const StopSignalsBlocked&) = delete;
  StopSignalsBlocked& operator=(const StopSignalsBlocked&) = delete;
  // The mask before, for a wait that unblocks them atomically (ppoll, io_uring_enter).
  [[nodiscard]] const sigset_t& previous() const noexcept { return saved_; }
  // Such a wait delivers a pending signal only when it sleeps: one that returns completions at
  // once restores the mask and leaves the signal pending (pselect's rule). A loop that may
  // never sleep under load calls this now and then: when a stop signal is pending and the mask
  // before allowed it, it is let in (its handler runs) and the mask is set back.
  void let_pending_in() const noexcept;

 private:
  sigset_t saved_{};
};

// A thread that never receives the stop signals (the sticky stop fd wakes it instead).
template <typename Body>
[[nodiscard]] std::thread start_thread(Body&& body) {
  const StopSignalsBlocked blocked;
  return std::thread(std::forward<Body>(body));
}

// Runs `count` event loops (at least one) to completion: loop 0 on the calling thread, which
// keeps receiving SIGINT/SIGTERM, the others on threads started with start_thread(). Once its
// own loop is done the calling thread waits in pthread_join, where a second stop signal still
// runs its handler at once (ThreadSanitizer too treats the join as a blocking call). A loop
// that throws is logged, makes the result 1 and requests a stop so the others drain and end
// too. Returns 0 or 1 once every loop has returned and every thread is joined.
int run_loop_threads(std::size_t count, const std::function<void(std::size_t index)>& run_loop);

// Another descriptor for the same listening socket, for a sibling loop that watches it with
// its own multiplexer (and closes its own copy). Throws std::system_error.
[[nodiscard]] unique_fd dup_listener(int listener);

}  // namespace polyecho
