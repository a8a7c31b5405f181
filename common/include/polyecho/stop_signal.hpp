#pragma once

// Process-wide signal plumbing, because signals are process-wide.
//
// SIGINT/SIGTERM: the first one sets a flag and makes stop_fd() readable. The fd is never
// drained, so it stays readable: any number of loops and threads can watch it and all of them
// wake. A second SIGINT/SIGTERM exits at once (status 1): the operator asked twice.
//
// SIGCHLD (opt-in, for process models): makes child_fd() readable; the owner drains it with
// clear_child_fd() and then reaps with waitpid(WNOHANG) in a loop, because several exits can
// collapse into one pending SIGCHLD.
//
// Handlers are installed without SA_RESTART so a blocking syscall in the main thread returns
// EINTR and the caller can look at requested().
namespace polyecho::stop_signal {

// Call on the thread that will receive SIGINT/SIGTERM (every other thread blocks them), before
// any other thread starts.
void install();
[[nodiscard]] bool requested() noexcept;
[[nodiscard]] int stop_fd() noexcept;
// Programmatic stop, same effect as the first signal.
void request() noexcept;

// ThreadSanitizer runs a handler where the signal lands only if the thread is parked in a
// blocking call it intercepts (poll, epoll_wait, read, pthread_join, condition variables...);
// otherwise it runs it at the thread's next intercepted call. A loop that waits in a syscall
// TSan does not know (io_uring_enter) calls this when a signal ended the wait, so the stop
// handler has run before it looks at requested() or waits again. Without TSan: one syscall,
// returning at once.
void run_deferred_handlers() noexcept;

void watch_children();
[[nodiscard]] int child_fd() noexcept;
void clear_child_fd() noexcept;

// In a freshly forked child: forget the parent's stop state and pipes, and install fresh ones
// so the child can be stopped on its own (prefork workers). SIGCHLD goes back to default.
void reinstall_in_child();

// Blocks SIGINT/SIGTERM/SIGCHLD in the calling thread; call before spawning worker threads so
// that signals land on the thread that watches for them.
void block_in_this_thread();

}  // namespace polyecho::stop_signal
