#include "lifecycle/child_processes.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

#include "lifecycle/threads.hpp"
#include "polyecho/stop_signal.hpp"

namespace polyecho {

namespace {

// poll() takes an int of milliseconds; a longer wait is a few wake-ups instead of one.
constexpr std::chrono::milliseconds kLongestPoll{INT_MAX};

// Blocking waitpid for one child that cannot refuse to end (SIGKILLed), EINTR retried.
int wait_for(pid_t pid) noexcept {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

ChildProcesses::ChildProcesses(Options options, OnExit on_exit)
    : options_(options), on_exit_(std::move(on_exit)) {
  stop_signal::watch_children();
}

ChildProcesses::~ChildProcesses() {
  // No on_exit here: the owner is being torn down and its state may already be gone.
  signal_all(SIGKILL);
  for (pid_t pid : pids_) wait_for(pid);
}

pid_t ChildProcesses::spawn(const std::function<int()>& body) {
  assert_owner_thread();
  const pid_t parent = ::getpid();
  pid_t pid = -1;
  int fork_error = 0;
  {
    // A SIGTERM landing between fork() and the child's reinstall_in_child() would run the
    // parent's handler in the child (poking the parent's pipe, not the child's, and leaving
    // the child deaf to it). So the stop signals (and SIGCHLD, whose handler would poke the
    // parent's child pipe the same way) are held across the fork: the child unblocks them
    // once its own handlers are in place, the parent when this scope ends.
    const StopSignalsBlocked blocked;
    pid = ::fork();
    fork_error = errno;
    if (pid == 0) run_child(parent, body);
  }
  if (pid < 0) {
    errno = fork_error;  // fork()'s, whatever restoring the mask did
    return -1;
  }
  pids_.insert(pid);
  return pid;
}

void ChildProcesses::run_child(pid_t parent, const std::function<int()>& body) const noexcept {
  // A fresh stop_signal, so the parent can stop this child with SIGTERM. Ctrl-C reaches the
  // whole process group, but the parent decides how its children stop: ignore SIGINT.
  stop_signal::reinstall_in_child();
  ::signal(SIGINT, SIG_IGN);
  ::prctl(PR_SET_PDEATHSIG, options_.parent_death_signal);
  if (::getppid() != parent) ::_exit(0);  // the parent died before prctl took effect
  int status = options_.exception_status;
  try {
    status = body();
  } catch (const std::exception& e) {
    spdlog::error("{} {}: {}", options_.name, ::getpid(), e.what());
  } catch (...) {
    spdlog::error("{} {}: unknown exception", options_.name, ::getpid());
  }
  // _exit, never a return or an exception out of here: the parent's objects (its admission
  // tickets among them), atexit handlers and static destructors are not ours to run.
  ::_exit(status);
}

void ChildProcesses::reap() {
  assert_owner_thread();
  stop_signal::clear_child_fd();
  int status = 0;
  pid_t pid;
  // Several exits can collapse into one pending SIGCHLD: loop until nothing is left to reap.
  while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
    if (pids_.erase(pid) == 0) continue;  // not ours; reaped all the same, no zombie
    on_exit_(ChildExit{.pid = pid, .status = status, .killed = false});
  }
}

bool ChildProcesses::wait_until(Clock::time_point deadline) {
  for (;;) {
    reap();  // first, so a child that has already ended is reported as such, not signalled
    if (pids_.empty()) return true;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    // EINTR (SIGCHLD itself, most likely) is just an early wake-up.
    pollfd fd{stop_signal::child_fd(), POLLIN, 0};
    ::poll(&fd, 1, static_cast<int>(std::min(left, kLongestPoll).count()));
  }
}

void ChildProcesses::signal_all(int signal_number) const noexcept {
  for (pid_t pid : pids_) ::kill(pid, signal_number);
}

void ChildProcesses::stop(Clock::time_point term_at, Clock::time_point kill_at) {
  assert_owner_thread();
  if (wait_until(term_at)) return;
  signal_all(SIGTERM);
  if (wait_until(kill_at)) return;
  signal_all(SIGKILL);
  // SIGKILL cannot be ignored, so these blocking waits end promptly.
  for (pid_t pid : std::exchange(pids_, {})) {
    on_exit_(ChildExit{.pid = pid, .status = wait_for(pid), .killed = true});
  }
}

}  // namespace polyecho
