#include "process/worker_processes.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <new>

#include "polyecho/socket_ops.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

using Clock = std::chrono::steady_clock;
using Counter = std::atomic<std::int64_t>;

WorkerProcesses::WorkerProcesses(unsigned count, Hooks hooks, Stats& stats, PeerLimit& peers)
    : hooks_(std::move(hooks)), stats_(stats), peers_(peers), pids_(count, 0) {
  void* memory = ::mmap(nullptr, sizeof(Counter) * count, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) throw_errno("mmap(worker counters)");
  held_ = static_cast<Counter*>(memory);
  for (unsigned i = 0; i < count; ++i) new (&held_[i]) Counter(0);
  stop_signal::watch_children();
}

WorkerProcesses::~WorkerProcesses() {
  for (pid_t pid : pids_) {
    if (pid <= 0) continue;
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  ::munmap(held_, sizeof(Counter) * pids_.size());
}

void WorkerProcesses::start_all() {
  for (unsigned slot = 0; slot < pids_.size(); ++slot) spawn(slot);
}

void WorkerProcesses::spawn(unsigned slot) {
  if (hooks_.before_fork) hooks_.before_fork(slot);
  const pid_t master = ::getpid();
  // A SIGTERM landing between fork() and reinstall_in_child() would run the master's handler
  // in the child (poking the master's pipe, not the child's): hold stop signals across the
  // fork; the child unblocks them once its own handlers are in place, the master right after.
  sigset_t stop_signals;
  sigset_t previous;
  ::sigemptyset(&stop_signals);
  ::sigaddset(&stop_signals, SIGINT);
  ::sigaddset(&stop_signals, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, &previous);
  const pid_t pid = ::fork();
  if (pid != 0) ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) {
    // Left empty; the next reap (any worker's exit) does not retry it, so say so loudly.
    spdlog::error("fork (worker {}): {}", slot, std::strerror(errno));
    return;
  }
  if (pid == 0) {
    stop_signal::reinstall_in_child();
    ::signal(SIGINT, SIG_IGN);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != master) ::_exit(0);
    PeerLimit::enter_worker(slot);
    int status = kSetupFailed;
    try {
      status = hooks_.run(slot);
    } catch (const std::exception& e) {
      spdlog::error("worker {}: {}", slot, e.what());
    }
    // _exit: the master's atexit handlers and static destructors are not ours to run.
    ::_exit(status);
  }
  pids_[slot] = pid;
  if (hooks_.after_fork) hooks_.after_fork(slot, pid);
}

void WorkerProcesses::reap() {
  stop_signal::clear_child_fd();
  int status = 0;
  pid_t pid;
  // Several exits can collapse into one SIGCHLD: loop until nothing is left to reap.
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    const auto it = std::find(pids_.begin(), pids_.end(), pid);
    if (it != pids_.end()) on_exited(static_cast<unsigned>(it - pids_.begin()), status);
  }
}

void WorkerProcesses::on_exited(unsigned slot, int status) {
  pids_[slot] = 0;
  // Connections the worker never got to close: take them out of the active count.
  const std::int64_t lost = held_[slot].exchange(0);
  stats_.active.fetch_sub(lost, std::memory_order_relaxed);
  peers_.forget_owner(slot);  // their --max-per-ip places too
  if (WIFSIGNALED(status)) {
    stats_.errors.fetch_add(static_cast<std::uint64_t>(lost), std::memory_order_relaxed);
    spdlog::warn("worker {} died from signal {}; {} connection(s) lost", slot, WTERMSIG(status),
                 lost);
  }
  if (hooks_.on_exit) hooks_.on_exit(slot);
  if (stopping_) return;
  if (WIFEXITED(status) && WEXITSTATUS(status) == kSetupFailed) {
    spdlog::error("worker {} could not start; stopping", slot);
    stop_signal::request();
    return;
  }
  spawn(slot);
}

bool WorkerProcesses::any_alive() const {
  return std::any_of(pids_.begin(), pids_.end(), [](pid_t pid) { return pid > 0; });
}

bool WorkerProcesses::wait_until(Clock::time_point deadline) {
  while (any_alive()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd fd{stop_signal::child_fd(), POLLIN, 0};
    ::poll(&fd, 1, static_cast<int>(left.count()) + 1);
    reap();
  }
  return true;
}

void WorkerProcesses::stop(std::chrono::milliseconds drain_timeout) {
  stopping_ = true;
  reap();  // a worker may have died just now; do not signal a reused pid
  for (pid_t pid : pids_) {
    if (pid > 0) ::kill(pid, SIGTERM);
  }
  if (wait_until(Clock::now() + drain_timeout + std::chrono::seconds(1))) return;
  for (pid_t pid : pids_) {
    if (pid > 0) ::kill(pid, SIGKILL);
  }
  // SIGKILL cannot be ignored, so these blocking waits end promptly.
  for (unsigned slot = 0; slot < pids_.size(); ++slot) {
    if (pids_[slot] <= 0) continue;
    int status = 0;
    while (::waitpid(pids_[slot], &status, 0) < 0 && errno == EINTR) {
    }
    on_exited(slot, status);
  }
}

}  // namespace polyecho
